"""CloudWatch's statistics per period and alarm evaluation, on a fake clock (plain numbers).

The alarm tables are the ones on AWS's "Using Amazon CloudWatch alarms" page (current and
earlier versions), row for row: N = 3, an evaluation range of 5 one-minute periods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

from simulator.cloudwatch import (
    Alarm,
    AlarmConfig,
    AlarmState,
    Comparison,
    MetricMath,
    MetricQuery,
    MetricStream,
    MissingData,
    Statistic,
    check_period,
)

OK, ALARM, NO_DATA = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA
KEEP = None  # "retain current state"
THRESHOLD = 50.0
TREATMENTS = (MissingData.MISSING, MissingData.IGNORE, MissingData.BREACHING,
              MissingData.NOT_BREACHING)


def _stream(pattern: str) -> MetricStream:
    """One datapoint per minute, oldest first: 0 below the threshold, X above, - none."""
    stream = MetricStream()
    for minute, mark in enumerate(pattern.split()):
        if mark != "-":
            stream.put(minute * 60 + 30, {"0": 10.0, "X": 90.0}[mark])
    return stream


def _alarm(n: int = 3, m: int | None = None, treat: MissingData = MissingData.MISSING,
           delay_s: float = 0.0) -> Alarm:
    return Alarm(AlarmConfig(THRESHOLD, Comparison.GREATER, n, datapoints_to_alarm=m,
                             treat_missing_data=treat, publication_delay_s=delay_s))


Values = list[float | None]


# --- Statistics ----------------------------------------------------------------------

def test_a_datapoint_on_a_boundary_opens_the_next_period() -> None:
    stream = MetricStream()
    stream.put(60.0, 7.0)
    assert stream.statistic(60.0, 60, Statistic.SAMPLE_COUNT) is None
    assert stream.statistic(120.0, 60, Statistic.SAMPLE_COUNT) == 1.0


@pytest.mark.parametrize(("stat", "expected"), [
    (Statistic.AVERAGE, 30.0), (Statistic.SUM, 90.0), (Statistic.MINIMUM, 10.0),
    (Statistic.MAXIMUM, 60.0), (Statistic.SAMPLE_COUNT, 3.0)])
def test_each_statistic_over_one_period(stat: Statistic, expected: float) -> None:
    stream = MetricStream()
    for at, value in [(0.0, 10.0), (30.0, 20.0), (59.9, 60.0), (60.0, 1000.0)]:
        stream.put(at, value)
    assert stream.statistic(60.0, 60, stat) == pytest.approx(expected)


def test_group_average_weighs_datapoints_not_instances() -> None:
    """Under AutoScalingGroupName alone, an instance that published longer counts more."""
    stream = MetricStream()
    for at in range(0, 60, 10):
        stream.put(at, 100.0)  # busy since the start of the minute: six datapoints
    for at in range(30, 60, 10):
        stream.put(at, 0.0)  # joined half-way: three
    assert stream.statistic(60.0, 60, Statistic.AVERAGE) == pytest.approx(600 / 9)


def test_datapoints_put_out_of_order_are_counted_in_their_period() -> None:
    stream = MetricStream()
    stream.put(70.0, 1.0)
    stream.put(10.0, 3.0)
    assert stream.statistic(60.0, 60, Statistic.SUM) == 3.0
    assert len(stream) == 2


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_datapoints_are_refused_as_cloudwatch_refuses_them(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        MetricStream().put(0.0, value)


def test_an_empty_period_has_no_statistic() -> None:
    assert MetricStream().statistic(60.0, 60, Statistic.AVERAGE) is None


# --- AWS's tables --------------------------------------------------------------------

TABLE_3_OF_3 = [  # data points, then MISSING, IGNORE, BREACHING, NOT BREACHING
    ("0 - X - X", OK, OK, OK, OK),
    ("0 - - - -", OK, OK, OK, OK),
    ("- - - - -", NO_DATA, KEEP, ALARM, OK),
    ("0 X X - X", ALARM, ALARM, ALARM, ALARM),
    ("- - X - -", ALARM, KEEP, ALARM, OK),  # the premature-alarm guard lets this one through
    ("- - - - X", NO_DATA, KEEP, ALARM, OK),  # earlier versions of the page
    ("X - - - -", ALARM, KEEP, ALARM, OK),
]
TABLE_2_OF_3 = [
    ("0 - X - X", ALARM, ALARM, ALARM, ALARM),
    ("0 0 X 0 X", ALARM, ALARM, ALARM, ALARM),
    ("0 - X - -", OK, OK, ALARM, OK),
    ("- - - - 0", OK, OK, ALARM, OK),
    ("- - - X -", ALARM, KEEP, ALARM, OK),
]
CASES = [(pattern, m, treat, expected)
         for m, table in ((3, TABLE_3_OF_3), (2, TABLE_2_OF_3))
         for pattern, *states in table
         for treat, expected in zip(TREATMENTS, states, strict=True)]


@pytest.mark.parametrize("before", [OK, ALARM])
@pytest.mark.parametrize(("pattern", "m", "treat", "expected"), CASES)
def test_aws_alarm_tables(pattern: str, m: int, treat: MissingData,
                          expected: AlarmState | None, before: AlarmState) -> None:
    alarm = _alarm(m=m, treat=treat)
    alarm.state = before
    assert alarm.evaluate(300.0, _stream(pattern)) is (expected or before)


# --- Over time -----------------------------------------------------------------------

def test_m_of_n_goes_to_alarm_and_back_to_ok() -> None:
    stream, alarm = _stream("0 X 0 X X 0 0 0"), _alarm(m=2)
    states = [alarm.evaluate(minute * 60.0, stream) for minute in range(1, 9)]
    assert states == [OK, OK, OK, ALARM, ALARM, ALARM, OK, OK]
    assert alarm.history == [(60.0, OK), (240.0, ALARM), (420.0, OK)]


def test_an_alarm_evaluates_once_per_period_after_the_publication_delay() -> None:
    stream, alarm = _stream("X X X"), _alarm(delay_s=10.0)
    assert alarm.evaluate(179.0, stream) is NO_DATA  # [120, 180) not in yet: too early
    assert alarm.period_end_s == 120.0
    assert alarm.evaluate(190.0, stream) is ALARM
    assert alarm.evaluate(230.0, stream) is ALARM
    assert alarm.period_end_s == 180.0 and alarm.value == 90.0


def test_not_breaching_alarms_never_fire_without_data() -> None:
    """The module's alarms: no agent reporting (instances loading) must never scale."""
    alarm = _alarm(treat=MissingData.NOT_BREACHING)
    assert [alarm.evaluate(t * 60.0, MetricStream()) for t in range(1, 6)] == [OK] * 5


