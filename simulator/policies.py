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
- `queue-guard`: the engine's queue with a latency guardrail, three alarms and three
  simple policies (`queue_guard` says how each is deployed): one instance more when the
  requests waiting per instance stay above a threshold, or when the worst instance's p95
  TTFT stays above a guardrail under the SLO; one fewer only when a metric math alarm has
  seen no request waiting anywhere and TTFT well under the guardrail for a long window.
- `slo-sizing`: a controller (`SloSizing`) that sizes the group from the load balancer's
  request rate and the planner's prediction of what one instance serves within the SLO,
  ahead by the launch delay, and shrinks it only slowly.
- `oracle`: the clairvoyant bound (`simulator.oracle`): it knows the trace.

The planner's numbers every sizing policy shares (the in-flight target, the requests/s one
instance serves, the SLO and the launch-to-serving delay) are one `Sizing`, for request
lengths assumed beforehand.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from planner.timing import Deployment, Efficiency, Workload, predict
from simulator import oracle
from simulator.autoscaling import Group, Policy, SimpleScaling, TargetTracking
from simulator.cloudwatch import (
    DEFAULT_PUBLICATION_DELAY_S,
    Alarm,
    AlarmConfig,
    Comparison,
    MetricMath,
    MetricQuery,
    MetricStream,
    MissingData,
    Statistic,
    newest_period_end,
)
from simulator.policy_config import Scaling, gpu_policies, module_scaling
from simulator.report import Slo
from simulator.sim import InstanceSample, ScalingPolicy
from simulator.traffic import Arrival

# What each sample is published as: the module's alarm metric and the agent's serving
# gauges (the agent's names for them, agent/specs.py), the in-flight sum the agent does not
# publish yet, and the load balancer's own request count (AWS/ApplicationELB RequestCount:
# requests it sent to a target; those refused before one was chosen are not counted).
IN_FLIGHT = "RequestsInFlight"  # RequestsRunning + RequestsWaiting, per instance
WAITING = "RequestsWaiting"
TTFT_P95 = "TTFTP95"
REQUEST_COUNT = "RequestCount"


def gpu_metric() -> str:
    """The metric the module's GPU alarms read (its scaling_policy.json)."""
    return module_scaling().metric_name


def _published(sample: InstanceSample) -> dict[str, float]:
    values = {gpu_metric(): 100 * sample.gpu_utilization,
              IN_FLIGHT: float(sample.running + sample.waiting),
              WAITING: float(sample.waiting)}
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


def fixed(shape: GroupShape) -> GroupPolicy:
    """No policy: the group stays at its desired capacity."""
    return GroupPolicy("fixed", shape.group())


@dataclass(frozen=True)
class QueueGuard:
    """queue-guard's settings: thresholds, and how long each condition must hold."""

    waiting: float = 1.0  # RequestsWaiting per instance (group Average) above which: +1
    guardrail: float = 0.8  # TTFTP95 (Maximum) above this share of the TTFT SLO: +1
    calm: float = 0.5  # scale-in needs TTFTP95 (Maximum) under this share of the guardrail
    out_minutes: int = 2  # consecutive one-minute periods either scale-out condition holds
    quiet_minutes: int = 15  # consecutive one-minute periods the scale-in condition holds
    cooldown_s: float | None = None  # None: the group's default cooldown (300 s)


def queue_guard(shape: GroupShape, slo: Slo, settings: QueueGuard | None = None) -> GroupPolicy:
    """Queue depth with a latency guardrail: three simple policies on three alarms.

    On AWS, with the agent's metrics under `AutoScalingGroupName` (one period of 60 s each;
    two adjustments of +1 and one of -1, ChangeInCapacity, each SimpleScaling with
    `cooldown_s`):
    - `queue-high`: RequestsWaiting, Average, > `waiting` for `out_minutes` of
      `out_minutes`, missing data notBreaching -> +1;
    - `ttft-guardrail`: TTFTP95, Maximum (the worst instance's p95), > `guardrail` x the TTFT
      SLO for `out_minutes` of `out_minutes`, notBreaching -> +1;
    - `queue-quiet`: an alarm on the metric math expression
      `IF(waiting == 0 AND FILL(ttft, 0) < L, 1, 0)`, with `waiting` = RequestsWaiting
      Maximum and `ttft` = TTFTP95 Maximum (a minute without first tokens had no latency to
      worry about, hence FILL), `L` = `calm` x the guardrail; >= 1 for `quiet_minutes` of
      `quiet_minutes`, missing data `missing` (no datapoint, no scale-in) -> -1.
    The quiet condition needs both metrics at once, which a composite alarm could say but
    could not act on (composite alarms cannot invoke Auto Scaling actions); an alarm on a
    metric math expression can.
    """
    cfg = settings or QueueGuard()
    guardrail_s = cfg.guardrail * slo.ttft_s
    policy = GroupPolicy("queue-guard", shape.group())
    waiting, ttft = policy.stream(WAITING), policy.stream(TTFT_P95)
    quiet = MetricMath([MetricQuery(waiting, Statistic.MAXIMUM),
                        MetricQuery(ttft, Statistic.MAXIMUM)],
                       lambda values: _quiet(values, cfg.calm * guardrail_s))
    policy.expressions.append(quiet)
    rules = [("queue-high", waiting, cfg.waiting, Statistic.AVERAGE, 1),
             ("ttft-guardrail", ttft, guardrail_s, Statistic.MAXIMUM, 1)]
    for name, metric, threshold, statistic, adjustment in rules:
        alarm = Alarm(AlarmConfig(threshold, Comparison.GREATER, cfg.out_minutes,
                                  statistic=statistic,
                                  treat_missing_data=MissingData.NOT_BREACHING))
        policy.policies.append(SimpleScaling(name, alarm, metric, adjustment, cfg.cooldown_s))
    calm = Alarm(AlarmConfig(1.0, Comparison.GREATER_OR_EQUAL, cfg.quiet_minutes,
                             statistic=Statistic.MAXIMUM))
    policy.policies.append(SimpleScaling("queue-quiet", calm, quiet.stream, -1, cfg.cooldown_s))
    return policy


