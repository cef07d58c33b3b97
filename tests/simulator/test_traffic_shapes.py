"""Synthetic traffic: each shape's rates, the seed, token lengths and bad specs.

Counts of a Poisson process have a standard deviation of the square root of their mean,
so a count within `SIGMAS` of it passes; at the sizes used that is a band of a few
percent, which `test_the_rate_tolerance_catches_a_rate_five_percent_off` shows is tight
enough to catch a wrong rate. The seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

import pytest

from simulator.traffic import Arrival, SpecError, synthetic
from simulator.traffic_shapes import TROUGH_AT

SIGMAS = 4.0
HOUR = 3600.0


def poisson_close(count: int, expected: float) -> bool:
    return abs(count - expected) <= SIGMAS * math.sqrt(expected)


def count_in(arrivals: Sequence[Arrival], start: float, end: float) -> int:
    return sum(start <= a.at_s < end for a in arrivals)


def test_constant_arrivals_come_at_the_rate_within_the_run() -> None:
    arrivals = synthetic("constant", duration_s=HOUR, rate_per_s=10, workload="fixed:1:1")
    assert poisson_close(len(arrivals), 10 * HOUR)
    assert all(0 <= a.at_s < HOUR for a in arrivals)
    assert [a.at_s for a in arrivals] == sorted(a.at_s for a in arrivals)
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(arrivals)]
    assert statistics.stdev(gaps) == pytest.approx(statistics.mean(gaps), rel=0.05)  # exponential


def test_the_rate_tolerance_catches_a_rate_five_percent_off() -> None:
    expected = 10 * HOUR
    assert SIGMAS * math.sqrt(expected) < 0.025 * expected  # the band is under 2.5%
    for wrong_rate in (9.5, 10.5):
        arrivals = synthetic("constant", duration_s=HOUR, rate_per_s=wrong_rate,
                             workload="fixed:1:1")
        assert not poisson_close(len(arrivals), expected)


def diurnal_expected(rate: float, period: float, start: float, end: float,
                     ratio: float) -> float:
    """The integral of rate * (1 - a cos(2 pi (t / period - TROUGH_AT))) over [start, end)."""
    a = (ratio - 1) / (ratio + 1)

    def antiderivative(t: float) -> float:
        phase = 2 * math.pi * (t / period - TROUGH_AT)
        return t - a * period / (2 * math.pi) * math.sin(phase)

    return rate * (antiderivative(end) - antiderivative(start))


def test_diurnal_follows_a_day_compressed_into_the_run() -> None:
    arrivals = synthetic("diurnal:4", duration_s=HOUR, rate_per_s=10, workload="fixed:1:1")
    assert poisson_close(len(arrivals), 10 * HOUR)  # the base rate is the mean
    for hour in range(24):  # each compressed hour of the day
        start, end = hour * HOUR / 24, (hour + 1) * HOUR / 24
        assert poisson_close(count_in(arrivals, start, end),
                             diurnal_expected(10, HOUR, start, end, 4))
    trough, peak = count_in(arrivals, 0.0, 600.0), count_in(arrivals, 1800.0, 2400.0)
    assert trough < peak  # quiet at 04:00, busy at 16:00


def test_diurnal_over_a_real_day_and_with_its_own_period() -> None:
    day = synthetic("diurnal", duration_s=86_400, rate_per_s=0.5, workload="fixed:1:1")
    assert poisson_close(len(day), 0.5 * 86_400)
    small_hours = count_in(day, 3 * HOUR, 5 * HOUR)
    afternoon = count_in(day, 15 * HOUR, 17 * HOUR)
    assert afternoon / small_hours == pytest.approx(3.0, rel=0.15)  # the default ratio
    twice = synthetic("diurnal:3:1800", duration_s=HOUR, rate_per_s=10, workload="fixed:1:1")
    assert poisson_close(count_in(twice, 1800, HOUR),
                         diurnal_expected(10, 1800, 1800, HOUR, 3))


def test_step_changes_the_rate_by_multiples_at_the_given_times() -> None:
    arrivals = synthetic("step:600=3,1200=0.5,1800=0", duration_s=2400, rate_per_s=5,
                         workload="fixed:1:1")
    for (start, end), factor in zip([(0, 600), (600, 1200), (1200, 1800)], [1, 3, 0.5],
                                    strict=True):
        assert poisson_close(count_in(arrivals, start, end), 5 * factor * 600)
    assert count_in(arrivals, 1800, 2400) == 0


def test_bursts_multiply_the_rate_from_every_period_on_not_from_the_start() -> None:
    arrivals = synthetic("bursts:900:60:5", duration_s=HOUR, rate_per_s=4,
                         workload="fixed:1:1")
    bursts = [(900.0, 960.0), (1800.0, 1860.0), (2700.0, 2760.0)]
    inside = sum(count_in(arrivals, start, end) for start, end in bursts)
    assert poisson_close(inside, 4 * 5 * 180)
    assert poisson_close(len(arrivals) - inside, 4 * (HOUR - 180))
    assert poisson_close(count_in(arrivals, 0, 60), 4 * 60)


def test_shapes_joined_by_a_star_multiply() -> None:
    arrivals = synthetic("step:1800=2*bursts:2400:300:3", duration_s=HOUR, rate_per_s=4,
                         workload="fixed:1:1")
    assert poisson_close(count_in(arrivals, 2400, 2700), 4 * 2 * 3 * 300)
    assert poisson_close(count_in(arrivals, 0, 1800), 4 * 1800)


def test_the_seed_decides_everything_and_the_workload_only_the_lengths() -> None:
    def draw(seed: int, workload: str = "lognormal:300:150") -> list[Arrival]:
        return synthetic("diurnal*bursts:300:30:2", duration_s=600, rate_per_s=3,
                         workload=workload, seed=seed)

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    assert [a.at_s for a in draw(1, "fixed:9:8")] == [a.at_s for a in draw(1)]
    assert {(a.prompt_tokens, a.output_tokens) for a in draw(1, "fixed:9:8")} == {(9, 8)}


def test_lognormal_lengths_have_the_asked_medians() -> None:
    arrivals = synthetic("constant", duration_s=1000, rate_per_s=5,
                         workload="lognormal:300:150")
    assert statistics.median(a.prompt_tokens for a in arrivals) == pytest.approx(300, rel=0.06)
    assert statistics.median(a.output_tokens for a in arrivals) == pytest.approx(150, rel=0.06)
    assert min(min(a.prompt_tokens, a.output_tokens) for a in arrivals) >= 1


@pytest.mark.parametrize(("shape", "message"), [
    ("poisson", "unknown shape 'poisson': use constant, diurnal"),
    ("constant:2", "unknown shape"),
    ("bursts:1:2", "unknown shape"),
    ("diurnal:0.5", "PEAK_TO_TROUGH must be >= 1"),
    ("diurnal:3:0", "PERIOD_S > 0"),
    ("diurnal:x", "'x' is not a number"),
    ("diurnal:inf", "'inf' is not a finite number"),
    ("step:10=2,5=1", "ascending"),
    ("step:10=-1", "multiples >= 0"),
    ("step:10", "write the changes as T1=R1"),
    ("bursts:60:120:2", "0 < LENGTH_S <= EVERY_S"),
    ("bursts:0:0:2", "EVERY_S > 0"),
    ("constant*", "unknown shape"),
])
def test_a_bad_shape_says_what_to_write(shape: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        synthetic(shape, duration_s=60, rate_per_s=1, workload="fixed:1:1")


@pytest.mark.parametrize(("workload", "message"), [
    ("file:prompts.jsonl", "a file workload holds prompts, not a length distribution"),
    ("fixed:1", "unknown workload 'fixed:1': use fixed:IN:OUT or lognormal"),
    ("fixed:0:1", "lengths must be at least 1"),
    ("lognormal:1:1:9", "SIGMA must be in"),
])
def test_a_bad_workload_says_what_to_write(workload: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        synthetic("constant", duration_s=60, rate_per_s=1, workload=workload)


@pytest.mark.parametrize(("duration_s", "rate_per_s", "message"), [
    (0.0, 1.0, "duration_s must be a positive finite number"),
    (math.inf, 1.0, "duration_s must be"),
    (60.0, -1.0, "rate_per_s must be a positive finite number"),
    (60.0, math.nan, "rate_per_s must be"),
    (86_400.0 * 30, 1.0, "could draw more than 2000000 arrivals"),
])
def test_a_bad_size_is_refused_before_drawing(duration_s: float, rate_per_s: float,
                                              message: str) -> None:
    with pytest.raises(SpecError, match=message):
        synthetic("constant", duration_s=duration_s, rate_per_s=rate_per_s,
                  workload="fixed:1:1")
