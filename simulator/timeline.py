"""A simulated run over time: per-interval series for the plot and its CSV (issue 17).

The run is cut into bins of `bin_s` seconds (60 by default, CloudWatch's alarm period)
from 0 to its horizon, the later of its end and the trace's last arrival; the last bin
may be shorter. For each bin:

- requests are counted by when they arrived: the arrival rate is the count over the
  full bin width (so a short last bin reads low rather than spiking), the p95 TTFT is
  of the completed requests that arrived in the bin, and the SLO share is the requests
  that met it over the trace's arrivals in the bin, so that refused and cut-off ones
  count as misses (`Outcome` counts cut-off requests but does not say which they were);
  the same definition as `simulator.report`'s attainment;
- instances are the time-weighted mean over the part of the bin the run covers, in each
  phase, from the times `simulator.sim` stamps on each `Instance`: launching from when
  the group asked for it (`requested_s`: the scaling action, or 0 for the initial ones)
  until its first request (EC2's launch, the boot, the model load, the health checks),
  serving until the load balancer deregistered it (`deregistered_s`: a scale-in or a spot
  interruption), draining until it terminated, or until the run ended for one still up.
  One removed before it ever served counts as launching until it ended;
- the queue is the deepest the agents saw: the maximum over the bin's sample times of
  the requests waiting summed over the sampled instances. The maximum, not the mean: a
  backlog that lasts two samples costs its requests their SLO, and a minute's mean
  would halve it.

Binning is one pass over the requests and samples and one over each instance's bins:
a 24-hour run with 400,000 completed requests takes about two seconds on one core here.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from llmfleet.core.stats import percentile
from simulator.replica import Finished
from simulator.report import Run, Slo, meets
from simulator.traffic import Arrival


@dataclass(frozen=True, slots=True)
class Interval:
    """One bin of one run; a CSV row."""

    start_s: float
    end_s: float
    requests: int  # arrived in the bin
    arrival_rate_per_s: float
    serving: float  # mean instances over the bin
    launching: float
    draining: float
    queue: int | None  # deepest over the bin's samples; None when no agent published
    ttft_p95_s: float | None  # None when none of the bin's requests completed
    slo_met: float | None  # 0-1 of the bin's requests; None when none arrived


@dataclass(frozen=True)
class Timeline:
    """One policy's run, bin by bin."""

    policy: str
    bin_s: float
    intervals: list[Interval]


class _Bins:
    """Bin arithmetic over [0, horizon)."""

    def __init__(self, horizon_s: float, bin_s: float, has_requests: bool) -> None:
        self.horizon_s, self.width = horizon_s, bin_s
        self.count = math.ceil(horizon_s / bin_s) if horizon_s > 0 else int(has_requests)

    def index(self, at_s: float) -> int:
        return min(max(int(at_s // self.width), 0), self.count - 1)

    def add_span(self, totals: list[float], start_s: float, end_s: float) -> None:
        """Add the seconds of [start, end) that fall in each bin."""
        start_s, end_s = max(start_s, 0.0), min(end_s, self.horizon_s)
        if end_s <= start_s:
            return
        for i in range(self.index(start_s), self.index(end_s) + 1):
            low, high = i * self.width, (i + 1) * self.width
            totals[i] += max(0.0, min(end_s, high) - max(start_s, low))

    def covered_s(self, i: int) -> float:
        return min((i + 1) * self.width, self.horizon_s) - i * self.width


def timeline(policy: str, out: Run, arrivals: Sequence[Arrival], slo: Slo,
             bin_s: float = 60.0) -> Timeline:
    """`out`, the run of `arrivals` under `policy`, in bins of `bin_s` seconds.

    Raises:
        ValueError: `bin_s` is not positive.
    """
    if not bin_s > 0:
        raise ValueError(f"bin_s must be positive, not {bin_s}")
    horizon = max(out.end_s, max((a.at_s for a in arrivals), default=0.0))
    bins = _Bins(horizon, bin_s, bool(arrivals or out.finished))
    requests = [0] * bins.count
    for arrival in arrivals:
        requests[bins.index(arrival.at_s)] += 1
    ttfts, met = _requests(out.finished, bins, slo)
    serving, launching, draining = _instance_seconds(out, bins)
    queues = _queues(out, bins)
    return Timeline(policy, bin_s, [
        Interval(start_s=i * bin_s, end_s=i * bin_s + bins.covered_s(i),
                 requests=requests[i], arrival_rate_per_s=requests[i] / bin_s,
                 serving=_mean(serving[i], bins.covered_s(i)),
                 launching=_mean(launching[i], bins.covered_s(i)),
                 draining=_mean(draining[i], bins.covered_s(i)), queue=queues[i],
                 ttft_p95_s=percentile(ttfts[i], 95),
                 slo_met=met[i] / requests[i] if requests[i] else None)
        for i in range(bins.count)])


def _mean(seconds: float, covered_s: float) -> float:
    return seconds / covered_s if covered_s > 0 else 0.0


def _requests(finished: Sequence[Finished], bins: _Bins,
              slo: Slo) -> tuple[list[list[float]], list[int]]:
    """Per bin of arrival: the completed requests' TTFTs, and how many met the SLO."""
    ttfts: list[list[float]] = [[] for _ in range(bins.count)]
    met = [0] * bins.count
    for done in finished:
        i = bins.index(done.arrival.at_s)
        ttfts[i].append(done.first_token_s - done.arrival.at_s)
        met[i] += meets(done, slo)
    return ttfts, met


def _instance_seconds(out: Run, bins: _Bins) -> tuple[list[float], ...]:
    """Per bin: instance-seconds serving, launching and draining."""
    serving, launching, draining = ([0.0] * bins.count for _ in range(3))
    for instance in out.instances:
        ended = instance.terminated_s if instance.terminated_s is not None else out.end_s
        if instance.ready_s is None:  # removed (or interrupted) before it ever served
            bins.add_span(launching, instance.requested_s, ended)
            continue
        left = instance.deregistered_s if instance.deregistered_s is not None else ended
        bins.add_span(launching, instance.requested_s, instance.ready_s)
        bins.add_span(serving, instance.ready_s, left)
        bins.add_span(draining, left, ended)
    return serving, launching, draining


def _queues(out: Run, bins: _Bins) -> list[int | None]:
    """Per bin: the most requests waiting fleet-wide at one sample time."""
    waiting: dict[float, int] = {}
    for sample in out.samples:
        waiting[sample.at_s] = waiting.get(sample.at_s, 0) + sample.waiting
    deepest: list[int | None] = [None] * bins.count
    for at_s, total in waiting.items():
        i = bins.index(at_s)
        current = deepest[i]
        deepest[i] = total if current is None else max(current, total)
    return deepest


def write_timeline_csv(path: Path, timelines: Sequence[Timeline]) -> Path:
    """One row per bin per policy, empty cells for missing values; returns `path`."""
    names = ["policy", *(f.name for f in fields(Interval))]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for line in timelines:
            writer.writerows(_row(line.policy, interval) for interval in line.intervals)
    return path


def _row(policy: str, interval: Interval) -> dict[str, object]:
    row: dict[str, object] = {"policy": policy}
    for key, value in asdict(interval).items():
        row[key] = "" if value is None else round(value, 6) if isinstance(value, float) else value
    return row
