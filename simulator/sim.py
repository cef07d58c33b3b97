"""The event loop: a trace through a fleet under a scaling policy, in simulated time.

Events sit in one heap ordered by time, then by kind (at one instant a step ends
before an instance becomes ready, which is before a request arrives), then by the
order they were scheduled:
a request arriving, an engine step ending, an instance becoming able to serve,
the agent's sample of every instance (every `sample_s`, 10 s as the agent
publishes), the scaling policy's evaluation (every `evaluate_s`, CloudWatch's
one-minute alarm evaluation), and a draining instance's deregistration deadline.
A hand-written heap rather than SimPy: the loop has six event kinds and no
processes that wait on each other, and a plain heap costs one tuple per event.

The scaling policy only sees what CloudWatch would: the per-instance samples
(`InstanceSample`), and it answers with the group's desired capacity; the group
launches or removes instances to match, within its minimum and maximum.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from llmfleet.core.stats import percentile
from simulator.fleet import Fleet, Instance, LaunchDelay, State, finish_step, start_step
from simulator.replica import Finished, Replica
from simulator.traffic import Arrival


@dataclass(frozen=True, slots=True)
class InstanceSample:
    """What one instance's agent publishes for one sampling interval."""

    instance: int
    at_s: float
    gpu_utilization: float  # 0-1, the share of the interval the engine was stepping
    running: int
    waiting: int
    kv_usage: float  # 0-1
    routed: int = 0  # requests the load balancer sent it in the interval (ALB RequestCount)
    ttft_p95_s: float | None = None  # of the first tokens it produced in the interval


class ScalingPolicy(Protocol):
    """Decides the group's desired capacity from what CloudWatch sees, and hears from the
    group what EC2 did (a cooldown runs from when an activity's instances are in place)."""

    name: str

    def observe(self, samples: Sequence[InstanceSample]) -> None: ...

    def launched(self, instance: int, in_service_s: float) -> None: ...

    def leaving(self, at_s: float, instance: int) -> None: ...

    def gone(self, at_s: float, instance: int) -> None: ...

    def desired(self, now_s: float) -> int: ...


@dataclass(frozen=True)
class GroupLimits:
    """The group's bounds, and how many instances serve when the trace starts."""

    min_size: int = 1
    max_size: int = 4
    initial: int = 1  # serving when the trace starts


@dataclass(frozen=True)
class SimConfig:
    """The fleet's shape; the service model and engine limits build each instance's replica."""

    new_replica: Callable[[], Replica]
    limits: GroupLimits = field(default_factory=GroupLimits)
    launch: LaunchDelay = field(default_factory=LaunchDelay)
    deregistration_delay_s: float = 300.0
    sample_s: float = 10.0
    evaluate_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ScalingAction:
    """A change of the group's capacity, for the report."""

    at_s: float
    before: int
    after: int


@dataclass
class Outcome:
    """Everything a run produced, for `simulator.report`."""

    finished: list[Finished] = field(default_factory=list)
    refused: list[Arrival] = field(default_factory=list)  # no serving instance: 503
    cut_off: int = 0  # running when their instance terminated
    actions: list[ScalingAction] = field(default_factory=list)
    samples: list[InstanceSample] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    end_s: float = 0.0


class Kind(IntEnum):
    """Event kinds, in the order they are handled at one instant."""

    STEP_END = 0
    READY = 1
    ARRIVAL = 2
    DRAIN_DEADLINE = 3
    SAMPLE = 4
    EVALUATE = 5


