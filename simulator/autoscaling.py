"""EC2 Auto Scaling as the simulator applies it: a group's capacity and its scaling policies.

Owns the group's desired capacity, its record of scaling activities, and the two policy
types the simulator compares; pure functions of simulated time (seconds), no I/O. The
event-driven core drives it like this:

    group = Group(min_size=1, max_size=4, desired=1, warmup_s=900)
    policies = [SimpleScaling(...), SimpleScaling(...)]   # or [TargetTracking(...)]
    every tick (10 s or 60 s):  for p in policies: p.evaluate(now_s, group)
    then launch or terminate instances until the fleet matches `group.desired`, and report:
        group.instance_in_service(at_s, id)   # when EC2 runs it (may be reported at launch)
        group.instance_terminating(at_s, id)  # leaves service: scale-in, or a spot loss
        group.instance_terminated(at_s, id)   # gone, after the load balancer deregistered it
    group.activities                          # (at_s, from, to, cause) for the report

An instance is InService as soon as EC2 runs it (the module has no lifecycle hook); the
model loads during its warm-up (`default_instance_warmup` = `model.model_load_seconds`).
A fleet already serving when the run starts is reported in service at `-warmup_s`.

Modelled, after the EC2 Auto Scaling User Guide:
- "Scaling cooldowns for Amazon EC2 Auto Scaling" and "Step and simple scaling policies": a
  simple policy ignores its alarm while a scaling activity (or a replacement) is in progress
  and until the cooldown ends; the cooldown starts when the last instance of the activity
  finishes launching or terminating, and is the policy's own (`cooldown`) or else the
  group's default (300 s). "Using Amazon CloudWatch alarms": an alarm invokes its Auto
  Scaling action for every period it stays in ALARM, so a policy fires again at the first
  evaluation after its cooldown. No cooldown follows the group's creation or a replacement.
- Desired capacity is clamped to [min, max]; a change that clamps to no change is no activity.
- "Target tracking scaling policies" and "Set the default instance warmup": AWS's two
  alarms (as the console shows them; the guide gives no numbers): above the target for 3
  of 3 one-minute periods, below 90% of it for 15 of 15, missing data left `missing` (the
  guide: missing data means INSUFFICIENT_DATA, and no scaling until data returns). Each
  evaluation in ALARM sets capacity to ceil(capacity * metric / target), rounding so as
  never to add too few or remove too many. Scale-out counts only instances past warm-up as
  capacity while desired keeps the warming ones, so a repeated breach at the same metric
  adds nothing; scale-in waits until no instance is warming and no activity is running, and
  `disable_scale_in` (DisableScaleIn) turns it off. CloudWatch aggregates a custom metric
  over every instance that publishes; warming instances stay out of the metric only if the
  core does not put their datapoints (`Group.in_warmup` says which).

Not modelled: step scaling (the module's policies are SimpleScaling), several target
tracking policies on one group, scheduled and predictive scaling, instance scale-in
protection and which instance terminates (the core chooses), lifecycle hooks, warm pools.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from simulator.cloudwatch import (
    DEFAULT_PUBLICATION_DELAY_S,
    Alarm,
    AlarmConfig,
    AlarmState,
    Comparison,
    MetricStream,
    Statistic,
)

DEFAULT_COOLDOWN_S = 300.0  # the group's DefaultCooldown when none is set (the module sets none)
ROUNDING_SLACK = 1e-9  # 3 * 70 / 70 must stay 3 instances after floating point


@dataclass(frozen=True)
class Activity:
    """One change of desired capacity, for the report."""

    at_s: float
    from_capacity: int
    to_capacity: int
    cause: str


class Group:
    """An Auto Scaling group: bounds, desired capacity, instances in service, cooldown.

    Instance events may be reported ahead of time (at launch, the core knows when EC2 will
    have the instance running) or late; every query takes the time it is asked about.

    Raises:
        ValueError: bounds outside 0 <= min <= desired <= max.
    """

    def __init__(self, min_size: int, max_size: int, desired: int, *, warmup_s: float = 0.0,
                 default_cooldown_s: float = DEFAULT_COOLDOWN_S) -> None:
        if not 0 <= min_size <= desired <= max_size:
            raise ValueError(f"need 0 <= min <= desired <= max, got {min_size}, {desired}, "
                             f"{max_size}")
        self.min_size, self.max_size, self.desired = min_size, max_size, desired
        self.warmup_s = warmup_s
        self.default_cooldown_s = default_cooldown_s
        self.activities: list[Activity] = []
        self.cooldown_until_s = -math.inf
        self._in_service: dict[Hashable, float] = {}  # instance id -> when it enters service
        self._terminating: set[Hashable] = set()
        self._settled, self._settled_s = desired == 0, -math.inf
        self._pending_cooldown_s = 0.0  # the cooldown the activity in progress ends with

    def set_desired(self, at_s: float, capacity: int, cause: str,
                    cooldown_s: float | None = None) -> bool:
        """Change desired capacity within the bounds; True when that is an activity."""
        new = min(self.max_size, max(self.min_size, capacity))
        if new == self.desired:
            return False
        self.activities.append(Activity(at_s, self.desired, new, cause))
        self.desired = new
        self._pending_cooldown_s = self.default_cooldown_s if cooldown_s is None else cooldown_s
        self._settled = False
        self._settle(at_s)
        return True

    def instance_in_service(self, at_s: float, instance_id: Hashable) -> None:
        """The instance is InService from `at_s` (EC2 runs it); its warm-up starts then.

        Raises:
            ValueError: the instance is already known.
        """
        if instance_id in self._in_service or instance_id in self._terminating:
            raise ValueError(f"instance {instance_id!r} is already in the group")
        self._in_service[instance_id] = at_s
        self._settle(at_s)

    def instance_terminating(self, at_s: float, instance_id: Hashable) -> None:
        """The instance leaves service (scale-in, or lost); the activity lasts until it is gone.

        Raises:
            KeyError: the instance is not in service.
        """
        del self._in_service[instance_id]
        self._terminating.add(instance_id)
        if self._settled:  # no activity asked for this: a replacement, which has no cooldown
            self._settled, self._pending_cooldown_s = False, 0.0
        self._settle(at_s)

    def instance_terminated(self, at_s: float, instance_id: Hashable) -> None:
        """The instance is gone (after the load balancer deregistered it).

        Raises:
            KeyError: the instance was not terminating.
        """
        self._terminating.remove(instance_id)
        self._settle(at_s)

    def busy(self, now_s: float) -> bool:
        """A scaling activity or a replacement is in progress at `now_s`."""
        return not self._settled or now_s < self._settled_s

    def in_cooldown(self, now_s: float) -> bool:
        return now_s < self.cooldown_until_s

    def in_service(self, now_s: float) -> int:
        return sum(1 for since in self._in_service.values() if since <= now_s)

    def in_warmup(self, instance_id: Hashable, now_s: float) -> bool:
        """Raises: KeyError: the instance is not in service."""
        return now_s < self._in_service[instance_id] + self.warmup_s

    def warming(self, now_s: float) -> int:
        return sum(1 for since in self._in_service.values()
                   if since <= now_s < since + self.warmup_s)

    def ready(self, now_s: float) -> int:
        """Instances in service and past their warm-up."""
        return sum(1 for since in self._in_service.values() if since + self.warmup_s <= now_s)

    def _settle(self, at_s: float) -> None:
        """End the activity once the instances match desired capacity and none is leaving."""
        if self._settled or len(self._in_service) != self.desired or self._terminating:
            return
        self._settled = True
        self._settled_s = max(at_s, *self._in_service.values()) if self._in_service else at_s
        self.cooldown_until_s = self._settled_s + self._pending_cooldown_s


class Policy(Protocol):
    """A scaling policy: reads its alarms at `now_s` and may change the group's capacity."""

    name: str

    def evaluate(self, now_s: float, group: Group) -> None: ...


