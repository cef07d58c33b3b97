"""Spot interruptions in simulated time: the notice, the cut-off, the replacement, the bill.

Notices are drawn in launch order from one generator seeded with `SpotInterruptions.seed`,
so the first instance's notice comes `time_to_notice_s` of a fresh generator after it
starts; the seeds below were picked for when their draws fall (the tests check that too).
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from simulator.fleet import SpotInterruptions, State
from simulator.sim import SimConfig, Simulation
from simulator.traffic import Arrival
from tests.helpers.sim import Scripted, accounted, assert_same, both, config, steady


def spot(cfg: SimConfig, per_instance_hour: float, seed: int) -> SimConfig:
    return replace(cfg, spot=SpotInterruptions(per_instance_hour, seed=seed))


def draws(per_instance_hour: float, seed: int, count: int) -> list[float]:
    """The notices' delays from each instance's start, in launch order."""
    rng, rate = random.Random(seed), SpotInterruptions(per_instance_hour, seed=seed)
    return [rate.time_to_notice_s(rng) for _ in range(count)]


def test_the_same_seed_draws_the_same_interruptions_and_another_seed_others() -> None:
    arrivals = steady(1, 600, output=100)
    cfg = spot(config(initial=2, min_size=2), per_instance_hour=12, seed=4)
    first = Simulation(cfg, Scripted([], initial=2)).run(arrivals)
    again = Simulation(cfg, Scripted([], initial=2)).run(arrivals)
    assert len(first.interruptions) >= 3
    assert_same(first, again)
    other = Simulation(spot(cfg, 12, seed=5), Scripted([], initial=2)).run(arrivals)
    assert other.interruptions != first.interruptions


def test_a_zero_rate_gives_the_outcome_of_no_spot_setting() -> None:
    arrivals = steady(3, 300, output=100)
    plain = Simulation(config(), Scripted([(60, 2), (200, 1)])).run(arrivals)
    zero = Simulation(spot(config(), 0.0, seed=1), Scripted([(60, 2), (200, 1)])).run(arrivals)
    assert_same(plain, zero)
    assert zero.events == plain.events and not zero.interruptions


def test_an_interrupted_busy_instance_finishes_short_requests_and_loses_long_ones() -> None:
    notice = draws(2, seed=1, count=2)[0]
    assert 200 < notice < 300 and draws(2, seed=1, count=2)[1] > 1000  # the replacement's
    long = [Arrival(notice - 10, 50, 30_000) for _ in range(3)]  # over 5 minutes of decode
    short = [Arrival(notice - 1, 50, 100) for _ in range(3)]  # about a second
    later = [Arrival(notice + s, 50, 100) for s in (1, 100, 119, 190, 200)]
    policy = Scripted([])
    out = Simulation(spot(config(max_size=1), 2, seed=1), policy).run(long + short + later)

    gone, replacement = out.instances
    reclaimed = notice + 120
    assert out.interruptions == [(notice, 0)]
    assert (gone.interrupted_s, gone.deregistered_s, gone.terminated_s) == (
        notice, notice, reclaimed)
    assert gone.state is State.TERMINATED and gone.cut_off == out.cut_off == 3
    assert gone.billed_s(out.end_s) == reclaimed  # from 0, to EC2's termination
    finished = {d.arrival: d for d in out.finished}
    assert all(finished[a].finished_s < notice + 5 for a in short)
    assert not any(a in finished for a in long)

    # The group counted it until EC2 took it, then replaced it (no scaling action).
    assert out.actions == []
    assert (replacement.requested_s, replacement.launched_s, replacement.ready_s) == (
        reclaimed, reclaimed + 10, reclaimed + 60)
    assert ("leaving", 0, reclaimed) in policy.events and ("gone", 0, reclaimed) in policy.events
    assert ("launched", 1, reclaimed + 10) in policy.events
    # No instance took requests from the notice until the replacement served; it serves.
    assert out.refused == later[:3]
    assert replacement.ready_s is not None
    assert [finished[a].first_token_s > replacement.ready_s for a in later[3:]] == [True, True]
    assert accounted(out) == len(long + short + later)


def test_an_instance_interrupted_while_launching_never_serves_and_is_replaced() -> None:
    first, second, third = draws(2, seed=15, count=3)
    assert first > 1000 and second < 50 and third > 1000
    policy = Scripted([(60, 2)])
    out = Simulation(spot(config(), 2, seed=15), policy).run(steady(1, 400))
    launching = out.instances[1]  # asked for at 60 s, running at 70 s, to serve at 120 s
    notice = 70 + second
    assert out.interruptions == [(notice, 1)]
    assert launching.ready_s is None and launching.terminated_s == notice + 120
    replacement = out.instances[2]
    assert replacement.requested_s == notice + 120 and replacement.ready_s == notice + 180
    assert [(a.before, a.after) for a in out.actions] == [(1, 2)]  # the replacement is none
    assert ("launched", 2, notice + 130) in policy.events
    assert out.cut_off == 0 and not out.refused  # instance 0 served throughout


def test_runs_give_the_same_outcome_through_interruptions() -> None:
    cfg = spot(config(initial=2, min_size=2), per_instance_hour=12, seed=4)
    arrivals = steady(2, 400, output=200) + [Arrival(t, 50, 13_000) for t in range(0, 400, 40)]
    single, _ = both(cfg, lambda: Scripted([], initial=2), arrivals)
    assert len(single.interruptions) >= 2 and single.cut_off > 0  # reclaimed in mid-run


@pytest.mark.parametrize(("rate", "notice"), [(-1.0, 120.0), (float("inf"), 120.0),
                                              (1.0, -5.0), (float("nan"), 120.0)])
def test_a_rate_or_notice_below_zero_or_not_finite_is_refused(rate: float, notice: float) -> None:
    with pytest.raises(ValueError, match="spot interruptions"):
        SpotInterruptions(rate, notice_s=notice)


def test_a_reclaim_after_the_trace_launches_no_replacement_that_would_only_be_billed() -> None:
    # Regression: a notice near the trace's end launched a replacement at the reclaim after
    # it, and the run (and every instance's bill) went on until that replacement was ready.
    arrivals = steady(1, 600, output=100)
    out = Simulation(spot(config(), 6, seed=5), Scripted([])).run(arrivals)
    last_finish = max(d.finished_s for d in out.finished)
    assert all(i.requested_s <= last_finish for i in out.instances)
    assert out.end_s <= max(last_finish, max(i.terminated_s or 0.0 for i in out.instances))
    assert out.end_s < 600 + 130
