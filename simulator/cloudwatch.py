"""CloudWatch as the fleet's scaling sees it: a metric's statistic per period, and alarms.

Owns two things, both pure functions of simulated time (seconds, plain floats; no clock,
no I/O): `MetricStream`, one metric (namespace, name and dimensions collapsed to one key)
that the simulation `put`s datapoints into and reads a statistic per period from; and
`Alarm`, which turns the last periods' statistics into OK, ALARM or INSUFFICIENT_DATA.

The interface, as the event-driven core uses it:

    stream = MetricStream()
    stream.put(at_s, value)                      # every agent datapoint, any instance
    alarm = Alarm(AlarmConfig(threshold=70, comparison=Comparison.GREATER, evaluation_periods=3))
    state = alarm.evaluate(now_s, stream)        # any tick; re-evaluates once per period

What is modelled, after AWS's "Using Amazon CloudWatch alarms" page (sections "Evaluating
an alarm", "Configuring how CloudWatch alarms treat missing data", "Avoiding premature
transitions to alarm state") and "CloudWatch concepts" (statistics, periods):

- A statistic covers the datapoints timestamped in [end - period, end); periods are aligned
  to multiples of the period from t = 0, so a datapoint on a boundary opens the next period.
  The agent publishes under `AutoScalingGroupName` alone, so every instance's datapoints
  land in one stream and Average is the mean over all of them, as CloudWatch computes it.
- An alarm is evaluated when a new period has completed: the newest period it reads is the
  last one ending at or before `now - publication_delay_s`. The delay stands for the agent's
  publish interval and CloudWatch's ingestion; AWS documents no figure, so the default is
  the agent's 10 s interval (`agent.settings`), a parameter to calibrate.
- M of N with an evaluation range wider than N (AWS's example: 5 for N = 3; the real width
  depends on the period and is undocumented, so it is a parameter, default N + 2): with N or
  more real datapoints in the range the newest N decide; with fewer, missing ones are filled
  per `treat_missing_data` as few times as possible; with none, `missing` gives
  INSUFFICIENT_DATA, `ignore` keeps the state, `breaching` ALARM, `notBreaching` OK. Under
  `missing` and `ignore`, a real non-breaching datapoint lets the alarm go OK; when every
  real datapoint breaches but fewer than M exist, `missing` goes to ALARM only once the
  oldest breaching one is at least M periods old (the premature-alarm guard) and otherwise
  to INSUFFICIENT_DATA (the page's older table; its current text says only "does not go
  into ALARM"), and `ignore` keeps the state. Every row of the page's tables is a test.

Metric math, only as far as one alarm on one expression needs it (`MetricMath`): an alarm
whose Metrics list has two or more MetricStat queries (each a metric, a statistic, one
period) and one expression returning the alarm's data. CloudWatch computes the expression
per period from the queries' statistics; `MetricMath` does the same and keeps the result as
one datapoint per period in a stream that an `Alarm` (and so a scaling policy) reads like
any other. A period is computed once it is visible (`newest_period_end`, the alarm's own
rule), and a query without a datapoint gives the expression None, which it may fill (FILL)
or pass on as a missing result. This is what lets an alarm that needs two conditions at
once invoke a scaling policy: composite alarms cannot invoke Auto Scaling actions (AWS,
"Create an alarm that triggers an Auto Scaling action"), alarms on a metric math
expression can.

Not modelled: percentiles and their low-sample rule, metric math beyond that one shape
(the expression language itself, search expressions, expressions over expressions, queries
of different periods), anomaly detection, late datapoints arriving after their period was
evaluated, high-resolution alarm pricing.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_PUBLICATION_DELAY_S = 10.0
SECONDS_PER_DAY = 86_400


class Statistic(StrEnum):
    AVERAGE = "Average"
    SUM = "Sum"
    MINIMUM = "Minimum"
    MAXIMUM = "Maximum"
    SAMPLE_COUNT = "SampleCount"


class Comparison(StrEnum):
    GREATER = "GreaterThanThreshold"
    GREATER_OR_EQUAL = "GreaterThanOrEqualToThreshold"
    LESS = "LessThanThreshold"
    LESS_OR_EQUAL = "LessThanOrEqualToThreshold"

    def breaches(self, value: float, threshold: float) -> bool:
        if self is Comparison.GREATER:
            return value > threshold
        if self is Comparison.GREATER_OR_EQUAL:
            return value >= threshold
        if self is Comparison.LESS:
            return value < threshold
        return value <= threshold


class MissingData(StrEnum):
    MISSING = "missing"
    NOT_BREACHING = "notBreaching"
    BREACHING = "breaching"
    IGNORE = "ignore"


class AlarmState(StrEnum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class MetricStream:
    """One metric's datapoints, in timestamp order, and their statistic per period."""

    def __init__(self) -> None:
        self._times: list[float] = []
        self._values: list[float] = []

    def __len__(self) -> int:
        return len(self._times)

    def put(self, at_s: float, value: float) -> None:
        """Add one datapoint.

        Raises:
            ValueError: the value or time is NaN or infinite (CloudWatch rejects them).
        """
        if not (math.isfinite(at_s) and math.isfinite(value)):
            raise ValueError(f"CloudWatch takes finite datapoints only, not {value!r} at {at_s!r}")
        index = bisect.bisect_right(self._times, at_s)  # at the end when put in time order
        self._times.insert(index, at_s)
        self._values.insert(index, value)

    def statistic(self, period_end_s: float, period_s: float, stat: Statistic) -> float | None:
        """The statistic over datapoints in [end - period, end); None when there are none."""
        low = bisect.bisect_left(self._times, period_end_s - period_s)
        high = bisect.bisect_left(self._times, period_end_s)
        values = self._values[low:high]
        if not values:
            return None
        if stat is Statistic.AVERAGE:
            return statistics.fmean(values)
        if stat is Statistic.SUM:
            return math.fsum(values)
        if stat is Statistic.MINIMUM:
            return min(values)
        if stat is Statistic.MAXIMUM:
            return max(values)
        return float(len(values))


