"""The instances of one Auto Scaling group behind the load balancer, and what they cost.

An instance is launched, becomes able to serve after a launch-to-serving delay made
of three parts (the EC2 launch, the boot with cloud-init's installs, the model load
and the load balancer's health checks), serves, and on scale-in is deregistered: it
gets no new requests and finishes those it holds for at most the target group's
deregistration delay, then terminates; what is still running then is cut off. It is
billed per second from when EC2 runs it to termination, with EC2's one-minute
minimum.

The load balancer sends each request to the serving instance with the fewest
outstanding requests (the ALB's least-outstanding-requests algorithm), ties to the
longest idle; with no serving instance it answers 503, which the simulator counts
as a failed request.

An instance's engine may be in the middle of a run of pure-decode steps planned together
(`simulator.replica.DecodeRun`): `catch_up` applies the steps that have ended before
anything reads the engine, and `cut_run` stops the run after the step in progress when a
request is queued, so that both see what stepping one at a time would. Busy time is
counted by stretches of back-to-back steps, which a run does not change.

Spot instances (`SpotInterruptions`) get EC2's interruption notice at random, a Poisson
process from when EC2 runs each one. The notice deregisters the instance at once (no new
requests; those it holds go on), as a handler of the notice would (the agent does not
watch for it yet), and two minutes later EC2 terminates it, cutting off what still runs;
billing ends then. The group counts the instance until then and launches its
replacement when it is gone: the simple case, Auto Scaling without Capacity Rebalancing,
which replaces a spot instance only once EC2 has interrupted it and its health check
fails (the EC2 Auto Scaling User Guide; the health check's own delay is left out). With
Capacity Rebalancing the group launches on the rebalance recommendation, which usually
comes before the notice; that is not modelled.

On scale-in, AWS's default termination policy picks among instances of one launch
template at random once availability zones are balanced; the simulator picks the
one launched last, so that a cancelled scale-out removes a still-launching instance
first, and a run is repeatable.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from enum import StrEnum

from simulator.replica import DecodeRun, Finished, Replica, Step
from simulator.traffic import Arrival


class State(StrEnum):
    LAUNCHING = "launching"
    SERVING = "serving"
    DRAINING = "draining"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class LaunchDelay:
    """Seconds from the launch call to the first request the load balancer sends."""

    launch_s: float = 45.0  # EC2 allocates and starts the instance
    boot_s: float = 120.0  # the OS boots; cloud-init installs the wheel and starts the units
    model_load_s: float = 90.0  # vLLM loads the weights and captures its graphs
    health_s: float = 20.0  # two passing health checks 10 s apart register the target

    @property
    def total_s(self) -> float:
        return self.launch_s + self.boot_s + self.model_load_s + self.health_s


@dataclass(frozen=True)
class SpotInterruptions:
    """Every instance is spot, and EC2 interrupts each at `per_instance_hour` on average.

    Raises:
        ValueError: a rate or notice that is negative or not finite.
    """

    per_instance_hour: float  # mean interruption notices per instance-hour running
    seed: int = 0  # the same seed draws the same interruptions
    notice_s: float = 120.0  # from the notice to the termination: EC2's two minutes

    def __post_init__(self) -> None:
        if not 0 <= self.per_instance_hour < math.inf or not 0 <= self.notice_s < math.inf:
            raise ValueError(f"spot interruptions need a rate and a notice of at least 0, "
                             f"not {self.per_instance_hour}/h and {self.notice_s} s")

    def time_to_notice_s(self, rng: random.Random) -> float:
        """Seconds from when EC2 runs an instance to its notice (the rate must be above 0)."""
        return rng.expovariate(self.per_instance_hour / 3600)


@dataclass
class Instance:
    """One instance: its engine, its state, and when it started and stopped costing."""

    id: int
    replica: Replica
    launched_s: float  # when EC2 runs it (billing starts), not when it was asked for
    requested_s: float = 0.0  # when the group asked for it (a scaling action, or the start)
    state: State = State.LAUNCHING
    ready_s: float | None = None  # when the load balancer started sending it requests
    deregistered_s: float | None = None  # when the load balancer stopped sending it requests
    interrupted_s: float | None = None  # when EC2 gave its spot interruption notice
    terminated_s: float | None = None
    step: Step | DecodeRun | None = None
    step_event: int = -1  # the simulation's event for the end of `step`; others are stale
    busy_since_s: float | None = None  # when the engine started stepping, None when idle
    busy_s: float = 0.0  # engine time in the stretches of stepping that ended
    last_assigned_s: float = -1.0
    routed: int = 0  # requests the load balancer sent it since the agent last read
    cut_off: int = 0  # requests still running when it terminated

    def busy_until(self, now_s: float) -> float:
        """Engine-busy seconds up to `now_s`, the step in progress included (NVML's meaning
        of utilisation: the share of time any kernel ran)."""
        since = self.busy_since_s
        return self.busy_s + (now_s - since if since is not None else 0.0)

    def billed_s(self, now_s: float) -> float:
        return billed_s(self.launched_s, self.terminated_s, now_s)


MIN_BILLED_S = 60.0  # EC2's per-second billing has a one-minute minimum


def billed_s(launched_s: float, terminated_s: float | None, now_s: float) -> float:
    """Seconds EC2 bills an instance run from `launched_s` until it terminated, or until
    `now_s` if it has not."""
    end = terminated_s if terminated_s is not None else now_s
    return max(end - launched_s, MIN_BILLED_S)


@dataclass
class Fleet:
    """Every instance the group ever had, and the load balancer over the serving ones."""

    instances: list[Instance] = field(default_factory=list)

    def serving(self) -> list[Instance]:
        """Instances the load balancer sends requests to (not those with a spot notice)."""
        return [i for i in self.instances
                if i.state is State.SERVING and i.deregistered_s is None]

    def live(self) -> list[Instance]:
        """Instances the group counts toward its capacity (launching or serving, those with
        a spot notice included)."""
        return [i for i in self.instances if i.state in (State.LAUNCHING, State.SERVING)]

    def route(self, arrival: Arrival, now_s: float) -> Instance | None:
        """The serving instance with the fewest outstanding requests, which queued it; None
        when no instance serves (a 503) or the request exceeds the engine's context (a 400)."""
        serving = self.serving()
        if not serving:
            return None
        target = min(serving, key=lambda i: (i.replica.outstanding, i.last_assigned_s, i.id))
        target.last_assigned_s = now_s
        target.routed += 1
        return target if target.replica.submit(arrival) else None

    def to_remove(self, count: int) -> list[Instance]:
        """Which instances a scale-in by `count` removes: the last launched first."""
        if count <= 0:
            return []
        return sorted(self.live(), key=lambda i: (i.launched_s, i.id), reverse=True)[:count]


