"""The one percentile definition the load tests and the simulator share."""

from __future__ import annotations

import pytest

from llmfleet.core.stats import percentile


def test_percentile_interpolates_between_ranks() -> None:
    samples = [float(x) for x in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 95) == pytest.approx(95.05)
    assert percentile(samples, 100) == 100.0
    assert percentile(iter([3.0]), 99) == 3.0
    assert percentile([], 50) is None