def invoked(alarm: Alarm, now_s: float, metric: MetricStream) -> bool:
    """Whether the alarm invokes its action now: a new evaluation that finds it in ALARM."""
    seen = alarm.period_end_s
    return alarm.evaluate(now_s, metric) is AlarmState.ALARM and alarm.period_end_s != seen


def _cause(name: str, alarm: Alarm) -> str:
    cfg = alarm.config
    return f"{name}: {cfg.statistic} {alarm.value:.4g} {cfg.comparison} {cfg.threshold:g}"


class SimpleScaling:
    """A SimpleScaling policy with a ChangeInCapacity adjustment, triggered by its alarm."""

    def __init__(self, name: str, alarm: Alarm, metric: MetricStream, adjustment: int,
                 cooldown_s: float | None = None) -> None:
        self.name, self.alarm, self.metric = name, alarm, metric
        self.adjustment, self.cooldown_s = adjustment, cooldown_s

    def evaluate(self, now_s: float, group: Group) -> None:
        if not invoked(self.alarm, now_s, self.metric):
            return
        if group.busy(now_s) or group.in_cooldown(now_s):
            return  # a simple policy drops alarms during an activity and its cooldown
        group.set_desired(now_s, group.desired + self.adjustment, _cause(self.name, self.alarm),
                          self.cooldown_s)


