"""The policies that read the engines' queue and the load balancer: queue-guard (three alarms
and simple policies, one of them on metric math), inflight-guard (target tracking on the
requests per instance with queue-guard's guardrail and quiet scale-in) and slo-sizing (a
controller that sizes the group from the request rate). `simulator.policies` lists every
built-in policy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from simulator.autoscaling import Group, SimpleScaling, TargetTracking
from simulator.cloudwatch import (
    DEFAULT_PUBLICATION_DELAY_S,
    Alarm,
    AlarmConfig,
    MetricMath,
    MetricQuery,
    MetricStream,
    Statistic,
    newest_period_end,
)
from simulator.group_policy import REQUEST_COUNT, GroupPolicy, GroupShape, Sizing, published
from simulator.policy_config import PolicyFileError, QueueGuardScaling
from simulator.queue_guard_file import QueueGuardRules, queue_guard_rules
from simulator.report import Slo


@dataclass(frozen=True)
class QueueGuard:
    """queue-guard's settings (var.scaling.queue_guard; these defaults are the module's):
    the waiting threshold, how long each condition must hold, the cooldown. The TTFT SLO
    comes with the `Slo`; the rest is queue_guard.json's (`QueueGuardRules`)."""

    waiting: float = 1.0  # RequestsWaiting per instance (group Average) above which: +1
    out_minutes: int = 2  # consecutive one-minute periods either scale-out condition holds
    quiet_minutes: int = 15  # consecutive one-minute periods the scale-in condition holds
    cooldown_s: float | None = 300.0  # None: the group's default cooldown

    @classmethod
    def of(cls, scaling: QueueGuardScaling) -> QueueGuard:
        """The settings an environment's var.scaling.queue_guard applies."""
        return cls(scaling.waiting_per_instance, scaling.out_minutes, scaling.quiet_minutes,
                   scaling.cooldown_s)


def queue_guard(shape: GroupShape, slo: Slo, settings: QueueGuard | None = None,
                rules: QueueGuardRules | None = None) -> GroupPolicy:
    """Queue depth with a latency guardrail: three simple policies on three alarms, as
    `infrastructure/modules/compute` applies them when var.scaling.policy is queue-guard
    (`rules`: queue_guard.json's, by default the module's file).

    With the module's file, on the agent's metrics under `AutoScalingGroupName` (periods of
    60 s; each policy SimpleScaling, ChangeInCapacity, with `cooldown_s`):
    - `queue-high`: RequestsWaiting, Average, > `waiting` for `out_minutes` of
      `out_minutes`, missing data notBreaching -> +1;
    - `ttft-guardrail`: TTFTP95, Maximum (the worst instance's p95), > the guardrail (0.8 x
      the TTFT SLO) for `out_minutes` of `out_minutes`, notBreaching -> +1;
    - `queue-quiet`: an alarm on the metric math expression
      `IF(waiting == 0 AND FILL(ttft, 0) < L, 1, 0)`, with `waiting` = RequestsWaiting
      Maximum and `ttft` = TTFTP95 Maximum (a minute without first tokens had no latency to
      worry about, hence FILL), `L` = 0.5 x the guardrail (to the millisecond, as the
      module writes it); >= 1 for `quiet_minutes` of `quiet_minutes`, missing data
      `missing` (no datapoint, no scale-in) -> -1.
    The quiet condition needs both metrics at once, which a composite alarm could say but
    could not act on (composite alarms cannot invoke Auto Scaling actions); an alarm on a
    metric math expression can.

    Raises:
        PolicyFileError: the rules read a metric the simulated agents do not publish.
    """
    cfg = settings or QueueGuard()
    rules = rules or queue_guard_rules()
    policy = GroupPolicy("queue-guard", shape.group())
    _guarded(policy, slo, cfg, rules, queue_high=True)
    return policy