def check_period(period_s: int) -> None:
    """Raises: ValueError: a period an alarm cannot use (neither 10, 30 nor a multiple of 60 s)."""
    if period_s not in (10, 30) and (period_s <= 0 or period_s % 60):
        raise ValueError(f"period_s must be 10, 30 or a multiple of 60, not {period_s}")


@dataclass(frozen=True)
class AlarmConfig:
    """A metric alarm's settings, named as PutMetricAlarm names them.

    Raises:
        ValueError: settings PutMetricAlarm would refuse (M > N, N periods over a day, a
            period that is neither 10, 30 nor a multiple of 60 s).
    """

    threshold: float
    comparison: Comparison
    evaluation_periods: int
    datapoints_to_alarm: int | None = None  # None: equal to evaluation_periods, as in AWS
    period_s: int = 60
    statistic: Statistic = Statistic.AVERAGE
    treat_missing_data: MissingData = MissingData.MISSING
    evaluation_range: int | None = None  # None: evaluation_periods + 2
    publication_delay_s: float = DEFAULT_PUBLICATION_DELAY_S

    def __post_init__(self) -> None:
        check_period(self.period_s)
        if not 1 <= self.alarm_datapoints <= self.evaluation_periods:
            raise ValueError(f"need 1 <= datapoints_to_alarm <= evaluation_periods, got "
                             f"{self.alarm_datapoints} of {self.evaluation_periods}")
        if self.evaluation_periods * self.period_s > SECONDS_PER_DAY:
            raise ValueError("evaluation_periods * period_s may not exceed one day")
        if self.range_periods < self.evaluation_periods or self.publication_delay_s < 0:
            raise ValueError("evaluation_range must be at least evaluation_periods and "
                             "publication_delay_s at least 0")

    @property
    def alarm_datapoints(self) -> int:
        return self.evaluation_periods if self.datapoints_to_alarm is None \
            else self.datapoints_to_alarm

    @property
    def range_periods(self) -> int:
        return self.evaluation_periods + 2 if self.evaluation_range is None \
            else self.evaluation_range


class Alarm:
    """One alarm's state, re-evaluated once per completed period; starts INSUFFICIENT_DATA."""

    def __init__(self, config: AlarmConfig) -> None:
        self.config = config
        self.state = AlarmState.INSUFFICIENT_DATA
        self.period_end_s: float | None = None  # the newest period evaluated so far
        self.value: float | None = None  # the newest real datapoint in that evaluation
        self.history: list[tuple[float, AlarmState]] = []  # (when, new state) per change

    def evaluate(self, now_s: float, metric: MetricStream) -> AlarmState:
        """The state at `now_s`; a new evaluation happens only when a new period is complete."""
        end = self.newest_period_end(now_s)
        if end == self.period_end_s:
            return self.state
        self.period_end_s = end
        window = self._window(end, metric)
        self.value = next((v for v in reversed(window) if v is not None), None)
        flags = [None if v is None else self.config.comparison.breaches(v, self.config.threshold)
                 for v in window]
        new = decide(flags, self.config, self.state)
        if new is not self.state:
            self.history.append((now_s, new))
            self.state = new
        return self.state

    def newest_period_end(self, now_s: float) -> float:
        return newest_period_end(now_s, self.config.period_s, self.config.publication_delay_s)

    def _window(self, end: float, metric: MetricStream) -> list[float | None]:
        """The evaluation range's datapoints, oldest first; None for a missing one."""
        cfg = self.config
        ends = [end - k * cfg.period_s for k in range(cfg.range_periods - 1, -1, -1)]
        return [metric.statistic(e, cfg.period_s, cfg.statistic) for e in ends]