class Simulation:
    """One run: a trace through a fresh fleet under one policy (`run` once)."""

    def __init__(self, config: SimConfig, policy: ScalingPolicy) -> None:
        self.config, self.policy = config, policy
        self.fleet = Fleet()
        self.out = Outcome()
        self._heap: list[tuple[float, Kind, int, int]] = []
        self._order = itertools.count()
        self._last_busy: dict[int, float] = {}
        self._progress: Callable[[float, float], None] | None = None
        self._end = 0.0

    def _at(self, when_s: float, kind: Kind, ref: int = 0) -> None:
        heapq.heappush(self._heap, (when_s, kind, next(self._order), ref))

    def run(self, arrivals: Sequence[Arrival],
            progress: Callable[[float, float], None] | None = None) -> Outcome:
        """Simulate the trace; `progress(now_s, last_arrival_s)` hears at every sample."""
        self._progress = progress
        for _ in range(self.config.limits.initial):
            self._launch(0.0, ready_now=True)
        for index, arrival in enumerate(arrivals):
            self._at(arrival.at_s, Kind.ARRIVAL, index)
        end = self._end = max((a.at_s for a in arrivals), default=0.0)
        self._at(self.config.sample_s, Kind.SAMPLE)
        self._at(self.config.evaluate_s, Kind.EVALUATE)
        while self._heap:
            now, kind, _, ref = heapq.heappop(self._heap)
            if kind in (Kind.SAMPLE, Kind.EVALUATE) and now > end and self._idle():
                continue  # the trace is over and every engine is done: let the clock stop
            if self._handle(now, kind, ref, arrivals):
                self.out.end_s = now  # a stale event (a step cut off, a cancelled launch) is not
        self.out.instances = self.fleet.instances
        return self.out

    def _idle(self) -> bool:
        return all(i.step is None for i in self.fleet.instances)

    def _handle(self, now: float, kind: Kind, ref: int, arrivals: Sequence[Arrival]) -> bool:
        """Apply one event; False when it no longer meant anything."""
        if kind is Kind.ARRIVAL:
            self._arrive(now, arrivals[ref])
        elif kind is Kind.SAMPLE:
            self._sample(now)
        elif kind is Kind.EVALUATE:
            self._evaluate(now)
        else:
            instance = self.fleet.instances[ref]
            if instance.state is State.TERMINATED:
                return False  # its step was cut off, its launch cancelled, its drain done
            if kind is Kind.STEP_END:
                self._step_end(now, instance)
            elif kind is Kind.READY:
                self._ready(now, instance)
            else:
                self._terminate(now, instance)
        return True

    def _arrive(self, now: float, arrival: Arrival) -> None:
        target = self.fleet.route(arrival, now)
        if target is None:
            self.out.refused.append(arrival)
        else:
            self._kick(target, now)

    def _kick(self, instance: Instance, now: float) -> None:
        end = start_step(instance, now)
        if end is not None:
            self._at(end, Kind.STEP_END, instance.id)

    def _step_end(self, now: float, instance: Instance) -> None:
        self.out.finished.extend(finish_step(instance, now))
        if instance.state is State.DRAINING and instance.replica.outstanding == 0:
            self._terminate(now, instance)
            return
        self._kick(instance, now)

    def _launch(self, now: float, ready_now: bool = False) -> None:
        launch = self.config.launch
        # EC2 runs it (InService, billed) after launch_s; it serves after booting and loading.
        running = now if ready_now else now + launch.launch_s
        instance = Instance(len(self.fleet.instances), self.config.new_replica(), running)
        self.fleet.instances.append(instance)
        self.policy.launched(instance.id, -launch.total_s if ready_now else running)
        self._at(now if ready_now else now + launch.total_s, Kind.READY, instance.id)

    def _ready(self, now: float, instance: Instance) -> None:
        if instance.state is State.LAUNCHING:
            instance.state, instance.ready_s = State.SERVING, now
            self._last_busy[instance.id] = 0.0

    def _remove(self, now: float, instance: Instance) -> None:
        self.policy.leaving(now, instance.id)
        if instance.state is State.LAUNCHING or instance.replica.outstanding == 0:
            self._terminate(now, instance)
            return
        instance.state = State.DRAINING
        self._at(now + self.config.deregistration_delay_s, Kind.DRAIN_DEADLINE, instance.id)

    def _terminate(self, now: float, instance: Instance) -> None:
        if instance.state is State.TERMINATED:
            return
        instance.cut_off = instance.replica.outstanding
        self.out.cut_off += instance.cut_off
        instance.state, instance.terminated_s, instance.step = State.TERMINATED, now, None
        self.policy.gone(now, instance.id)

    def _sample(self, now: float) -> None:
        samples = [self._sample_one(i, now) for i in self.fleet.instances
                   if self._agent_runs(i, now)]
        self.out.samples.extend(samples)
        self.policy.observe(samples)
        if self._progress is not None:
            self._progress(now, self._end)
        self._at(now + self.config.sample_s, Kind.SAMPLE)

    def _agent_runs(self, instance: Instance, now: float) -> bool:
        """Whether the instance's agent publishes: from the end of its boot (cloud-init
        starts it beside the engine, which then loads the model at 0% GPU utilisation)
        until it terminates, draining included."""
        if instance.state is State.LAUNCHING:
            return now >= instance.launched_s + self.config.launch.boot_s
        return instance.state is not State.TERMINATED

    def _sample_one(self, instance: Instance, now: float) -> InstanceSample:
        busy = instance.busy_until(now)
        share = (busy - self._last_busy.get(instance.id, 0.0)) / self.config.sample_s
        self._last_busy[instance.id] = busy
        replica = instance.replica
        routed, instance.routed = instance.routed, 0
        ttft = percentile(replica.first_tokens, 95)
        replica.first_tokens.clear()
        return InstanceSample(instance.id, now, min(1.0, share), len(replica.running),
                              len(replica.waiting), replica.kv_usage, routed, ttft)

    def _evaluate(self, now: float) -> None:
        limits = self.config.limits
        current = len(self.fleet.live())
        wanted = max(limits.min_size, min(limits.max_size, self.policy.desired(now)))
        if wanted != current:
            self.out.actions.append(ScalingAction(now, current, wanted))
        for _ in range(wanted - current):
            self._launch(now)
        for instance in self.fleet.to_remove(current - wanted):
            self._remove(now, instance)
        self._at(now + self.config.evaluate_s, Kind.EVALUATE)
