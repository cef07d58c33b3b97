"""Simulated fleets for the simulator's tests: a flat engine, a scripted policy, a small
group's config, steady traces, and checks that every request is accounted for and that two
runs agree field by field."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from simulator.fleet import Instance, LaunchDelay
from simulator.replica import Replica
from simulator.service import StepLoad
from simulator.sim import (
    GroupLimits,
    InstanceSample,
    Outcome,
    ScalingPolicy,
    SimConfig,
    Simulation,
)
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


def accounted(out: Outcome) -> int:
    """Every request ends one way: completed, refused or cut off."""
    return len(out.finished) + len(out.refused) + out.cut_off


def both(cfg: SimConfig, make_policy: Callable[[], ScalingPolicy],
         arrivals: list[Arrival]) -> tuple[Outcome, Outcome]:
    """The trace stepped one at a time, then in runs; asserts every result is the same."""
    single = Simulation(replace(cfg, coalesce=False), make_policy()).run(arrivals)
    runs = Simulation(replace(cfg, coalesce=True), make_policy()).run(arrivals)
    assert_same(single, runs)
    assert runs.events * 2 < single.events  # the runs did cover many steps each
    return single, runs


def assert_same(one: Outcome, other: Outcome) -> None:
    """Field by field, floats exactly, so that a failure says what differs."""
    assert one.finished == other.finished
    assert one.samples == other.samples
    assert one.actions == other.actions
    assert (one.cut_off, one.refused, one.end_s) == (other.cut_off, other.refused, other.end_s)
    assert one.steps == other.steps
    assert one.interruptions == other.interruptions
    assert [_life(i) for i in one.instances] == [_life(i) for i in other.instances]


def _life(instance: Instance) -> tuple[object, ...]:
    return (instance.id, instance.state, instance.requested_s, instance.launched_s,
            instance.ready_s, instance.deregistered_s, instance.terminated_s, instance.busy_s,
            instance.cut_off)


def instance(number: int, requested_s: float = 0.0, ready_s: float | None = 0.0,
             deregistered_s: float | None = None,
             terminated_s: float | None = None) -> Instance:
    return Instance(number, Replica(Flat()), launched_s=requested_s, requested_s=requested_s,
                    ready_s=ready_s, deregistered_s=deregistered_s, terminated_s=terminated_s)


def scaled_run() -> tuple[Outcome, list[Arrival]]:
    """Out to 3 at 60 s, back to 1 at 240 s, on a steady trace of five minutes."""
    config = SimConfig(new_replica=lambda: Replica(Flat()), limits=GroupLimits(1, 4, 1),
                       launch=LaunchDelay(launch_s=10, boot_s=20, model_load_s=20, health_s=10),
                       deregistration_delay_s=30)
    arrivals = [Arrival(i * 0.5, 50, 200) for i in range(600)]
    return Simulation(config, Scripted([(0, 1), (60, 3), (240, 1)])).run(arrivals), arrivals
