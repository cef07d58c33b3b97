"""Scrape parsing and the PromQL-style arithmetic on deltas."""

from __future__ import annotations

import math

import pytest

from llmfleet.core.prometheus import (
    ScrapeError,
    Snapshot,
    buckets_delta,
    counter_delta,
    histogram_quantile,
)

PAGE = """\
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1",model="a"} 2.0
lat_seconds_bucket{le="1.0",model="a"} 6.0
lat_seconds_bucket{le="+Inf",model="a"} 8.0
lat_seconds_count{model="a"} 8.0
lat_seconds_sum{model="a"} 9.0
lat_seconds_bucket{le="0.1",model="b"} 1.0
lat_seconds_bucket{le="1.0",model="b"} 1.0
lat_seconds_bucket{le="+Inf",model="b"} 2.0
lat_seconds_count{model="b"} 2.0
lat_seconds_sum{model="b"} 5.0
# HELP reqs_total Requests.
# TYPE reqs_total counter
reqs_total{status="2xx"} 10.0
reqs_total{status="5xx"} 2.0
# HELP kv Usage.
# TYPE kv gauge
kv{engine="0"} 0.25
kv{engine="1"} 0.75
"""


def test_parse_sums_and_averages_across_labels() -> None:
    snap = Snapshot.parse(PAGE, taken_at=1.0)
    assert snap.total("reqs_total") == 12
    assert snap.total("reqs_total", status="5xx") == 2
    assert snap.total("reqs_total", status="4xx") is None
    assert snap.mean("kv") == 0.5
    assert snap.buckets("lat_seconds") == [(0.1, 3.0), (1.0, 7.0), (math.inf, 10.0)]
    assert snap.buckets("lat_seconds", model="b") == [(0.1, 1.0), (1.0, 1.0), (math.inf, 2.0)]
    assert snap.buckets("missing") is None


@pytest.mark.parametrize("garbage", ["this is not { prometheus", "x{le=}", 'a{b="c"} notanumber'])
def test_garbage_is_a_scrape_error(garbage: str) -> None:
    with pytest.raises(ScrapeError):
        Snapshot.parse(garbage, 0.0)


# 8 observations: 2 up to 0.1 s, 4 more up to 1 s, 2 beyond. Rank = q * 8.
@pytest.mark.parametrize(("q", "expected"), [
    (0.0, 0.0),
    (0.2, 0.1 * 1.6 / 2),               # rank 1.6, inside the first bucket
    (0.5, 0.1 + 0.9 * (4 - 2) / 4),     # rank 4, second bucket holds ranks 2..6
    (0.75, 1.0),                        # rank 6, the second bucket's upper bound
    (0.9, 1.0),                         # rank 7.2, past the last finite bound
    (1.0, 1.0)])
def test_quantile_interpolates_inside_the_bucket(q: float, expected: float) -> None:
    buckets = [(0.1, 2.0), (1.0, 6.0), (math.inf, 8.0)]
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


def test_quantile_of_nothing_is_none() -> None:
    assert histogram_quantile(0.5, None) is None
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None


def test_counter_delta_survives_restarts() -> None:
    assert counter_delta(10, 15) == 5
    assert counter_delta(10, 3) == 3  # restarted from zero, then counted 3
    assert counter_delta(None, 4) == 4
    assert counter_delta(4, None) is None


def test_buckets_delta_and_restart() -> None:
    before = [(0.1, 2.0), (math.inf, 5.0)]
    assert buckets_delta(before, [(0.1, 3.0), (math.inf, 9.0)]) == [(0.1, 1.0), (math.inf, 4.0)]
    assert buckets_delta(before, [(0.1, 1.0), (math.inf, 1.0)]) == [(0.1, 1.0), (math.inf, 1.0)]
    assert buckets_delta(before, [(0.5, 1.0), (math.inf, 7.0)]) == [(0.5, 1.0), (math.inf, 7.0)]


@pytest.mark.parametrize("bucket", ['lat_seconds_bucket{model="a"} 3',
                                    'lat_seconds_bucket{le="x"} 3'])
def test_a_bucket_sample_without_a_numeric_le_does_not_break_the_round(bucket: str) -> None:
    """An untyped `_bucket` sample with no usable `le` used to raise in every round."""
    snap = Snapshot.parse(PAGE + bucket + "\n", taken_at=1.0)
    assert snap.buckets("lat_seconds") == [(0.1, 3.0), (1.0, 7.0), (math.inf, 10.0)]
