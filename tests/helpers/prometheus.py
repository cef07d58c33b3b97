"""Read a live /metrics page and find the histogram bucket a value falls in."""

from __future__ import annotations

import time

import httpx

from llmfleet.core.prometheus import Snapshot
from server.metrics import LATENCY_BUCKETS


def scrape(url: str) -> Snapshot:
    return Snapshot.parse(httpx.get(url + "/metrics", timeout=10).text, time.monotonic())


def bucket_of(value: float, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> tuple[float, float]:
    """The histogram bucket (lower, upper] that holds `value`."""
    lower = 0.0
    for bound in buckets:
        if value <= bound:
            return lower, bound
        lower = bound
    return lower, float("inf")
