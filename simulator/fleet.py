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

On scale-in, AWS's default termination policy picks among instances of one launch
template at random once availability zones are balanced; the simulator picks the
one launched last, so that a cancelled scale-out removes a still-launching instance
first, and a run is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from simulator.replica import Finished, Replica, Step
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


@dataclass
class Instance:
    """One instance: its engine, its state, and when it started and stopped costing."""

    id: int
    replica: Replica
    launched_s: float  # when EC2 runs it (billing starts), not when it was asked for
    state: State = State.LAUNCHING
    ready_s: float | None = None  # when the load balancer started sending it requests
    terminated_s: float | None = None
    step: Step | None = None
    step_started_s: float = 0.0
    busy_s: float = 0.0  # engine time spent in finished steps
    last_assigned_s: float = -1.0
    routed: int = 0  # requests the load balancer sent it since the agent last read
    cut_off: int = 0  # requests still running when it terminated

    def busy_until(self, now_s: float) -> float:
        """Engine-busy seconds up to `now_s`, the step in progress included (NVML's meaning
        of utilisation: the share of time any kernel ran)."""
        running = now_s - self.step_started_s if self.step is not None else 0.0
        return self.busy_s + max(0.0, running)

    def billed_s(self, now_s: float) -> float:
        end = self.terminated_s if self.terminated_s is not None else now_s
        return max(end - self.launched_s, 60.0)


@dataclass
class Fleet:
    """Every instance the group ever had, and the load balancer over the serving ones."""

    instances: list[Instance] = field(default_factory=list)

    def serving(self) -> list[Instance]:
        return [i for i in self.instances if i.state is State.SERVING]

    def live(self) -> list[Instance]:
        """Instances the group counts toward its capacity (launching or serving)."""
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
    """The step in progress on `instance` ended at `now_s`."""
    step, instance.step = instance.step, None
    if step is None:
        raise RuntimeError(f"instance {instance.id}: a step ended while none ran")
    instance.busy_s += now_s - instance.step_started_s
    return instance.replica.complete(step, now_s)


def start_step(instance: Instance, now_s: float) -> float | None:
    """Start the next step if there is work; its end time, or None when idle."""
    if instance.step is not None or instance.state is State.TERMINATED:
        return None
    step = instance.replica.plan()
    if step is None:
        return None
    instance.step, instance.step_started_s = step, now_s
    return now_s + step.duration_s