def test_missing_data_leaves_insufficient_data_once_the_last_datapoint_ages_out() -> None:
    stream, alarm = _stream("0 0 0"), _alarm()
    assert alarm.evaluate(180.0, stream) is OK
    assert alarm.evaluate(480.0, stream) is NO_DATA  # five empty minutes in the range


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"evaluation_periods": 3, "datapoints_to_alarm": 4}, "datapoints_to_alarm"),
    ({"evaluation_periods": 3, "period_s": 45}, "period_s"),
    ({"evaluation_periods": 25, "period_s": 3600}, "one day"),
    ({"evaluation_periods": 3, "evaluation_range": 2}, "evaluation_range"),
])
def test_settings_aws_refuses_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlarmConfig(THRESHOLD, Comparison.GREATER, **kwargs)


@pytest.mark.parametrize(("comparison", "value", "breaches"), [
    (Comparison.GREATER, 50.0, False), (Comparison.GREATER_OR_EQUAL, 50.0, True),
    (Comparison.LESS, 50.0, False), (Comparison.LESS_OR_EQUAL, 50.0, True),
    (Comparison.LESS, 49.0, True)])
def test_comparisons_at_the_threshold(comparison: Comparison, value: float,
                                      breaches: bool) -> None:
    assert comparison.breaches(value, THRESHOLD) is breaches


@pytest.mark.parametrize("period_s", [10, 30, 60, 120, 3600])
def test_periods_an_alarm_can_use_pass(period_s: int) -> None:
    check_period(period_s)


@pytest.mark.parametrize("period_s", [0, -60, 1, 20, 45, 90])
def test_periods_an_alarm_cannot_use_are_refused(period_s: int) -> None:
    with pytest.raises(ValueError, match="period_s"):
        check_period(period_s)


# --- Metric math ---------------------------------------------------------------------

def _pair(a: dict[float, float], b: dict[float, float]) -> tuple[MetricStream, MetricStream]:
    """Two metrics, each a datapoint per given time."""
    first, second = MetricStream(), MetricStream()
    for stream, points in ((first, a), (second, b)):
        for at, value in points.items():
            stream.put(at, value)
    return first, second


def _math(a: MetricStream, b: MetricStream, seen: list[Values] | None = None,
          delay_s: float = 0.0) -> MetricMath:
    """`a + b` over the periods' Sum and Maximum; None where either is missing. `seen`
    records what the expression was given, period by period."""
    def add(values: Sequence[float | None]) -> float | None:
        if seen is not None:
            seen.append(list(values))
        x, y = values
        return None if x is None or y is None else x + y
    return MetricMath([MetricQuery(a, Statistic.SUM), MetricQuery(b, Statistic.MAXIMUM)], add,
                      publication_delay_s=delay_s)


