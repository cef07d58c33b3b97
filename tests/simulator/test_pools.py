"""The deployment's figures over several pools (`simulator.pools`): every request once, where
it was last served or refused. The pools run end to end: tests/simulator/test_cli.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from simulator import pools
from simulator.compare import Run
from simulator.replica import Finished
from simulator.report import Slo, summarise
from simulator.sim import Outcome
from simulator.traffic import Arrival

SLO = Slo()


def pool(name: str) -> Any:
    """A pool as `_deployment` reads it: its name, its model and its price."""
    return pools.Pool(name, f"{name}-model",
                      SimpleNamespace(fleet=SimpleNamespace(usd_per_hour=1.0)))  # type: ignore[arg-type]


def served(arrival: Arrival) -> Finished:
    return Finished(arrival, arrival.at_s + 0.1, arrival.at_s + 1.0, 0)


def run(out: Outcome) -> Run:
    return Run("fixed", out, summarise("fixed", out, SLO, 1.0))


def test_a_request_moved_in_an_unsettled_round_that_its_home_served_counts_once() -> None:
    """Regression (review): after the last round, a request moved to the other pool by the
    round before, but served at home in this one, counted as served in both pools."""
    x, y = Arrival(1.0, 10, 5), Arrival(2.0, 900, 5)
    home, other = pool("small"), pool("large")
    runs = {"small": run(Outcome(finished=[served(x)], end_s=3.0)),  # served x this time
            "large": run(Outcome(finished=[served(y), served(x)], end_s=3.0))}
    shares = {"small": [x], "large": [y]}
    moved: dict[str, list[Arrival]] = {"small": [], "large": [x]}  # what the runs were sent
    found = pools._deployment("fixed", [home, other], runs, shares, moved, SLO, rounds=4,
                              settled=False)
    assert found.summary.requests == found.summary.completed == 2
    by_name = {p.pool: p for p in found.pools}
    assert (by_name["large"].moved_in, by_name["small"].moved_out) == (0, 0)
    assert by_name["large"].run.summary.requests == 1
    assert by_name["large"].arrivals == [y]


def test_a_request_moved_and_served_elsewhere_counts_there_only() -> None:
    x, y = Arrival(1.0, 10, 5), Arrival(2.0, 900, 5)
    home, other = pool("small"), pool("large")
    runs = {"small": run(Outcome(refused=[x], unavailable=[x], end_s=3.0)),
            "large": run(Outcome(finished=[served(y), served(x)], end_s=3.0))}
    found = pools._deployment("fixed", [home, other], runs, {"small": [x], "large": [y]},
                              {"small": [], "large": [x]}, SLO, rounds=2, settled=True)
    assert (found.summary.requests, found.summary.completed, found.summary.refused) == (2, 2, 0)
    by_name = {p.pool: p for p in found.pools}
    assert (by_name["small"].moved_out, by_name["large"].moved_in) == (1, 1)
    assert by_name["small"].arrivals == [] and by_name["large"].arrivals == [x, y]
