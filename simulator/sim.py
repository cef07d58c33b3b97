"""The event loop: a trace through a fleet under a scaling policy, in simulated time.

Events sit in one heap ordered by time, then by kind (at one instant a step ends
before an instance becomes ready, which is before a request arrives), then by the
order they were scheduled, except that step ends go in instance order (so that
the order cannot depend on how steps were planned together):
a request arriving, an engine step ending, an instance becoming able to serve,
the agent's sample of every instance (every `sample_s`, 10 s as the agent
publishes), the scaling policy's evaluation (every `evaluate_s`, CloudWatch's
one-minute alarm evaluation), a draining instance's deregistration deadline, and,
with spot interruptions (`SimConfig.spot`, `simulator.fleet.SpotInterruptions`), an
interruption notice and EC2 taking the instance back.
A hand-written heap rather than SimPy: the loop has eight event kinds and no
processes that wait on each other, and a plain heap costs one tuple per event.
Arrivals join the heap one at a time, in time order, which keeps it small.

An engine steps through runs of pure-decode steps planned together
(`simulator.replica.DecodeRun`; `SimConfig.coalesce` turns runs off, for tests that
compare the two). Nothing outside an engine changes a run but a request queued on it:
the load balancer counts requests in the engine, which no step of a run changes, and
whatever reads the engine first applies the steps that have ended
(`simulator.fleet.catch_up`). A run is planned no further than the next arrival (the
step in progress then is its last), wherever that request goes: planning past it was
measured 25% slower on one instance, the steps beyond a request's arrival being planned
for nothing; planning to it costs every other engine a new run per arrival, and was no
slower on four. A request queued on an engine still cuts its run after the step in
progress (`simulator.fleet.cut_run`), so that a run is right however far it was
planned; the step-end event names the run it ends (`Instance.step_event`), and a cut
run's old end stays on the heap as a stale event. An hour of traffic at 5 requests/s
under the GPU policy (up to four instances): 1.4 million steps in 120,000 events.

The scaling policy only sees what CloudWatch would: the per-instance samples
(`InstanceSample`), and it answers with the group's desired capacity; the group
launches or removes instances to match, within its minimum and maximum.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from llmfleet.core.stats import percentile
from simulator.fleet import (
    Fleet,
    Instance,
    LaunchDelay,
    SpotInterruptions,
    State,
    catch_up,
    cut_run,
    finish_step,
    start_step,
)
from simulator.replica import DecodeRun, Finished, Replica
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
    coalesce: bool = True  # plan pure-decode steps in runs; the same results, faster
    spot: SpotInterruptions | None = None  # every instance spot, interrupted at this rate


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
    refused: list[Arrival] = field(default_factory=list)  # 503 (no serving instance) or 400
    # The refused for want of a serving instance: those the router's `auto` would send to
    # another pool's model (`simulator.pools`).
    unavailable: list[Arrival] = field(default_factory=list)
    cut_off: int = 0  # running when their instance terminated
    actions: list[ScalingAction] = field(default_factory=list)
    samples: list[InstanceSample] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    end_s: float = 0.0
    events: int = 0  # handled, stale ones included: what the run cost
    steps: int = 0  # engine steps completed, over every instance
    interruptions: list[tuple[float, int]] = field(default_factory=list)  # (notice, instance)


class Kind(IntEnum):
    """Event kinds, in the order they are handled at one instant."""

    STEP_END = 0
    READY = 1
    NOTICE = 2  # a spot interruption notice: no request arriving with it is sent there
    ARRIVAL = 3
    DRAIN_DEADLINE = 4
    RECLAIM = 5  # EC2 takes an interrupted spot instance back
    SAMPLE = 6
    EVALUATE = 7


# Events that come whatever the traffic: once the trace is over and every engine idle, they
# stop the clock rather than run it on.
_BACKGROUND = frozenset((Kind.NOTICE, Kind.SAMPLE, Kind.EVALUATE))
_KEY_BITS = 40  # a step end's tie-break: its instance above, the order scheduled below


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
        self._arrivals: Sequence[Arrival] = ()
        self._pending: list[int] = []  # arrivals not yet on the heap, the next one last
        self._next_arrival_s = math.inf  # of the one on the heap: how far a run is planned
        self._spot_rng = random.Random(config.spot.seed if config.spot else 0)

    def _at(self, when_s: float, kind: Kind, ref: int = 0) -> None:
        heapq.heappush(self._heap, (when_s, kind, next(self._order), ref))

    def _step_end_at(self, when_s: float, instance: Instance) -> None:
        key = instance.id << _KEY_BITS | next(self._order)
        heapq.heappush(self._heap, (when_s, Kind.STEP_END, key, instance.id))
        instance.step_event = key

    def run(self, arrivals: Sequence[Arrival],
            progress: Callable[[float, float], None] | None = None) -> Outcome:
        """Simulate the trace; `progress(now_s, last_arrival_s)` hears at every sample."""
        self._progress, self._arrivals = progress, arrivals
        for _ in range(self.config.limits.initial):
            self._launch(0.0, ready_now=True)
        # Time order, ties in trace order (as the heap ordered them when all were on it).
        self._pending = sorted(range(len(arrivals)), key=lambda i: arrivals[i].at_s)
        self._pending.reverse()
        self._feed()
        end = self._end = max((a.at_s for a in arrivals), default=0.0)
        self._at(self.config.sample_s, Kind.SAMPLE)
        self._at(self.config.evaluate_s, Kind.EVALUATE)
        while self._heap:
            now, kind, key, ref = heapq.heappop(self._heap)
            self.out.events += 1
            if kind in _BACKGROUND and now > end and self._idle():
                continue  # the trace is over and every engine is done: let the clock stop
            if self._handle(now, kind, key, ref):
                self.out.end_s = now  # a stale event (a step cut off, a cancelled launch) is not
        self.out.instances = self.fleet.instances
        return self.out

    def _feed(self) -> None:
        """Put the next arrival on the heap."""
        if self._pending:
            index = self._pending.pop()
            self._next_arrival_s = self._arrivals[index].at_s
            self._at(self._next_arrival_s, Kind.ARRIVAL, index)
        else:
            self._next_arrival_s = math.inf

    def _idle(self) -> bool:
        return all(i.step is None for i in self.fleet.instances)

    def _handle(self, now: float, kind: Kind, key: int, ref: int) -> bool:
        """Apply one event; False when it no longer meant anything."""
        if kind is Kind.ARRIVAL:
            self._arrive(now, self._arrivals[ref])
        elif kind is Kind.SAMPLE:
            self._sample(now)
        elif kind is Kind.EVALUATE:
            self._evaluate(now)
        else:
            instance = self.fleet.instances[ref]
            if instance.state is State.TERMINATED:
                return False  # its step was cut off, its launch cancelled, its drain done
            if kind is Kind.STEP_END:
                if key != instance.step_event:
                    return False  # the old end of a run that a request cut short
                self._step_end(now, instance)
            elif kind is Kind.READY:
                self._ready(now, instance)
            elif kind is Kind.NOTICE:
                self._notice(now, instance)
            elif kind is Kind.RECLAIM:
                self._reclaim(now, instance)
            else:
                self._terminate(now, instance)
        return True

    def _arrive(self, now: float, arrival: Arrival) -> None:
        self._feed()
        target = self.fleet.route(arrival, now)
        if target is None:
            self.out.refused.append(arrival)
            if not self.fleet.serving():
                self.out.unavailable.append(arrival)
            return
        end = cut_run(target, now)
        if end is not None:
            self._step_end_at(end, target)
        self._kick(target, now)

    def _kick(self, instance: Instance, now: float) -> None:
        horizon = self._next_arrival_s if self.config.coalesce else None
        end = start_step(instance, now, horizon)
        if end is not None:
            self._step_end_at(end, instance)

    def _step_end(self, now: float, instance: Instance) -> None:
        step = instance.step
        self.out.steps += len(step.ends) if isinstance(step, DecodeRun) else 1
        self.out.finished.extend(finish_step(instance, now))
        if instance.state is State.DRAINING and instance.replica.outstanding == 0:
            self._terminate(now, instance)
            return
        self._kick(instance, now)

    def _launch(self, now: float, ready_now: bool = False) -> None:
        launch = self.config.launch
        # EC2 runs it (InService, billed) after launch_s; it serves after booting and loading.
        running = now if ready_now else now + launch.launch_s
        instance = Instance(len(self.fleet.instances), self.config.new_replica(), running,
                            requested_s=now)
        self.fleet.instances.append(instance)
        self.policy.launched(instance.id, -launch.total_s if ready_now else running)
        self._at(now if ready_now else now + launch.total_s, Kind.READY, instance.id)
        spot = self.config.spot
        if spot is not None and spot.per_instance_hour > 0:
            self._at(running + spot.time_to_notice_s(self._spot_rng), Kind.NOTICE, instance.id)

    def _ready(self, now: float, instance: Instance) -> None:
        if instance.state is State.LAUNCHING and instance.interrupted_s is None:
            instance.state, instance.ready_s = State.SERVING, now
            self._last_busy[instance.id] = 0.0

    def _notice(self, now: float, instance: Instance) -> None:
        """EC2 will take the spot instance back: the load balancer sends it nothing more."""
        assert self.config.spot is not None  # only a spot fleet schedules notices
        instance.interrupted_s = now
        if instance.deregistered_s is None:
            instance.deregistered_s = now
        self.out.interruptions.append((now, instance.id))
        self._at(now + self.config.spot.notice_s, Kind.RECLAIM, instance.id)

    def _reclaim(self, now: float, instance: Instance) -> None:
        """The notice ran out: EC2 terminates the instance, and the group, which counted it
        until now (unless a scale-in already took it), launches a replacement, unless the
        trace is over and every engine idle (the run ends there, as its samples do)."""
        counted = instance.state in (State.LAUNCHING, State.SERVING)
        if counted:
            self.policy.leaving(now, instance.id)
        self._terminate(now, instance)
        if counted and not (now > self._end and self._idle()):
            self._launch(now)  # else the run is over: a replacement would only be billed

    def _remove(self, now: float, instance: Instance) -> None:
        self.policy.leaving(now, instance.id)
        if instance.deregistered_s is None:  # else a spot notice already deregistered it
            instance.deregistered_s = now
        if instance.state is State.LAUNCHING or instance.replica.outstanding == 0:
            self._terminate(now, instance)
            return
        instance.state = State.DRAINING
        self._at(now + self.config.deregistration_delay_s, Kind.DRAIN_DEADLINE, instance.id)

    def _terminate(self, now: float, instance: Instance) -> None:
        if instance.state is State.TERMINATED:
            return
        catch_up(instance, now)  # the steps of its run that ended count, as one at a time
        if isinstance(instance.step, DecodeRun):
            self.out.steps += instance.step.applied
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
        catch_up(instance, now)
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
