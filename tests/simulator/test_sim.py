"""The fleet in simulated time: routing, launching, draining, billing, and the summary."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from simulator.fleet import LaunchDelay, State
from simulator.replica import Replica
from simulator.report import Slo, summarise
from simulator.service import RooflineService, StepLoad
from simulator.sim import (
    Simulation,
)
from simulator.traffic import Arrival, synthetic
from tests.helpers.sim import Flat, Scripted, accounted, assert_same, both, config, steady


def test_every_request_of_a_light_trace_completes_within_the_slo() -> None:
    out = Simulation(config(), Scripted([])).run(steady(2, 120))
    assert accounted(out) == 240
    summary = summarise("scripted", out, Slo(ttft_s=0.5, tpot_s=0.05), usd_per_hour=1.0)
    assert (summary.requests, summary.completed, summary.slo_attainment) == (240, 240, 1.0)
    assert summary.scaling_actions == 0 and summary.peak_instances == 1
    assert summary.instance_hours == pytest.approx(out.end_s / 3600)


def test_a_launched_instance_serves_after_its_launch_delay_and_shares_the_load() -> None:
    policy = Scripted([(60, 2)])
    out = Simulation(config(), policy).run(steady(5, 300))
    second = out.instances[1]
    assert second.launched_s == 60 + 10  # asked for at 60 s, running (and billed) 10 s later
    assert ("launched", 1, 60 + 10) in policy.events  # InService once EC2 runs it
    assert second.ready_s == 60 + 60  # the launch delay: 10 + 20 + 20 + 10 s
    published = [s for s in policy.seen if s.instance == 1]
    # Its agent publishes from the end of its boot (60 + 10 + 20 s), idle while the model loads.
    assert min(s.at_s for s in published) == 60 + 30
    loading = [s for s in published if s.at_s < second.ready_s]
    assert loading and all(s.gpu_utilization == 0 and s.running == 0 for s in loading)
    served = [s for s in published if s.at_s > second.ready_s]
    assert sum(s.running for s in served) > 0  # least outstanding requests sends it work
    assert sum(s.routed for s in served) > 0 and sum(s.routed for s in loading) == 0
    assert any(s.ttft_p95_s is not None for s in served)


def test_scale_in_drains_the_last_launched_and_bills_it_to_termination() -> None:
    policy = Scripted([(120, 1)], initial=2)
    arrivals = steady(5, 300, output=200)
    out = Simulation(config(initial=2), policy).run(arrivals)
    gone = out.instances[1]
    assert gone.state is State.TERMINATED and gone.cut_off == 0  # 200 tokens drain in time
    assert gone.terminated_s is not None and 120 <= gone.terminated_s <= 120 + 30
    assert gone.billed_s(out.end_s) == pytest.approx(gone.terminated_s)
    assert ("leaving", 1, 120) in policy.events and ("gone", 1, gone.terminated_s) in policy.events
    assert accounted(out) == len(arrivals)


def test_a_drain_deadline_in_the_middle_of_a_step_cuts_off_without_crashing() -> None:
    """Regression: the cut-off instance's pending step end raised 'a step ended while none
    ran'."""
    arrivals = [Arrival(i * 0.2, 50, 5000) for i in range(100)]  # answers far beyond 30 s
    out = Simulation(config(initial=2), Scripted([(120, 1)], initial=2)).run(arrivals)
    gone = out.instances[1]
    assert gone.terminated_s == pytest.approx(120 + 30) and gone.cut_off > 0
    assert out.cut_off == gone.cut_off and accounted(out) == len(arrivals)


def test_stale_events_do_not_extend_the_run_or_its_bill() -> None:
    """Regression: a cancelled launch's 'ready' event moved the end of the run, and every
    instance was billed to it."""
    slow = replace(config(max_size=2), launch=LaunchDelay(10, 40, 40, 10))  # 100 s to serve
    out = Simulation(slow, Scripted([(60, 2), (120, 1)])).run(steady(2, 130))
    cancelled = out.instances[1]
    assert cancelled.terminated_s == 120 and cancelled.state is State.TERMINATED
    assert out.end_s == max(d.finished_s for d in out.finished)
    assert out.end_s < 60 + 100  # its 'ready' event at 160 s changed nothing


def test_with_no_serving_instance_requests_are_refused() -> None:
    out = Simulation(config(initial=0, min_size=0), Scripted([(0, 1)], initial=0)).run(
        steady(1, 240))
    # Launched at the first evaluation (60 s), serving after its 60 s delay.
    assert len(out.refused) == 120 and len(out.finished) == 120
    summary = summarise("scripted", out, Slo(), usd_per_hour=1.0)
    assert summary.slo_attainment == pytest.approx(0.5)


def test_the_group_stays_within_its_limits() -> None:
    out = Simulation(config(max_size=2), Scripted([(60, 9), (180, 0)])).run(steady(2, 300))
    assert [(a.before, a.after) for a in out.actions] == [(1, 2), (2, 1)]


