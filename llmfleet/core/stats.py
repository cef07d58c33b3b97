"""The one percentile the project reports: load tests, the simulator and their comparison.

Linear interpolation between closest ranks (NumPy's default, and what vLLM's serving
benchmark reports), so a simulated p95 and a measured one are the same statistic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(samples: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100) of the samples; None without samples."""
    ordered = sorted(samples)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