def inflight_guard(shape: GroupShape, slo: Slo, target: float,
                   settings: QueueGuard | None = None,
                   rules: QueueGuardRules | None = None) -> GroupPolicy:
    """Target tracking on the requests each instance holds, with queue-guard's guardrail and
    quiet scale-in, as the module applies it when var.scaling.policy is inflight-guard:
    `queue-high` gives way to a TargetTrackingScaling policy on the metric math sum of
    RequestsRunning and RequestsWaiting (each the group's Average: the requests per
    instance) at `target` (var.scaling.inflight_per_instance), its scale-in disabled, so
    that only `queue-quiet` removes instances; `ttft-guardrail` adds one as in queue-guard.

    Raises:
        PolicyFileError: the rules read a metric the simulated agents do not publish.
    """
    cfg = settings or QueueGuard()
    rules = rules or queue_guard_rules()
    policy = GroupPolicy("inflight-guard", shape.group())
    streams = _guarded(policy, slo, cfg, rules, queue_high=False)
    inflight = MetricMath([MetricQuery(streams(name), statistic)
                           for name, statistic in rules.inflight],
                          _sum, period_s=rules.period_s)
    policy.expressions.append(inflight)
    policy.policies.append(TargetTracking("inflight", inflight.stream, target,
                                          disable_scale_in=True))
    return policy


def _guarded(policy: GroupPolicy, slo: Slo, cfg: QueueGuard, rules: QueueGuardRules, *,
             queue_high: bool) -> Callable[[str], MetricStream]:
    """Add the guardrail and the quiet scale-in (and `queue-high` when asked) to `policy`;
    returns how it reads a published metric's stream."""
    guardrail_s = rules.guardrail_share * slo.ttft_s
    quiet_limit_s = round(rules.calm_share * guardrail_s, 3)  # QUIET_EXPRESSION's %.3f

    def stream(metric: str) -> MetricStream:
        if metric not in (names := published()):
            raise PolicyFileError(f"{policy.name} reads {metric}, which the simulated agents "
                                  f"do not publish (they publish {', '.join(sorted(names))})")
        return policy.stream(metric)

    quiet_rule = rules.queue_quiet
    quiet = MetricMath([MetricQuery(stream(name), statistic)
                        for name, statistic in (quiet_rule.waiting, quiet_rule.ttft)],
                       lambda values: _quiet(values, quiet_limit_s), period_s=rules.period_s)
    policy.expressions.append(quiet)
    out = [("ttft-guardrail", rules.ttft_guardrail, guardrail_s)]
    if queue_high:
        out.insert(0, ("queue-high", rules.queue_high, cfg.waiting))
    for name, rule, threshold in out:
        alarm = Alarm(AlarmConfig(threshold, rule.comparison, cfg.out_minutes,
                                  period_s=rules.period_s, statistic=rule.statistic,
                                  treat_missing_data=rule.treat_missing_data))
        policy.policies.append(SimpleScaling(name, alarm, stream(rule.metric_name),
                                             rule.adjustment, cfg.cooldown_s))
    calm = Alarm(AlarmConfig(quiet_rule.threshold, quiet_rule.comparison, cfg.quiet_minutes,
                             period_s=rules.period_s, statistic=Statistic.MAXIMUM,
                             treat_missing_data=quiet_rule.treat_missing_data))
    policy.policies.append(SimpleScaling("queue-quiet", calm, quiet.stream,
                                         quiet_rule.adjustment, cfg.cooldown_s))
    return stream


def _sum(values: Sequence[float | None]) -> float | None:
    """`running + waiting`: no datapoint unless both have one (CloudWatch's arithmetic)."""
    if any(v is None for v in values):
        return None
    return float(sum(v for v in values if v is not None))


def _quiet(values: Sequence[float | None], ttft_limit_s: float) -> float | None:
    """`QUIET_EXPRESSION`: `IF(waiting == 0 AND FILL(ttft, 0) < limit, 1, 0)`; no datapoint
    without `waiting`."""
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


# The share of one instance's capacity slo-sizing plans to use. The capacity is what an
# instance serves saturated (requests always waiting for a slot); random arrivals at that
# rate queue without bound, so the policy sizes for a part of it. 60% is a conventional
# utilisation target, set before the comparisons were run (the oracle's search needed
# about 50% on prod's traces: docs/simulator.md).
TARGET_UTILIZATION = 0.6


def slo_sizing(shape: GroupShape, sizing: Sizing, margin_s: float = 60.0,
               utilization: float = TARGET_UTILIZATION) -> GroupPolicy:
    """`SloSizing` for `utilization` of the planner's capacity, looking the launch delay plus
    `margin_s` ahead (a minute by default: what it launches at the next evaluation serves a
    minute later)."""
    policy = GroupPolicy("slo-sizing", shape.group())
    policy.policies.append(SloSizing(policy.stream(REQUEST_COUNT),
                                     sizing.capacity_rps * utilization,
                                     sizing.lead_s + margin_s))
    return policy