def test_utilisation_is_the_share_of_time_the_engine_stepped() -> None:
    policy = Scripted([])
    Simulation(config(), policy).run([Arrival(0.0, 50, 2000)])  # one sequence, ~20 s of steps
    first = policy.seen[0]
    assert first.gpu_utilization == pytest.approx(1.0)  # one sequence keeps it ~always busy
    assert first.running == 1


# --- Runs of pure-decode steps (`SimConfig.coalesce`): the same outcome as one at a time ---


def test_runs_give_the_same_outcome_on_a_steady_trace() -> None:
    single, _ = both(config(), lambda: Scripted([]), steady(5, 300, output=40))
    assert len(single.finished) == 1500 and single.steps > 10_000


def test_runs_give_the_same_outcome_on_bursty_traffic_over_two_instances() -> None:
    arrivals = synthetic("bursts:60:20:5", duration_s=300, rate_per_s=3,
                         workload="lognormal:200:100", seed=3)
    single, _ = both(config(initial=2, min_size=2), lambda: Scripted([], initial=2), arrivals)
    assert {d.finished_s for d in single.finished} and len(single.finished) == len(arrivals)


def test_runs_give_the_same_outcome_through_scale_out_scale_in_and_cut_off_drains() -> None:
    arrivals = synthetic("constant", duration_s=240, rate_per_s=3,
                         workload="lognormal:100:200:1.2", seed=5)
    arrivals += [Arrival(170 + i, 50, 4000) for i in range(6)]  # longer than a drain
    single, _ = both(config(), lambda: Scripted([(60, 3), (180, 1)]), arrivals)
    assert [(a.before, a.after) for a in single.actions] == [(1, 3), (3, 1)]
    drained = [i for i in single.instances if i.deregistered_s is not None]
    assert len(drained) == 2 and single.cut_off > 0  # a drain deadline ended a run midway


def test_runs_give_the_same_outcome_when_the_cache_is_the_limit() -> None:
    # Five answers of 1,000 tokens at a time outgrow 3,400 slots now and then.
    tight = replace(config(), new_replica=lambda: Replica(Flat(kv_tokens=3400)))
    single, _ = both(tight, lambda: Scripted([]), steady(0.5, 120, output=1000))
    assert sum(d.preemptions for d in single.finished) > 10
    assert max(s.kv_usage for s in single.samples) > 0.9


def test_runs_give_the_same_outcome_with_long_answers_across_arrivals_on_the_roofline() -> None:
    service = RooflineService.for_names("Llama-3.1-8B", "A10G")
    roofline = replace(config(initial=2, min_size=2),
                       new_replica=lambda: Replica(service, max_num_seqs=64))
    arrivals = synthetic("constant", duration_s=180, rate_per_s=0.5,
                         workload="lognormal:500:800:0.5", seed=9)
    single, _ = both(roofline, lambda: Scripted([], initial=2), arrivals)
    assert len(single.finished) == len(arrivals)


class _Exact:
    """Step times in 64ths of a second: sums are exact, so steps of two instances can end
    at the very same float."""

    kv_tokens = 100_000

    def step_s(self, load: StepLoad) -> float:
        return (1 + load.tokens) / 64


def test_steps_ending_together_on_two_instances_are_handled_in_instance_order() -> None:
    """Regression: at a tie the step ends went in the order they were scheduled, which runs
    change (a run is scheduled at its first step), and requests finished in another order."""
    cfg = replace(config(initial=2, min_size=2), new_replica=lambda: Replica(_Exact()))
    # Instance 0 decodes from 2/64 s, 1 from 4/64 s, both 2/64 s a step: both end at 42/64 s.
    arrivals = [Arrival(0.0, 1, 21), Arrival(1 / 64, 2, 20)]
    single, _ = both(cfg, lambda: Scripted([], initial=2), arrivals)
    assert [d.finished_s for d in single.finished] == [42 / 64, 42 / 64]
    assert [d.arrival for d in single.finished] == arrivals  # instance 0's first


def test_a_sample_at_the_very_end_of_a_step_inside_a_run_sees_that_step_done() -> None:
    """As one at a time, where the step's end event comes before the sample at that instant."""
    cfg = replace(config(), new_replica=lambda: Replica(_Exact()))
    # Steps of 2/64 s from 0: one ends at every sample time (10 s is 320 of them).
    single, _ = both(cfg, lambda: Scripted([]), [Arrival(0.0, 1, 2000)])
    assert [s.kv_usage for s in single.samples[:3]] == [321 / 100_000, 641 / 100_000,
                                                        961 / 100_000]


class _PlannedPastArrivals(Simulation):
    """Plans every run as far as it can go, past the next arrival: each request then lands
    in the middle of a run, which must be cut short and its old end event ignored."""

    def _feed(self) -> None:
        super()._feed()
        self._next_arrival_s = math.inf


def test_a_run_cut_short_by_a_request_leaves_a_stale_end_that_changes_nothing() -> None:
    arrivals = steady(5, 120, output=60)
    single = Simulation(replace(config(), coalesce=False), Scripted([])).run(arrivals)
    cut = _PlannedPastArrivals(config(), Scripted([])).run(arrivals)
    assert_same(single, cut)
    planned = Simulation(config(), Scripted([])).run(arrivals)
    assert cut.events > planned.events  # the stale ends, one per request cutting a run
