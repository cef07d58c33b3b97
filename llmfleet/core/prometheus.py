"""Prometheus scrapes and what changed between two of them.

A `Snapshot` is one scrape of a `/metrics` page, flattened to sample values
keyed by sample name and labels (the official `prometheus_client` parser reads
the text). Rates and percentiles over an interval come from the difference of
two snapshots, the way PromQL's `rate()` and `histogram_quantile()` work:
counters and cumulative histogram buckets are subtracted, a counter that went
down is taken to have restarted from zero, and quantiles are interpolated
linearly inside the bucket where they fall. A page is outside input: text the
parser rejects is a `ScrapeError` for that source, and a sample that parses but
makes no sense where it is used (a `_bucket` without a numeric `le`) is
ignored, so that one odd page cannot fail every round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), ascending


class ScrapeError(ValueError):
    """A page that is not Prometheus text."""


@dataclass(frozen=True)
class Snapshot:
    values: Mapping[tuple[str, Labels], float]
    taken_at: float

    @classmethod
    def parse(cls, text: str, taken_at: float) -> Snapshot:
        """Raises ScrapeError for text the Prometheus parser rejects."""
        values: dict[tuple[str, Labels], float] = {}
        try:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    labels = tuple(sorted(sample.labels.items()))
                    values[(sample.name, labels)] = float(sample.value)
        except (ValueError, TypeError, IndexError) as exc:
            raise ScrapeError(f"not Prometheus text: {exc}") from exc
        return cls(values, taken_at)

    def _matching(self, name: str, match: Mapping[str, str]) -> list[tuple[Labels, float]]:
        return [(labels, value) for (sample, labels), value in self.values.items()
                if sample == name and all((k, v) in labels for k, v in match.items())]

    def total(self, name: str, **match: str) -> float | None:
        """Sum of the samples called `name` whose labels include `match`; None if none."""
        found = self._matching(name, match)
        return sum(v for _, v in found) if found else None

    def mean(self, name: str, **match: str) -> float | None:
        found = self._matching(name, match)
        return sum(v for _, v in found) / len(found) if found else None

    def label_values(self, name: str, label: str) -> set[str]:
        """Values the label `label` takes on samples called `name`."""
        return {dict(labels)[label] for labels, _ in self._matching(name, {})
                if label in dict(labels)}

    def buckets(self, name: str, **match: str) -> Buckets | None:
        """Cumulative buckets of histogram `name`, summed over its other labels."""
        by_bound: dict[float, float] = {}
        for labels, value in self._matching(f"{name}_bucket", match):
            bound = _bound(dict(labels).get("le"))
            if bound is not None:  # an untyped `_bucket` sample with no usable `le`: ignored
                by_bound[bound] = by_bound.get(bound, 0.0) + value
        return sorted(by_bound.items()) if by_bound else None


def _bound(le: str | None) -> float | None:
    """A bucket's upper bound; None for a missing, unparsable or NaN `le`."""
    try:
        bound = float(le) if le is not None else math.nan
    except ValueError:
        return None
    return None if math.isnan(bound) else bound


def counter_delta(before: float | None, after: float | None) -> float | None:
    """Increase of a counter; a decrease means the process restarted from zero."""
    if after is None:
        return None
    if before is None or after < before:
        return after
    return after - before


def buckets_delta(before: Buckets | None, after: Buckets | None) -> Buckets | None:
    if after is None:
        return None
    if before is None or [b for b, _ in before] != [b for b, _ in after] or \
            before[-1][1] > after[-1][1]:
        return after  # new series, changed layout, or a restart: count from zero
    return [(bound, a - b) for (bound, a), (_, b) in zip(after, before, strict=True)]


def histogram_quantile(q: float, buckets: Buckets | None) -> float | None:
    """The q-quantile of a cumulative histogram, as PromQL computes it; None if empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bound: the best known lower limit
            in_bucket = cumulative - below
            if in_bucket <= 0:
                return bound
            return lower + (bound - lower) * (rank - below) / in_bucket
        lower, below = bound, cumulative
    return lower
