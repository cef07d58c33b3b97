"""The clairvoyant bound: per-minute needs, the oracle's look-ahead, and the cheapest search.

The search runs the real `Simulation` on a small fleet whose engines hold one sequence at a
time (a request of 50 + 40 tokens takes ~0.42 s, ~2.4 requests/s an instance): 4 requests/s
evenly spaced need two instances and overwhelm one, so the schedules the search can choose
are few and their attainments far apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from simulator import oracle
from simulator.fleet import LaunchDelay
from simulator.replica import Replica
from simulator.report import Slo, summarise
from simulator.service import StepLoad
from simulator.sim import GroupLimits, Outcome, SimConfig, Simulation
from simulator.traffic import Arrival

SLO = Slo(ttft_s=0.5, tpot_s=0.05)
LAUNCH = LaunchDelay(launch_s=10, boot_s=20, model_load_s=20, health_s=10)  # 60 s to serve


@dataclass(frozen=True)
class Flat:
    kv_tokens: int = 100_000

    def step_s(self, load: StepLoad) -> float:
        return 0.010 + 0.0001 * load.tokens


def config(initial: int = 2, max_size: int = 4) -> SimConfig:
    return SimConfig(new_replica=lambda: Replica(Flat(), max_num_seqs=1),
                     limits=GroupLimits(1, max_size, initial), launch=LAUNCH,
                     deregistration_delay_s=30)


def per_minute(counts: list[int]) -> list[Arrival]:
    """`counts[k]` arrivals spread evenly over minute k."""
    return [Arrival(minute * 60 + (i + 0.5) * 60 / count, 50, 40)
            for minute, count in enumerate(counts) for i in range(count)]


def four_a_second() -> list[Arrival]:
    return [Arrival(i * 0.25, 50, 40) for i in range(720)]  # three minutes


# --- Needs and look-ahead ------------------------------------------------------------

@pytest.mark.parametrize(("counts", "capacity_rps", "needs"), [
    ([150, 60], 1.0, [3, 1]),  # 2.5 requests/s: rounded up
    ([120], 1.0, [2]),  # exactly two instances' capacity: not three
    ([121], 1.0, [3]),
    ([63], 0.35, [3]),  # 1.05 / 0.35 is 3.0000000000000004 in floating point
    ([60, 0, 60], 1.0, [1, 0, 1]),  # a minute without requests needs none
])
def test_each_minute_needs_its_rate_over_one_instances_capacity(
        counts: list[int], capacity_rps: float, needs: list[int]) -> None:
    assert oracle.minute_needs(per_minute(counts), capacity_rps) == needs


@pytest.mark.parametrize("capacity_rps", [0.0, -1.0])
def test_minute_needs_refuses_a_capacity_that_is_not_above_zero(capacity_rps: float) -> None:
    with pytest.raises(ValueError, match="capacity_rps"):
        oracle.minute_needs(per_minute([60]), capacity_rps)


@pytest.mark.parametrize(("lead_s", "first_s"), [
    (90.0, 120.0),  # at 120 s it sizes [120, 270): minute 4 starts at 240 s
    (120.0, 120.0),  # at 120 s, [120, 300); at 60 s, [60, 240) stops short of minute 4
    (150.0, 60.0),  # at 60 s, [60, 270)
])
def test_the_oracle_looks_ahead_by_the_launch_delay_and_one_evaluation(
        lead_s: float, first_s: float) -> None:
    """Minute 4 needs 3 instances, every other one 1: the oracle asks for 3 from the first
    evaluation whose launch could still be late for minute 4 if it waited for the next one,
    and lets them go once minute 4 is over."""
    policy = oracle.Oracle(per_minute([60, 60, 60, 60, 180, 60, 60, 60]), 1.0, lead_s)
    assert policy.needs == [1, 1, 1, 1, 3, 1, 1, 1]
    desired = {now: policy.desired(now) for now in range(0, 540, 60)}
    assert min(now for now, n in desired.items() if n == 3) == first_s
    assert desired[240] == 3 and desired[300] == 1
    assert desired[420] == 1 and desired[480] == 0  # the trace's minutes are over


def test_what_the_oracle_launches_serves_when_its_minute_begins() -> None:
    """4 requests/s from minute 3 on need a second instance at 180 s: asked for at 120 s,
    it serves 60 s later, and no request misses the SLO."""
    arrivals = per_minute([60, 60, 60, 240, 240])
    out = Simulation(config(initial=1), oracle.Oracle(arrivals, 2.0, LAUNCH.total_s)).run(
        arrivals)
    second = out.instances[1]
    assert (second.requested_s, second.ready_s) == (120.0, 180.0)
    assert summarise("oracle", out, SLO, 0.0).slo_attainment == 1.0


# --- The cheapest schedule -----------------------------------------------------------

def attainment(capacity_rps: float, cfg: SimConfig | None = None) -> float:
    arrivals = four_a_second()
    policy = oracle.Oracle(arrivals, capacity_rps, LAUNCH.total_s)
    return summarise("oracle", Simulation(cfg or config(), policy).run(arrivals), SLO,
                     0.0).slo_attainment


class Counted(Simulation):
    """A `Simulation` that counts its runs."""

    runs = 0

    def run(self, *args: Any, **kwargs: Any) -> Outcome:
        Counted.runs += 1
        return super().run(*args, **kwargs)


@pytest.mark.parametrize(("capacity_rps", "target", "missed"), [
    (2.0, 0.99, 2.0),  # the planner's figure holds: doubling it leaves one instance: misses
    (4.0, 0.99, 1.0),  # the planner's figure leaves one instance: halving it finds two
    (2.0, 1.0, 2.0),  # two instances serve every request in time: meeting 100% is meeting it
])
def test_cheapest_returns_the_largest_factor_that_meets_the_target(
        capacity_rps: float, target: float, missed: float,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oracle, "Simulation", Counted)
    monkeypatch.setattr(Counted, "runs", 0)
    found = oracle.cheapest(config(), four_a_second(), SLO, capacity_rps, target)
    assert found.met and found.attainment >= target and found.target == target
    assert summarise("oracle", found.outcome, SLO, 0.0).slo_attainment == found.attainment
    assert found.missed == missed and found.factor < missed <= found.factor * 1.05
    assert attainment(capacity_rps * found.factor) >= target
    assert attainment(capacity_rps * missed) < target
    # Every factor in (missed / 2, missed) keeps two instances: one schedule, run once.
    assert found.runs == Counted.runs == 2


def test_cheapest_says_when_even_the_smallest_factor_misses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One instance at most: every factor gives the same schedule, run once, and it misses."""
    monkeypatch.setattr(oracle, "Simulation", Counted)
    monkeypatch.setattr(Counted, "runs", 0)
    found = oracle.cheapest(config(initial=1, max_size=1), four_a_second(), SLO, 2.0, 0.99)
    assert not found.met and found.attainment < 0.99
    assert found.factor == found.missed == 1 / oracle.SPAN
    assert found.runs == Counted.runs == 1


@pytest.mark.parametrize("tolerance", [0.0, -0.05])
def test_cheapest_refuses_a_tolerance_that_is_not_above_zero(tolerance: float) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        oracle.cheapest(config(), four_a_second(), SLO, 2.0, tolerance=tolerance)
