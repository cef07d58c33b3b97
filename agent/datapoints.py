"""One interval's readings as CloudWatch datapoints: names, units, dimensions.

Several dimension sets, on purpose. The Auto Scaling policy and the fleet
alarms read metrics by `AutoScalingGroupName` alone, which CloudWatch then
aggregates over every instance that published under it; dashboards and
per-instance alarms use `AutoScalingGroupName` + `InstanceId` (+
`InstanceType`); serving and per-token figures also go out under
`AutoScalingGroupName` + `Model`, so that a dashboard can compare models
served by different groups. Each metric is published under every set that
applies, so none needs a metric-math expression. CloudWatch has no unit for
watts, joules or dollars: those go out as `None`, with the unit in the name.
Ratios are percentages. Fields without a value are left out, and so are
NaN and ±Inf (a scraped gauge can say NaN, a rate can overflow): CloudWatch
refuses them, and one of them makes it reject the whole call of up to 1,000
datapoints, scaling data included. `nonfinite()` names them so the agent can
count what it left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from agent.buffer import Datapoint
from llmfleet.core.gpu import GpuReading
from llmfleet.core.serving import ServingStats, averaged, summed

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


# Figures that describe the model being served rather than the machine.
PER_MODEL = {name for name, _, _ in SERVING.values()} | {
    "CostPerMillionOutputTokensUSD", "JoulesPerOutputToken"}

Dimensions = tuple[tuple[str, str], ...]
Readings = dict[tuple[str, str], float | None]  # (metric name, unit) -> value


@dataclass(frozen=True)
class Where:
    """Who is publishing: the dimensions and the interval."""

    asg: str
    instance_id: str | None
    instance_type: str | None
    interval_s: float
    model: str | None = None

    def dimension_sets(self, per_model: bool = False) -> list[Dimensions]:
        group: Dimensions = (("AutoScalingGroupName", self.asg),)
        instance = group + tuple((k, v) for k, v in (("InstanceId", self.instance_id),
                                                      ("InstanceType", self.instance_type)) if v)
        sets: list[Dimensions] = [group, instance] if len(instance) > 1 else [group]
        if per_model and self.model:
            sets.append((*group, ("Model", self.model)))
        return sets

    @property
    def resolution(self) -> int:
        return 1 if self.interval_s < 60 else 60  # high resolution below a minute


def gpu_values(gpus: Sequence[GpuReading]) -> Readings:
    """Per-instance GPU figures: utilisation and clock averaged, memory and power summed."""
    return {
        ("GPUUtilization", "Percent"): averaged([g.utilization_pct for g in gpus]),
        ("GPUMemoryUsed", "Bytes"): summed([g.memory_used_bytes for g in gpus]),
        ("GPUMemoryTotal", "Bytes"): summed([g.memory_total_bytes for g in gpus]),
        ("GPUPowerWatts", "None"): summed([g.power_w for g in gpus]),
        ("GPUTemperatureCelsius", "None"): max((g.temperature_c for g in gpus
                                                if g.temperature_c is not None), default=None),
        ("GPUSMClockMHz", "None"): averaged([g.sm_clock_mhz for g in gpus]),
    }


def readings(serving: ServingStats, gpus: Sequence[GpuReading], extra: Readings) -> Readings:
    """Every figure of the round by (metric name, unit), None where nothing was measured.

    `extra` carries computed figures such as ("CostPerHourUSD", "None").
    """
    values: Readings = {}
    for field, value in serving.present().items():
        name, unit, scale = SERVING[field]
        values[(name, unit)] = value * scale
    values.update(gpu_values(gpus))
    values.update(extra)
    return values


def nonfinite(values: Readings) -> list[str]:
    """Names of the figures that are NaN or infinite (left out of the datapoints)."""
    return [name for (name, _), value in values.items()
            if value is not None and not math.isfinite(value)]


def datapoints(where: Where, timestamp: float, values: Readings) -> list[Datapoint]:
    """Every finite value, under every dimension set that applies to it."""
    return [Datapoint(name, float(value), unit, timestamp, dims, where.resolution)
            for (name, unit), value in values.items()
            if value is not None and math.isfinite(value)
            for dims in where.dimension_sets(per_model=name in PER_MODEL)]


def build(where: Where, timestamp: float, serving: ServingStats,
          gpus: Sequence[GpuReading], extra: Readings) -> list[Datapoint]:
    """The round's datapoints: `datapoints()` of `readings()`."""
    return datapoints(where, timestamp, readings(serving, gpus, extra))
