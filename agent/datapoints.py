"""One interval's readings as CloudWatch datapoints: names, units, dimensions.

Two dimension sets, on purpose. The Auto Scaling policy and the fleet
alarms read metrics by `AutoScalingGroupName` alone, which CloudWatch then
aggregates over every instance that published under it; dashboards and
per-instance alarms use `AutoScalingGroupName` + `InstanceId` (+
`InstanceType`). Each metric is published under both, so neither needs a
metric-math expression. CloudWatch has no unit for watts, joules or dollars:
those go out as `None`, with the unit in the name. Ratios are percentages.
Fields without a value are left out (CloudWatch rejects NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.buffer import Datapoint
from agent.gpu import GpuReading
from agent.serving import ServingStats

# ServingStats field -> (metric name, unit, scale)
SERVING: dict[str, tuple[str, str, float]] = {
    "latency_p50_s": ("LatencyP50", "Seconds", 1), "latency_p95_s": ("LatencyP95", "Seconds", 1),
    "latency_p99_s": ("LatencyP99", "Seconds", 1), "ttft_p50_s": ("TTFTP50", "Seconds", 1),
    "ttft_p95_s": ("TTFTP95", "Seconds", 1), "ttft_p99_s": ("TTFTP99", "Seconds", 1),
    "itl_p50_s": ("InterTokenLatencyP50", "Seconds", 1),
    "itl_p95_s": ("InterTokenLatencyP95", "Seconds", 1),
    "requests_per_s": ("RequestsPerSecond", "Count/Second", 1),
    "error_rate": ("ErrorRate", "Percent", 100),
    "prompt_tokens_per_s": ("PromptTokensPerSecond", "Count/Second", 1),
    "generation_tokens_per_s": ("GenerationTokensPerSecond", "Count/Second", 1),
    "requests_running": ("RequestsRunning", "Count", 1),
    "requests_waiting": ("RequestsWaiting", "Count", 1),
    "kv_cache_usage": ("KVCacheUsage", "Percent", 100),
}


@dataclass(frozen=True)
class Where:
    """Who is publishing: the dimensions and the interval."""

    asg: str
    instance_id: str | None
    instance_type: str | None
    interval_s: float

    def dimension_sets(self) -> list[tuple[tuple[str, str], ...]]:
        group = (("AutoScalingGroupName", self.asg),)
        instance = group + tuple((k, v) for k, v in (("InstanceId", self.instance_id),
                                                      ("InstanceType", self.instance_type)) if v)
        return [group, instance] if len(instance) > 1 else [group]

    @property
    def resolution(self) -> int:
        return 1 if self.interval_s < 60 else 60  # high resolution below a minute


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _sum(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def gpu_values(gpus: Sequence[GpuReading]) -> dict[tuple[str, str], float | None]:
    """Per-instance GPU figures: utilisation averaged, memory, power and energy summed."""
    return {
        ("GPUUtilization", "Percent"): _mean([g.utilization_pct for g in gpus]),
        ("GPUMemoryUsed", "Bytes"): _sum([g.memory_used_bytes for g in gpus]),
        ("GPUMemoryTotal", "Bytes"): _sum([g.memory_total_bytes for g in gpus]),
        ("GPUPowerWatts", "None"): _sum([g.power_w for g in gpus]),
        ("GPUTemperatureCelsius", "None"): max((g.temperature_c for g in gpus
                                                if g.temperature_c is not None), default=None),
    }


def build(where: Where, timestamp: float, serving: ServingStats,
          gpus: Sequence[GpuReading],
          extra: dict[tuple[str, str], float | None]) -> list[Datapoint]:
    """Every present value, under every dimension set.

    `extra` carries computed figures such as ("CostPerHourUSD", "None").
    """
    values: dict[tuple[str, str], float | None] = {}
    for field, value in serving.present().items():
        name, unit, scale = SERVING[field]
        values[(name, unit)] = value * scale
    values.update(gpu_values(gpus))
    values.update(extra)
    return [Datapoint(name, float(value), unit, timestamp, dims, where.resolution)
            for (name, unit), value in values.items() if value is not None
            for dims in where.dimension_sets()]