def _quiet(values: Sequence[float | None], ttft_limit_s: float) -> float | None:
    """`IF(waiting == 0 AND FILL(ttft, 0) < limit, 1, 0)`; no datapoint without `waiting`."""
    waiting, ttft = values
    if waiting is None:
        return None
    return 1.0 if waiting == 0 and (ttft or 0.0) < ttft_limit_s else 0.0


class SloSizing:
    """Sizes the group from the arrival rate and the requests/s one instance serves.

    Once a minute it reads the load balancer's RequestCount (Sum per minute, missing = 0)
    for the last `window` minutes that are visible (published: `newest_period_end`), fits a
    line to their rates and takes the larger of the newest minute's rate and the line's
    value `horizon_s` from now: the launch-to-serving delay plus a margin, so that what it
    launches now is serving when the trend gets there. The size is that rate over
    `capacity_rps`, rounded up. It grows the group at once and shrinks it only after every
    size computed for `hold_s` was below the group's desired capacity, to the largest of
    them. On AWS: a scheduled function (EventBridge, once a minute) that reads RequestCount
    for the target group with GetMetricData and calls SetDesiredCapacity (HonorCooldown
    false); no alarms, no scaling policies.

    Raises:
        ValueError: a capacity that is not above 0, or a window under one minute.
    """

    name = "slo-sizing"

    def __init__(self, requests: MetricStream, capacity_rps: float, horizon_s: float, *,
                 window: int = 6, hold_s: float = 600.0, period_s: int = 60,
                 publication_delay_s: float = DEFAULT_PUBLICATION_DELAY_S) -> None:
        if capacity_rps <= 0 or window < 1:
            raise ValueError(f"need capacity_rps above 0 and a window of at least 1 minute, "
                             f"not {capacity_rps} and {window}")
        self.requests, self.capacity_rps, self.horizon_s = requests, capacity_rps, horizon_s
        self.window, self.hold_s, self.period_s = window, hold_s, period_s
        self.publication_delay_s = publication_delay_s
        self._lower_since: float | None = None  # since when every size was below desired
        self._lower_peak = 0

    def evaluate(self, now_s: float, group: Group) -> None:
        size = self.size(now_s)
        if size is None:
            return
        if size >= group.desired:
            self._lower_since = None
            group.set_desired(now_s, size, f"{self.name}: {size} for the forecast rate", 0.0)
            return
        if self._lower_since is None:
            self._lower_since, self._lower_peak = now_s, size
        self._lower_peak = max(self._lower_peak, size)
        if now_s - self._lower_since >= self.hold_s:
            self._lower_since = None
            group.set_desired(now_s, self._lower_peak,
                              f"{self.name}: below {group.desired} for {self.hold_s:g} s", 0.0)

    def size(self, now_s: float) -> int | None:
        """Instances for the forecast rate; None before a minute of requests is visible."""
        rate = self.forecast(now_s)
        return None if rate is None else math.ceil(rate / self.capacity_rps - 1e-9)

    def forecast(self, now_s: float) -> float | None:
        """The requests/s to size for; None before a minute of requests is visible."""
        newest = newest_period_end(now_s, self.period_s, self.publication_delay_s)
        ends = [e for e in (newest - k * self.period_s for k in range(self.window - 1, -1, -1))
                if e >= self.period_s]
        if not ends:
            return None
        mids = [e - self.period_s / 2 for e in ends]
        rates = [(self.requests.statistic(e, self.period_s, Statistic.SUM) or 0.0)
                 / self.period_s for e in ends]
        if len(ends) < 2:
            return rates[-1]
        slope, intercept = statistics.linear_regression(mids, rates)
        return max(rates[-1], intercept + slope * (now_s + self.horizon_s))


def slo_sizing(shape: GroupShape, sizing: Sizing, margin_s: float = 60.0) -> GroupPolicy:
    """`SloSizing` for the planner's capacity, looking the launch delay plus `margin_s` ahead
    (a minute by default: what it launches at the next evaluation serves a minute later)."""
    policy = GroupPolicy("slo-sizing", shape.group())
    policy.policies.append(SloSizing(policy.stream(REQUEST_COUNT), sizing.capacity_rps,
                                     sizing.lead_s + margin_s))
    return policy


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


PolicyFactory = Callable[[], ScalingPolicy]


def builtin(shape: GroupShape, scaling: Scaling, sized: Sizing,
            arrivals: Sequence[Arrival]) -> dict[str, PolicyFactory]:
    """Every built-in policy by name, each built fresh for its run (the oracle for the
    planner's own capacity; `oracle.cheapest` searches for the factor that meets the SLO)."""
    return {"gpu-70-30": lambda: gpu_70_30(shape, scaling),
            "inflight-target": lambda: inflight_target(shape, sized.inflight),
            "fixed": lambda: fixed(shape),
            "queue-guard": lambda: queue_guard(shape, sized.slo),
            "slo-sizing": lambda: slo_sizing(shape, sized),
            "oracle": lambda: oracle.Oracle(arrivals, sized.capacity_rps, sized.lead_s)}