@dataclass(frozen=True)
class TrackingAlarms:
    """The alarms AWS creates for a target tracking policy (not documented; as observed)."""

    scale_out_periods: int = 3
    scale_in_periods: int = 15
    scale_in_ratio: float = 0.9  # the scale-in alarm's threshold, as a share of the target
    period_s: int = 60
    publication_delay_s: float = DEFAULT_PUBLICATION_DELAY_S

    def alarm(self, threshold: float, comparison: Comparison, periods: int,
              statistic: Statistic) -> Alarm:
        return Alarm(AlarmConfig(threshold, comparison, periods, period_s=self.period_s,
                                 statistic=statistic,
                                 publication_delay_s=self.publication_delay_s))


def proportional(capacity: int, value: float, target: float) -> int:
    """Capacity that brings the metric to the target: rounded up, as AWS rounds."""
    return math.ceil(capacity * value / target - ROUNDING_SLACK)


class TargetTracking:
    """A TargetTrackingScaling policy on a metric that falls as instances are added.

    Raises:
        ValueError: a target that is not above 0.
    """

    def __init__(self, name: str, metric: MetricStream, target: float, *,
                 statistic: Statistic = Statistic.AVERAGE, disable_scale_in: bool = False,
                 alarms: TrackingAlarms | None = None) -> None:
        if target <= 0:
            raise ValueError(f"target must be above 0, not {target}")
        a = alarms or TrackingAlarms()
        self.name, self.metric, self.target = name, metric, target
        self.disable_scale_in = disable_scale_in
        self.high = a.alarm(target, Comparison.GREATER, a.scale_out_periods, statistic)
        self.low = a.alarm(target * a.scale_in_ratio, Comparison.LESS, a.scale_in_periods,
                           statistic)

    def evaluate(self, now_s: float, group: Group) -> None:
        out = invoked(self.high, now_s, self.metric)
        inward = invoked(self.low, now_s, self.metric)
        if out:
            self._scale_out(now_s, group)
        elif inward and not self.disable_scale_in:
            self._scale_in(now_s, group)

    def _scale_out(self, now_s: float, group: Group) -> None:
        ready = group.ready(now_s)
        if self.high.value is None or ready == 0:
            return
        wanted = proportional(ready, self.high.value, self.target)
        if wanted > group.desired:
            group.set_desired(now_s, wanted, _cause(self.name, self.high))

    def _scale_in(self, now_s: float, group: Group) -> None:
        if group.busy(now_s) or group.warming(now_s) or self.low.value is None:
            return
        wanted = proportional(group.desired, self.low.value, self.target)
        if wanted < group.desired:
            group.set_desired(now_s, wanted, _cause(self.name, self.low))
