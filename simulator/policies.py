"""The scaling policies the simulator compares, each an Auto Scaling group driven by CloudWatch.

Every policy is the same machinery: the instances' agents publish a sample every 10 s
into per-metric CloudWatch streams (aggregated over the group, as the
`AutoScalingGroupName` dimension is), the group's policies evaluate once a minute
with AWS's alarm and cooldown semantics (`simulator.cloudwatch`,
`simulator.autoscaling`), and the simulation launches or removes instances to match
the group's desired capacity. What differs is the signal and the rule:

- `gpu-70-30`, the design's policy, exactly as `infrastructure/modules/compute` applies
  it from the environment's `scaling` values (simple scaling, one instance out above
  `scale_out_pct` average GPU utilisation, one in below `scale_in_pct`). Utilisation is
  NVML's: the share of time any kernel ran, so one running sequence reads ~100%.
- `inflight-target`: target tracking on the requests each instance holds (running plus
  waiting, the engine's own gauges), with the target set to the concurrency at which
  the planner's roofline predicts the SLO is still met with a margin
  (`slo_concurrency`), for request lengths assumed beforehand (`--lengths`), not read
  from the trace. The agent publishes the two gauges separately today, so deploying
  it needs their sum (a metric-math target or one more agent metric).
- `fixed`: no scaling: the group stays at its desired capacity, the baseline every
  policy's cost reads against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from planner.timing import Deployment, Efficiency, Workload, predict
from simulator.autoscaling import Group, Policy, TargetTracking
from simulator.cloudwatch import MetricStream
from simulator.policy_config import MODULE, Scaling, gpu_policies
from simulator.report import Slo
from simulator.sim import InstanceSample

# What each sample is published as: the module's alarm metric (the agent's name for it,
# agent/specs.py), and the in-flight sum the agent does not publish yet.
GPU_UTILIZATION = MODULE.metric_name
IN_FLIGHT = "RequestsInFlight"  # RequestsRunning + RequestsWaiting, per instance


def _published(sample: InstanceSample) -> dict[str, float]:
    return {GPU_UTILIZATION: 100 * sample.gpu_utilization,
            IN_FLIGHT: float(sample.running + sample.waiting)}


@dataclass
class GroupPolicy:
    """A group with its policies and the metric streams they read; a `ScalingPolicy`."""

    name: str
    group: Group
    policies: list[Policy] = field(default_factory=list)
    streams: dict[str, MetricStream] = field(default_factory=dict)

    def stream(self, metric: str) -> MetricStream:
        return self.streams.setdefault(metric, MetricStream())

    def observe(self, samples: Sequence[InstanceSample]) -> None:
        for sample in samples:
            for metric, value in _published(sample).items():
                self.stream(metric).put(sample.at_s, value)

    def launched(self, instance: int, in_service_s: float) -> None:
        self.group.instance_in_service(in_service_s, instance)

    def leaving(self, at_s: float, instance: int) -> None:
        self.group.instance_terminating(at_s, instance)

    def gone(self, at_s: float, instance: int) -> None:
        self.group.instance_terminated(at_s, instance)

    def desired(self, now_s: float) -> int:
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


def gpu_70_30(shape: GroupShape, scaling: Scaling) -> GroupPolicy:
    """The design's policy: the module's two simple-scaling policies on GPU utilisation."""
    policy = GroupPolicy("gpu-70-30", shape.group())
    policy.policies.extend(gpu_policies(scaling, policy.stream(GPU_UTILIZATION)))
    return policy


def inflight_target(shape: GroupShape, target: float) -> GroupPolicy:
    """Target tracking on the requests each instance holds, running or waiting."""
    policy = GroupPolicy("inflight-target", shape.group())
    policy.policies.append(TargetTracking("inflight", policy.stream(IN_FLIGHT), target))
    return policy


def fixed(shape: GroupShape) -> GroupPolicy:
    """No policy: the group stays at its desired capacity."""
    return GroupPolicy("fixed", shape.group())


def slo_concurrency(dep: Deployment, eff: Efficiency, prompt_tokens: int, output_tokens: int,
                    slo: Slo, margin: float = 0.8) -> int:
    """The most requests one instance can hold while the roofline predicts TTFT and TPOT
    within `margin` of the SLO, for requests of the given mean lengths (at least 1)."""
    best = 1
    for concurrency in range(1, dep.settings.max_num_seqs + 1):
        guess = predict(dep, Workload(prompt_tokens, output_tokens, concurrency), eff)
        if not guess.feasible or guess.running < concurrency:
            break  # beyond what the KV cache holds, requests queue: past the useful target
        if guess.ttft_s > margin * slo.ttft_s or guess.tpot_s > margin * slo.tpot_s:
            break
        best = concurrency
    return best


PolicyFactory = Callable[[], GroupPolicy]


def builtin(shape: GroupShape, scaling: Scaling, inflight: float) -> dict[str, PolicyFactory]:
    """Every built-in policy by name, each built fresh for its run."""
    return {"gpu-70-30": lambda: gpu_70_30(shape, scaling),
            "inflight-target": lambda: inflight_target(shape, inflight),
            "fixed": lambda: fixed(shape)}

