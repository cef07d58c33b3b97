"""What CloudWatch holds for the fleet: the latest value of every published series.

`llmfleet metrics` uses this to show a person that the whole path works
(locally against moto after `make up`, or against AWS with the operator's
credentials). It lists the namespace's metrics and asks for their recent
values in `GetMetricData` calls of up to 500 queries each, the API's limit.
`llmfleet metrics --starts GROUP` summarises the group's measured starts
(`TimeToServingSeconds`) and says what health-check grace and warm-up they call for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.specs import TIME_TO_SERVING

MAX_QUERIES_PER_CALL = 500


@dataclass(frozen=True)
class Latest:
    name: str
    dimensions: tuple[tuple[str, str], ...]
    value: float
    at: datetime


def _key(metric: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    dims = tuple(sorted((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
    return metric["MetricName"], dims


def _series(client: Any, namespace: str) -> list[dict[str, Any]]:
    """Each series once (moto lists a series once per put)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    for page in client.get_paginator("list_metrics").paginate(Namespace=namespace):
        for metric in page["Metrics"]:
            found.setdefault(_key(metric), metric)
    return list(found.values())


def latest(client: Any, namespace: str, minutes: float = 15,
           period_s: int = 60) -> list[Latest]:
    """The newest `period_s` average of every series with data in the last `minutes`."""
    series = _series(client, namespace)
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes + 1)
    out: list[Latest] = []
    for first in range(0, len(series), MAX_QUERIES_PER_CALL):
        chunk = series[first:first + MAX_QUERIES_PER_CALL]
        queries = [{"Id": f"m{i}", "ReturnData": True, "MetricStat": {
            "Metric": metric, "Period": period_s, "Stat": "Average"}}
            for i, metric in enumerate(chunk)]
        resp = client.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end,
                                      ScanBy="TimestampDescending")
        for result in resp["MetricDataResults"]:
            if not result["Values"]:
                continue
            metric = chunk[int(result["Id"][1:])]
            newest = max(zip(result["Timestamps"], result["Values"], strict=True))
            name, dims = _key(metric)
            out.append(Latest(name, dims, float(newest[1]), newest[0]))
    return sorted(out, key=lambda item: (item.dimensions, item.name))


def render(rows: list[Latest]) -> str:
    if not rows:
        return "no datapoints yet (the agent publishes once per interval)"
    lines: list[str] = []
    current: tuple[tuple[str, str], ...] | None = None
    for row in rows:
        if row.dimensions != current:
            current = row.dimensions
            lines.append(", ".join(f"{k}={v}" for k, v in current) or "(no dimensions)")
        lines.append(f"  {row.name:<32} {row.value:>14.6g}   {row.at:%H:%M:%S}")
    return "\n".join(lines)


@dataclass(frozen=True)
class StartTimes:
    """What the group's starts took (TimeToServingSeconds over a window)."""

    group: str
    starts: int
    fastest_s: float
    average_s: float
    slowest_s: float

    @property
    def grace_s(self) -> int:
        """The health-check grace and warm-up to set: the slowest start seen plus 20%,
        rounded up to 30 s. Shorter, and the group replaces an instance still loading its
        model (ELB health checks fail until it serves) and scales on one that cannot yet
        help; much longer, and a start that really failed is noticed late. Within the 30 to
        3,600 s the module takes (a launch hook waits 30 s at least, a warm-up an hour at
        most)."""
        return min(3600, max(30, int(math.ceil(self.slowest_s * 1.2 / 30) * 30)))

    def render(self) -> str:
        return (f"{self.group}: {self.starts} starts, boot to ready: fastest "
                f"{self.fastest_s:.0f} s, average {self.average_s:.0f} s, slowest "
                f"{self.slowest_s:.0f} s\n"
                f"  set model.model_load_seconds = {self.grace_s} in the environment's tfvars "
                "(the slowest start plus 20%, rounded up to 30 s): the group's health-check "
                "grace and its instance warm-up, or with a warm pool the launch hook's timeout")


def start_times(client: Any, namespace: str, group: str, days: float = 7) -> StartTimes | None:
    """Every start the group's agents measured in the last `days` (None: no start yet)."""
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(days=days)
    # One period over the whole window; CloudWatch takes periods over 15 days old only in
    # multiples of 300 s, over 63 days in multiples of 3600.
    period = int(math.ceil((end - start).total_seconds() / 3600) * 3600)
    points = client.get_metric_statistics(
        Namespace=namespace, MetricName=TIME_TO_SERVING.name,
        Dimensions=[{"Name": "AutoScalingGroupName", "Value": group}], StartTime=start,
        EndTime=end, Period=period,
        Statistics=["SampleCount", "Minimum", "Average", "Maximum"])["Datapoints"]
    count = sum(p["SampleCount"] for p in points)
    if not count:
        return None
    return StartTimes(group, int(count), min(p["Minimum"] for p in points),
                      sum(p["Average"] * p["SampleCount"] for p in points) / count,
                      max(p["Maximum"] for p in points))
