"""What CloudWatch holds for the fleet: the latest value of every published series.

`llmfleet metrics` uses this to show a person that the whole path works
(locally against moto after `make up`, or against AWS with the operator's
credentials). It lists the namespace's metrics and asks for their recent
values in `GetMetricData` calls of up to 500 queries each, the API's limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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