def test_metric_math_puts_one_datapoint_per_period_at_its_start() -> None:
    a, b = _pair({10.0: 1.0, 50.0: 2.0, 70.0: 4.0}, {20.0: 5.0, 40.0: 7.0, 100.0: 1.0})
    stream = _math(a, b).update(120.0)
    assert len(stream) == 2
    assert stream.statistic(60.0, 60, Statistic.SAMPLE_COUNT) == 1.0  # at 0 s: [0, 60)
    assert stream.statistic(60.0, 60, Statistic.SUM) == 3.0 + 7.0  # Sum of a, Maximum of b
    assert stream.statistic(120.0, 60, Statistic.SUM) == 4.0 + 1.0
    assert stream.statistic(1.0, 1, Statistic.SUM) == 10.0  # exactly at the period's start


def test_metric_math_computes_each_period_once_and_only_once_it_is_visible() -> None:
    a, b = _pair({t: 1.0 for t in range(0, 240, 10)}, {t: 1.0 for t in range(0, 240, 10)})
    seen: list[Values] = []
    math_ = _math(a, b, seen, delay_s=10.0)
    assert len(math_.update(69.0)) == 0  # [0, 60) is not all published until 70 s
    assert len(math_.update(70.0)) == 1
    assert len(math_.update(129.0)) == 1 and len(seen) == 1  # the same period: not again
    assert len(math_.update(250.0)) == 4  # periods ending 120, 180 and 240 at once
    assert len(seen) == 4


def test_metric_math_gives_the_expression_none_for_a_query_without_a_datapoint() -> None:
    a, b = _pair({10.0: 2.0, 70.0: 3.0}, {80.0: 4.0})
    seen: list[Values] = []
    stream = _math(a, b, seen).update(180.0)
    assert seen == [[2.0, None], [3.0, 4.0], [None, None]]
    assert len(stream) == 1  # the expression said "no datapoint" for the other two
    assert stream.statistic(60.0, 60, Statistic.SAMPLE_COUNT) is None


def test_an_expression_may_fill_a_missing_query_as_fill_does() -> None:
    a, b = _pair({10.0: 2.0}, {})
    filled = MetricMath([MetricQuery(a, Statistic.SUM), MetricQuery(b, Statistic.MAXIMUM)],
                        lambda v: (v[0] or 0.0) + (v[1] or 0.0), publication_delay_s=0.0)
    stream = filled.update(120.0)
    assert stream.statistic(60.0, 60, Statistic.SUM) == 2.0
    assert stream.statistic(120.0, 60, Statistic.SUM) == 0.0  # both filled: a real 0, not none


@pytest.mark.parametrize(("queries", "period_s", "delay_s", "message"), [
    (1, 60, 0.0, "two or more"), (0, 60, 0.0, "two or more"), (2, 45, 0.0, "period_s"),
    (2, 60, -1.0, "publication_delay_s")])
def test_metric_math_refuses_what_an_alarm_could_not_use(queries: int, period_s: int,
                                                         delay_s: float, message: str) -> None:
    query = MetricQuery(MetricStream(), Statistic.AVERAGE)
    with pytest.raises(ValueError, match=message):
        MetricMath([query] * queries, lambda _: 1.0, period_s=period_s,
                   publication_delay_s=delay_s)


def test_an_alarm_on_a_metric_math_expression_reads_its_stream() -> None:
    """`a + b > 50` for 3 of 3 periods: neither metric alone breaches, their sum does from
    the second minute on; the alarm sees it as it would any metric, after the same delay."""
    a, b = _pair({t: 20.0 for t in range(0, 300, 10)},
                 {t: 10.0 if t < 60 else 40.0 for t in range(0, 300, 10)})
    expression = MetricMath([MetricQuery(a, Statistic.AVERAGE),
                             MetricQuery(b, Statistic.AVERAGE)],
                            lambda v: None if None in v else sum(x or 0.0 for x in v))
    alarm = Alarm(AlarmConfig(THRESHOLD, Comparison.GREATER, 3))
    states = {now: alarm.evaluate(now, expression.update(now)) for now in range(60, 310, 10)}
    assert states[130] is OK  # 30 in [0, 60), 60 in [60, 120): one breach
    assert states[240] is OK and states[250] is ALARM  # [180, 240) is visible from 250 s
    assert alarm.value == 60.0