def finish_step(instance: Instance, now_s: float) -> list[Finished]:
    """The step (or run) in progress on `instance` ended at `now_s`."""
    step, instance.step = instance.step, None
    if step is None:
        raise RuntimeError(f"instance {instance.id}: a step ended while none ran")
    if isinstance(step, DecodeRun):
        return instance.replica.complete_run(step, now_s)
    return instance.replica.complete(step, now_s)


def start_step(instance: Instance, now_s: float, horizon_s: float | None = None) -> float | None:
    """Start the next step if there is work; given a `horizon_s`, as a run of pure-decode
    steps planned up to it when possible (`Replica.plan_run`). Its end, or None when idle,
    which closes the stretch of stepping that the busy time counts."""
    if instance.step is not None or instance.state is State.TERMINATED:
        return None
    replica = instance.replica
    step = replica.plan() if horizon_s is None else replica.plan_run(now_s, horizon_s)
    if step is None:
        if instance.busy_since_s is not None:
            instance.busy_s += now_s - instance.busy_since_s
            instance.busy_since_s = None
        return None
    instance.step = step
    if instance.busy_since_s is None:
        instance.busy_since_s = now_s
    return step.end_s if isinstance(step, DecodeRun) else now_s + step.duration_s


def catch_up(instance: Instance, now_s: float) -> None:
    """Apply the steps of the instance's run that ended by `now_s` (not its last, which
    its own event completes)."""
    run = instance.step
    if isinstance(run, DecodeRun):
        done = bisect.bisect_right(run.ends, now_s, run.applied, len(run.ends) - 1)
        instance.replica.advance(run, done - run.applied)


def cut_run(instance: Instance, now_s: float) -> float | None:
    """A request was queued on `instance` at `now_s`: its run stops after the step in
    progress, whose end the engine admits the request at. The run's new end, or None
    when that did not change it."""
    run = instance.step
    if not isinstance(run, DecodeRun):
        return None
    catch_up(instance, now_s)
    if run.applied == len(run.ends) - 1:
        return None
    del run.ends[run.applied + 1:]
    return run.end_s
