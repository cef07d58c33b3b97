"""What every scaling policy here is built on: the agents' samples as CloudWatch streams, an
Auto Scaling group with its policies (`GroupPolicy`, a `simulator.sim.ScalingPolicy`), its
shape, and the planner's view of one instance that the sizing policies share (`Sizing`).

Every policy is the same machinery: the instances' agents publish a sample every 10 s
into per-metric CloudWatch streams (aggregated over the group, as the
`AutoScalingGroupName` dimension is), the group's policies evaluate once a minute
with AWS's alarm and cooldown semantics (`simulator.cloudwatch`,
`simulator.autoscaling`), and the simulation launches or removes instances to match
the group's desired capacity. The policies themselves are in `simulator.policies`
(the design's and target tracking) and `simulator.serving_policies` (queue-guard,
slo-sizing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from planner.timing import Deployment, Efficiency, Workload, predict
from simulator.autoscaling import Group, Policy
from simulator.cloudwatch import (
    MetricMath,
    MetricStream,
)
from simulator.policy_config import module_scaling
from simulator.report import Slo
from simulator.sim import InstanceSample

# What each sample is published as: the module's alarm metric and the agent's serving
# gauges (the agent's names for them, agent/specs.py), the in-flight sum the agent does not
# publish yet, and the load balancer's own request count (AWS/ApplicationELB RequestCount:
# requests it sent to a target; those refused before one was chosen are not counted).
IN_FLIGHT = "RequestsInFlight"  # RequestsRunning + RequestsWaiting, per instance
WAITING = "RequestsWaiting"
RUNNING = "RequestsRunning"
TTFT_P95 = "TTFTP95"
REQUEST_COUNT = "RequestCount"


def gpu_metric() -> str:
    """The metric the module's GPU alarms read (its scaling_policy.json)."""
    return module_scaling().metric_name


def published() -> frozenset[str]:
    """The metrics the real agents publish that the simulated ones publish too (the
    simulator-only RequestsInFlight is not among them: no deployed alarm can read it)."""
    return frozenset({gpu_metric(), WAITING, RUNNING, TTFT_P95})


def _published(sample: InstanceSample) -> dict[str, float]:
    values = {gpu_metric(): 100 * sample.gpu_utilization,
              IN_FLIGHT: float(sample.running + sample.waiting),
              WAITING: float(sample.waiting), RUNNING: float(sample.running)}
    if sample.ttft_p95_s is not None:  # no first token in the interval: the agent sends none
        values[TTFT_P95] = sample.ttft_p95_s
    return values


def _routed_at(sample: InstanceSample) -> float:
    """When RequestCount counts a sample's requests. The load balancer counts a request in
    the period it routed it; a sample at `at` holds those routed in (at - interval, at], so
    just before `at` lies in their period. At `at` itself, a minute's last interval would
    land in the next minute: RequestCount ten seconds late, and the first minute 50 s long."""
    return math.nextafter(sample.at_s, -math.inf)


@dataclass
class GroupPolicy:
    """A group with its policies and the metric streams they read; a `ScalingPolicy`."""

    name: str
    group: Group
    policies: list[Policy] = field(default_factory=list)
    streams: dict[str, MetricStream] = field(default_factory=dict)
    expressions: list[MetricMath] = field(default_factory=list)  # what its alarms read

    def stream(self, metric: str) -> MetricStream:
        return self.streams.setdefault(metric, MetricStream())

    def observe(self, samples: Sequence[InstanceSample]) -> None:
        for sample in samples:
            for metric, value in _published(sample).items():
                self.stream(metric).put(sample.at_s, value)
            self.stream(REQUEST_COUNT).put(_routed_at(sample), float(sample.routed))

    def launched(self, instance: int, in_service_s: float) -> None:
        self.group.instance_in_service(in_service_s, instance)

    def leaving(self, at_s: float, instance: int) -> None:
        self.group.instance_terminating(at_s, instance)

    def gone(self, at_s: float, instance: int) -> None:
        self.group.instance_terminated(at_s, instance)

    def desired(self, now_s: float) -> int:
        for expression in self.expressions:
            expression.update(now_s)
        for policy in self.policies:
            policy.evaluate(now_s, self.group)
        return self.group.desired


@dataclass(frozen=True)
class GroupShape:
    """The group every policy starts from: the environment's capacity and warm-up."""

    min_size: int
    max_size: int
    desired: int
    warmup_s: float

    def group(self) -> Group:
        return Group(self.min_size, self.max_size, self.desired, warmup_s=self.warmup_s)


def slo_concurrency(dep: Deployment, eff: Efficiency, prompt_tokens: int, output_tokens: int,
                    slo: Slo, margin: float = 0.8) -> int:
    """The most requests one instance can hold while the roofline predicts TTFT and TPOT
    within `margin` of the SLO, for requests of the given mean lengths (at least 1)."""
    best = 1
    for concurrency in range(1, dep.max_num_seqs + 1):
        guess = predict(dep, Workload(prompt_tokens, output_tokens, concurrency), eff)
        if not guess.feasible or guess.running < concurrency:
            break  # beyond what the KV cache holds, requests queue: past the useful target
        if guess.ttft_s > margin * slo.ttft_s or guess.tpot_s > margin * slo.tpot_s:
            break
        best = concurrency
    return best


class SizingError(ValueError):
    """One instance cannot serve requests of the assumed lengths at all."""


@dataclass(frozen=True)
class Sizing:
    """The planner's view of one instance, for request lengths assumed beforehand, and what
    the sizing policies need besides: the SLO and the launch-to-serving delay."""

    inflight: int  # requests one instance holds within the SLO (`slo_concurrency`)
    capacity_rps: float  # requests/s it serves holding them (`planner.timing.predict`)
    slo: Slo
    lead_s: float  # from the launch call to serving (`LaunchDelay.total_s`)


def sizing(dep: Deployment, eff: Efficiency, lengths: tuple[int, int], slo: Slo,
           lead_s: float) -> Sizing:
    """The planner's sizing for requests of `lengths` (prompt, output tokens).

    Raises:
        SizingError: the roofline predicts that one instance cannot serve them at all.
    """
    inflight = slo_concurrency(dep, eff, *lengths, slo)
    guess = predict(dep, Workload(*lengths, inflight), eff)
    if not guess.feasible:
        raise SizingError(f"one instance cannot serve {lengths[0]}:{lengths[1]} tokens: "
                         f"{guess.why_not}")
    return Sizing(inflight, guess.requests_s, slo, lead_s)
