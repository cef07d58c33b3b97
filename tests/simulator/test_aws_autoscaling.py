"""EC2 Auto Scaling's group, simple scaling with cooldowns and target tracking, on a fake clock.

`_run` stands in for the event-driven core: every 10 s each instance in service publishes
one datapoint, the policies are evaluated, and instances are launched (in service after
`launch_s`) or terminated (gone after `drain_s`) until the fleet matches desired capacity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from simulator.autoscaling import Group, Policy, SimpleScaling, TargetTracking, proportional
from simulator.cloudwatch import (
    Alarm,
    AlarmConfig,
    AlarmState,
    Comparison,
    MetricStream,
    MissingData,
)

Value = Callable[[float], float | None]


class _Fleet:
    """Launches and terminates instances to follow the group, newest terminated first."""

    def __init__(self, group: Group, launch_s: float, drain_s: float) -> None:
        self.group, self.launch_s, self.drain_s = group, launch_s, drain_s
        self.live: list[int] = []
        self.leaving: list[tuple[float, int]] = []
        for _ in range(group.desired):  # a fleet running since before the start: warmed up
            self.live.append(len(self.live))
            group.instance_in_service(-group.warmup_s, self.live[-1])
        self._next = len(self.live)

    def follow(self, now: float) -> None:
        for gone_s, instance in [x for x in self.leaving if x[0] <= now]:
            self.group.instance_terminated(gone_s, instance)
            self.leaving.remove((gone_s, instance))
        while len(self.live) < self.group.desired:
            self.live.append(self._next)
            self.group.instance_in_service(now + self.launch_s, self._next)
            self._next += 1
        while len(self.live) > self.group.desired:
            instance = self.live.pop()
            self.group.instance_terminating(now, instance)
            self.leaving.append((now + self.drain_s, instance))


def _run(group: Group, policies: Sequence[Policy], metric: MetricStream, value: Value,
         until_s: float, launch_s: float = 45.0, drain_s: float = 0.0) -> list[float]:
    """Drive the group for `until_s`; the times of its scaling activities."""
    fleet = _Fleet(group, launch_s, drain_s)
    for step in range(int(until_s // 10) + 1):
        now = step * 10.0
        if (v := value(now)) is not None:
            for _ in range(group.in_service(now)):
                metric.put(now, v)
        for policy in policies:
            policy.evaluate(now, group)
        fleet.follow(now)
    return [a.at_s for a in group.activities]


def _simple(metric: MetricStream, adjustment: int = 1, threshold: float = 70.0,
            cooldown_s: float = 300.0) -> SimpleScaling:
    comparison = Comparison.GREATER if adjustment > 0 else Comparison.LESS
    alarm = Alarm(AlarmConfig(threshold, comparison, 3,
                              treat_missing_data=MissingData.NOT_BREACHING))
    return SimpleScaling("gpu", alarm, metric, adjustment, cooldown_s)


def _constant(v: float | None) -> Value:
    return lambda _: v


# --- The group -----------------------------------------------------------------------

def test_desired_capacity_stays_within_min_and_max() -> None:
    group = Group(1, 3, 1)
    assert group.set_desired(0.0, 5, "up")
    assert group.desired == 3
    assert not group.set_desired(1.0, 4, "up again")  # clamped to no change: no activity
    assert group.set_desired(2.0, -2, "down")
    assert [(a.from_capacity, a.to_capacity) for a in group.activities] == [(1, 3), (3, 1)]


@pytest.mark.parametrize(("low", "high", "desired"), [(2, 1, 1), (1, 3, 4), (-1, 3, 0)])
def test_bounds_out_of_order_are_refused(low: int, high: int, desired: int) -> None:
    with pytest.raises(ValueError, match="min <= desired <= max"):
        Group(low, high, desired)


def test_instances_count_from_when_they_enter_service_and_warm_up() -> None:
    group = Group(0, 3, 1, warmup_s=100.0)
    group.instance_in_service(50.0, "a")  # reported at launch, in service later
    assert group.in_service(49.0) == 0 and group.busy(49.0)
    assert (group.in_service(50.0), group.warming(50.0), group.ready(50.0)) == (1, 1, 0)
    assert group.in_warmup("a", 149.0) and group.ready(150.0) == 1
    assert not group.busy(50.0)


# --- Simple scaling, as the module configures it -------------------------------------

def test_alarm_staying_in_alarm_scales_once_per_cooldown_not_once_per_minute() -> None:
    metric = MetricStream()
    group = Group(1, 5, 1)
    times = _run(group, [_simple(metric)], metric, _constant(90.0), until_s=1000)
    # ALARM from 190 s (three periods, then the 10 s delay); launched 45 s later, cooldown
    # 300 s after that; the alarm, still in ALARM, acts at the next evaluation.
    assert times == [190.0, 550.0, 910.0]
    assert group.desired == 4


def test_cooldown_starts_when_the_launch_finishes_not_when_the_alarm_fires() -> None:
    metric = MetricStream()
    group = Group(1, 5, 1)
    times = _run(group, [_simple(metric)], metric, _constant(90.0), until_s=800, launch_s=200)
    assert times == [190.0, 730.0]  # in service at 390, cooldown until 690


def test_cooldown_after_a_scale_in_starts_once_the_instance_is_deregistered() -> None:
    metric = MetricStream()
    group = Group(1, 5, 3)
    low = _simple(metric, adjustment=-1, threshold=30.0)
    times = _run(group, [low], metric, _constant(10.0), until_s=1200, drain_s=300.0)
    assert times == [190.0, 790.0]  # gone at 490, cooldown until 790
    assert group.desired == 1


def test_scale_in_stops_at_the_minimum_without_an_activity() -> None:
    metric = MetricStream()
    group = Group(1, 5, 2)
    times = _run(group, [_simple(metric, adjustment=-1, threshold=30.0)], metric,
                 _constant(10.0), until_s=1500)
    assert times == [190.0] and group.desired == 1


def test_no_data_never_scales_the_module_policies() -> None:
    metric = MetricStream()
    group = Group(1, 5, 2)
    policies = [_simple(metric), _simple(metric, adjustment=-1, threshold=30.0)]
    assert _run(group, policies, metric, _constant(None), until_s=1200) == []
    assert all(p.alarm.state is AlarmState.OK for p in policies)


def test_a_replacement_blocks_simple_scaling_and_leaves_no_cooldown() -> None:
    group = Group(1, 5, 2)
    group.instance_in_service(0.0, "a")
    group.instance_in_service(0.0, "b")
    group.instance_terminating(100.0, "b")  # a spot interruption: nobody asked for it
    group.instance_terminated(100.0, "b")
    assert group.busy(100.0) and group.desired == 2
    group.instance_in_service(160.0, "c")
    assert not group.busy(160.0) and not group.in_cooldown(160.0)


# --- Target tracking -----------------------------------------------------------------

def _tracking(metric: MetricStream, disable_scale_in: bool = False) -> TargetTracking:
    return TargetTracking("running", metric, 50.0, disable_scale_in=disable_scale_in)


def test_target_tracking_scales_out_in_three_minutes_and_in_after_fifteen() -> None:
    metric = MetricStream()
    out = Group(1, 8, 1)
    assert _run(out, [_tracking(metric)], metric, _constant(100.0), until_s=200) == [190.0]
    assert out.desired == 2  # ceil(1 * 100 / 50)
    metric = MetricStream()
    inward = Group(1, 8, 4)
    assert _run(inward, [_tracking(metric)], metric, _constant(10.0), until_s=1000) == [910.0]
    assert inward.desired == 1  # ceil(4 * 10 / 50)


def test_warming_instances_count_in_desired_so_a_repeated_breach_adds_nothing() -> None:
    """AWS's example: 4 ready at the target's double adds 4; the same again adds none."""
    metric = MetricStream()
    group = Group(1, 20, 4, warmup_s=900.0)
    policy = _tracking(metric)
    times = _run(group, [policy], metric, lambda t: 100.0 if t < 360 else 150.0, until_s=600)
    assert times == [190.0, 430.0]  # 4 -> 8; at 150% of the target: ceil(4 * 3) = 12
    assert group.desired == 12 and group.ready(600.0) == 4


def test_scale_in_waits_until_no_instance_is_warming() -> None:
    metric = MetricStream()
    group = Group(1, 8, 1, warmup_s=1500.0)
    times = _run(group, [_tracking(metric)], metric, lambda t: 100.0 if t < 200 else 10.0,
                 until_s=2000)
    # Out at 190; the scale-in alarm fires some 15 minutes later, but the new instance
    # (in service at 235) warms until 1735: the first evaluation after is at 1750.
    assert times == [190.0, 1750.0]
    assert group.desired == 1


def test_disable_scale_in_never_removes_instances() -> None:
    metric = MetricStream()
    group = Group(1, 8, 4)
    policy = _tracking(metric, disable_scale_in=True)
    assert _run(group, [policy], metric, _constant(1.0), until_s=2000) == []
    assert policy.low.state is AlarmState.ALARM


def test_target_tracking_without_data_cannot_scale() -> None:
    metric = MetricStream()
    group = Group(1, 8, 2)
    policy = _tracking(metric)
    assert _run(group, [policy], metric, _constant(None), until_s=1200) == []
    assert policy.high.state is AlarmState.INSUFFICIENT_DATA


@pytest.mark.parametrize(("capacity", "value", "expected"), [
    (3, 70.0, 3),  # 3 * 70 / 70 must not round up to 4 through floating point
    (2, 75.0, 3),  # adding 1.5 instances adds 2
    (4, 31.25, 3),  # removing 1.5 removes 1
])
def test_capacity_is_rounded_as_aws_rounds(capacity: int, value: float, expected: int) -> None:
    assert proportional(capacity, value, 50.0 if value != 70.0 else 70.0) == expected


def test_a_target_must_be_positive() -> None:
    with pytest.raises(ValueError, match="above 0"):
        TargetTracking("x", MetricStream(), 0.0)


def test_an_instance_reported_twice_is_refused() -> None:
    group = Group(0, 2, 1)
    group.instance_in_service(0.0, "a")
    with pytest.raises(ValueError, match="already in the group"):
        group.instance_in_service(5.0, "a")


def test_target_tracking_does_not_scale_out_with_nothing_ready() -> None:
    """Every instance still warming: no capacity to scale from; the alarm waits."""
    metric = MetricStream()
    group = Group(1, 8, 1, warmup_s=900.0)
    group.instance_in_service(0.0, "a")
    for now in range(0, 400, 10):
        metric.put(now, 100.0)
        TargetTracking("running", metric, 50.0).evaluate(float(now), group)
    assert group.activities == []
