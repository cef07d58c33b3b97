"""The fleet in simulated time: routing, launching, draining, billing, and the summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest

from simulator.fleet import LaunchDelay, State
from simulator.replica import Replica
from simulator.report import Slo, summarise
from simulator.service import StepLoad
from simulator.sim import GroupLimits, InstanceSample, Outcome, SimConfig, Simulation
from simulator.traffic import Arrival


@dataclass(frozen=True)
class Flat:
    kv_tokens: int = 100_000

    def step_s(self, load: StepLoad) -> float:
        return 0.010 + 0.0001 * load.tokens


@dataclass
class Scripted:
    """Desired capacity from a schedule of (from time, capacity); records what it saw."""

    schedule: Sequence[tuple[float, int]]
    initial: int = 1
    name: str = "scripted"
    seen: list[InstanceSample] = field(default_factory=list)
    events: list[tuple[str, int, float]] = field(default_factory=list)

    def observe(self, samples: Sequence[InstanceSample]) -> None:
        self.seen.extend(samples)

    def launched(self, instance: int, in_service_s: float) -> None:
        self.events.append(("launched", instance, in_service_s))

    def leaving(self, at_s: float, instance: int) -> None:
        self.events.append(("leaving", instance, at_s))

    def gone(self, at_s: float, instance: int) -> None:
        self.events.append(("gone", instance, at_s))

    def desired(self, now_s: float) -> int:
        wanted = self.initial
        for start, capacity in self.schedule:
            if now_s >= start:
                wanted = capacity
        return wanted


def config(initial: int = 1, max_size: int = 4, min_size: int = 1) -> SimConfig:
    return SimConfig(new_replica=lambda: Replica(Flat()),
                     limits=GroupLimits(min_size, max_size, initial),
                     launch=LaunchDelay(launch_s=10, boot_s=20, model_load_s=20, health_s=10),
                     deregistration_delay_s=30)


def steady(rate_per_s: float, duration_s: float, output: int = 20) -> list[Arrival]:
    gap = 1 / rate_per_s
    return [Arrival(i * gap, 50, output) for i in range(int(duration_s * rate_per_s))]


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


def accounted(out: Outcome) -> int:
    """Every request ends one way: completed, refused or cut off."""
    return len(out.finished) + len(out.refused) + out.cut_off


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