def newest_period_end(now_s: float, period_s: float, publication_delay_s: float) -> float:
    """The end of the newest period whose datapoints are all visible at `now_s`: the last
    one ending at or before `now - publication_delay_s` (what an alarm or a reader sees)."""
    return math.floor((now_s - publication_delay_s) / period_s) * period_s


@dataclass(frozen=True)
class MetricQuery:
    """One MetricStat of a metric math alarm: a metric and the statistic it is read with."""

    metric: MetricStream
    statistic: Statistic


Expression = Callable[[Sequence[float | None]], float | None]


class MetricMath:
    """An expression over two or more metrics' statistics, one value per period, as a stream.

    `expression` gets the queries' statistics for one period, in order (None where a query
    has no datapoint), and returns the period's value, or None for no datapoint. `update`
    computes every period visible at `now_s` that it has not computed yet and puts each
    value at its period's start, so `stream` holds exactly one datapoint per period.

    Raises:
        ValueError: fewer than two queries, a period an alarm could not use, or a negative
            publication delay.
    """

    def __init__(self, queries: Sequence[MetricQuery], expression: Expression, *,
                 period_s: int = 60,
                 publication_delay_s: float = DEFAULT_PUBLICATION_DELAY_S) -> None:
        if len(queries) < 2:
            raise ValueError("metric math here combines two or more metrics")
        check_period(period_s)
        if publication_delay_s < 0:
            raise ValueError(f"publication_delay_s must be at least 0, not {publication_delay_s}")
        self.queries, self.expression = tuple(queries), expression
        self.period_s, self.publication_delay_s = period_s, publication_delay_s
        self.stream = MetricStream()
        self._next_end_s = float(period_s)  # the first period starts when the run does

    def update(self, now_s: float) -> MetricStream:
        """Compute the periods that became visible by `now_s`; the result stream."""
        newest = newest_period_end(now_s, self.period_s, self.publication_delay_s)
        while self._next_end_s <= newest:
            end = self._next_end_s
            value = self.expression([q.metric.statistic(end, self.period_s, q.statistic)
                                     for q in self.queries])
            if value is not None:
                self.stream.put(end - self.period_s, value)
            self._next_end_s += self.period_s
        return self.stream


def decide(flags: Sequence[bool | None], config: AlarmConfig,
           current: AlarmState) -> AlarmState:
    """The alarm state for an evaluation range (oldest first; True breaching, None missing)."""
    real = [f for f in flags if f is not None]
    n, m = config.evaluation_periods, config.alarm_datapoints
    if len(real) >= n:
        return _m_of_n(sum(real[-n:]), m)
    if not real:
        return _all_missing(config.treat_missing_data, current)
    return _partial(flags, real, config, current)


def _m_of_n(breaching: int, m: int) -> AlarmState:
    return AlarmState.ALARM if breaching >= m else AlarmState.OK


def _all_missing(treat: MissingData, current: AlarmState) -> AlarmState:
    if treat is MissingData.BREACHING:
        return AlarmState.ALARM
    if treat is MissingData.NOT_BREACHING:
        return AlarmState.OK
    return current if treat is MissingData.IGNORE else AlarmState.INSUFFICIENT_DATA


def _partial(flags: Sequence[bool | None], real: Sequence[bool], config: AlarmConfig,
             current: AlarmState) -> AlarmState:
    """Fewer real datapoints than N: fill the rest per the treatment, or guard the alarm."""
    breaching, m = sum(real), config.alarm_datapoints
    treat = config.treat_missing_data
    if treat is MissingData.BREACHING:
        return _m_of_n(breaching + config.evaluation_periods - len(real), m)
    if treat is MissingData.NOT_BREACHING or breaching >= m or not all(real):
        return _m_of_n(breaching, m)
    # Every real datapoint breaches, but fewer than M of them: too early to tell.
    if treat is MissingData.IGNORE:
        return current
    oldest_breach_age = len(flags) - list(flags).index(True)  # the newest period is age 1
    return AlarmState.ALARM if oldest_breach_age >= m else AlarmState.INSUFFICIENT_DATA
