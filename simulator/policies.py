"""The scaling policies the simulator compares, each an Auto Scaling group driven by CloudWatch.

Every policy is the same machinery (`simulator.group_policy`): the agents' samples as
CloudWatch streams, the group's policies evaluated once a minute with AWS's semantics, and
the simulation launching or removing instances to match. What differs is the signal and
the rule:

- `gpu-70-30`, the design's policy, exactly as `infrastructure/modules/compute` applies
  it from the environment's `scaling` values (simple scaling, one instance out above
  `scale_out_pct` average GPU utilisation, one in below `scale_in_pct`). Utilisation is
  NVML's: the share of time any kernel ran, so one running sequence reads ~100%.
- `inflight-target`: target tracking on the requests each instance holds (running plus
  waiting, the engine's own gauges), with the target set to the concurrency at which
  the planner's roofline predicts the SLO is still met with a margin
  (`slo_concurrency`), for request lengths assumed beforehand (`--lengths`), not read
  from the trace, and AWS's own scale-in. `inflight-guard` is its deployed form: the
  same target on the metric math sum of the two gauges the agent publishes, its scale-in
  left to queue-guard's quiet alarm.
- `fixed`: no scaling: the group stays at its desired capacity, the baseline every
  policy's cost reads against.
- `queue-guard` (`simulator.serving_policies`): the engine's queue with a latency
  guardrail, three alarms and three simple policies, as the module applies them with the
  environment's `scaling.queue_guard` (its TTFT SLO, not `--ttft-slo`, sets the guardrail)
  and its queue_guard.json (`queue_guard` says how each is deployed): one instance more when the
  requests waiting per instance stay above a threshold, or when the worst instance's p95
  TTFT stays above a guardrail under the SLO; one fewer only when a metric math alarm has
  seen no request waiting anywhere and TTFT well under the guardrail for a long window.
- `inflight-guard` (`simulator.serving_policies`): what the issue's operators asked for,
  target tracking on the requests per instance (running plus waiting, metric math over the
  two gauges the agent publishes) at the environment's `scaling.inflight_per_instance`,
  its own scale-in disabled, with queue-guard's TTFT guardrail and quiet scale-in.
- `slo-sizing`: a controller (`SloSizing`) that sizes the group from the load balancer's
  request rate and the planner's prediction of what one instance serves within the SLO
  (at `TARGET_UTILIZATION` of it), ahead by the launch delay, and shrinks it only slowly.
- `oracle`: the clairvoyant bound (`simulator.oracle`): it knows the trace.

The planner's numbers every sizing policy shares (the in-flight target, the requests/s one
instance serves, the SLO and the launch-to-serving delay) are one `Sizing`, for request
lengths assumed beforehand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from simulator import oracle
from simulator.autoscaling import TargetTracking
from simulator.group_policy import IN_FLIGHT, GroupPolicy, GroupShape, Sizing, gpu_metric
from simulator.policy_config import Scaling, gpu_policies
from simulator.report import Slo
from simulator.serving_policies import QueueGuard, inflight_guard, queue_guard, slo_sizing
from simulator.sim import ScalingPolicy
from simulator.traffic import Arrival


def gpu_70_30(shape: GroupShape, scaling: Scaling) -> GroupPolicy:
    """The design's policy: the module's two simple-scaling policies on GPU utilisation."""
    policy = GroupPolicy("gpu-70-30", shape.group())
    policy.policies.extend(gpu_policies(scaling, policy.stream(gpu_metric())))
    return policy


def inflight_target(shape: GroupShape, target: float) -> GroupPolicy:
    """Target tracking on the requests each instance holds, running or waiting."""
    policy = GroupPolicy("inflight-target", shape.group())
    policy.policies.append(TargetTracking("inflight", policy.stream(IN_FLIGHT), target))
    return policy


# inflight-guard's target where the environment sets none: this share of the requests the
# planner says one instance holds within the SLO, so that the group grows before the SLO
# is at its edge (prod's 48 is 0.73 of its 66; docs/deploy.md "Scaling").
INFLIGHT_TARGET_SHARE = 0.75


def inflight_target_for(sized: Sizing) -> float:
    return max(1.0, round(INFLIGHT_TARGET_SHARE * sized.inflight))


def fixed(shape: GroupShape) -> GroupPolicy:
    """No policy: the group stays at its desired capacity."""
    return GroupPolicy("fixed", shape.group())


PolicyFactory = Callable[[], ScalingPolicy]


def builtin(shape: GroupShape, scaling: Scaling, sized: Sizing,
            arrivals: Sequence[Arrival]) -> dict[str, PolicyFactory]:
    """Every built-in policy by name, each built fresh for its run (the oracle for the
    planner's own capacity; `oracle.cheapest` searches for the factor that meets the SLO)."""
    return {"gpu-70-30": lambda: gpu_70_30(shape, scaling),
            "inflight-target": lambda: inflight_target(shape, sized.inflight),
            "fixed": lambda: fixed(shape),
            "queue-guard": lambda: queue_guard(
                shape, Slo(scaling.queue_guard.ttft_slo_s, sized.slo.tpot_s),
                QueueGuard.of(scaling.queue_guard)),
            "inflight-guard": lambda: inflight_guard(
                shape, Slo(scaling.queue_guard.ttft_slo_s, sized.slo.tpot_s),
                scaling.inflight_per_instance or inflight_target_for(sized),
                QueueGuard.of(scaling.queue_guard)),
            "slo-sizing": lambda: slo_sizing(shape, sized),
            "oracle": lambda: oracle.Oracle(arrivals, sized.capacity_rps, sized.lead_s)}
