"""One interval's readings as CloudWatch datapoints: names, units, dimensions.

Several dimension sets, on purpose. The Auto Scaling policy and the fleet
alarms read metrics by `AutoScalingGroupName` alone, which CloudWatch then
aggregates over every instance that published under it; dashboards and
per-instance alarms use `AutoScalingGroupName` + `InstanceId` (+
`InstanceType`); serving and per-token figures also go out under
`AutoScalingGroupName` + `Model`, so that a dashboard can compare models
served by different groups (`MetricSpec.per_model`). Each metric is published
under every set that applies, so none needs a metric-math expression. Names,
units and scales come from the one table in `agent.specs`; this module says
how a round's readings map onto it (several GPUs into one figure each).

Fields without a value are left out, and so are NaN and ±Inf (a scraped gauge
can say NaN, a rate can overflow): CloudWatch refuses them, and one of them
makes it reject the whole call of up to 1,000 datapoints, scaling data included.
`nonfinite()` names them so the agent can count what it left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.buffer import Datapoint
from agent.specs import (
    GPU_MEMORY_TOTAL,
    GPU_MEMORY_USED,
    GPU_POWER,
    GPU_SM_CLOCK,
    GPU_TEMPERATURE,
    GPU_UTILIZATION,
    SERVING,
    MetricSpec,
    Readings,
)
from llmfleet.core.gpu import GpuReading
from llmfleet.core.serving import ServingStats, averaged, summed

Dimensions = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Where:
    """Who is publishing: the dimensions and the interval."""

    asg: str
    instance_id: str | None
    instance_type: str | None
    interval_s: float
    model: str | None = None
    # False for an instance outside the group's capacity (one a warm pool prepares): its
    # figures go out under its own dimensions only, none under the sets CloudWatch
    # aggregates over the group for scaling, except the fleet-wide ones (`MetricSpec`).
    in_group: bool = True

    def dimension_sets(self, per_model: bool = False,
                       fleet_wide: bool = False) -> list[Dimensions]:
        group: Dimensions = (("AutoScalingGroupName", self.asg),)
        instance = group + tuple((k, v) for k, v in (("InstanceId", self.instance_id),
                                                      ("InstanceType", self.instance_type)) if v)
        if not self.in_group and not fleet_wide:
            return [instance] if len(instance) > 1 else []
        sets: list[Dimensions] = [group, instance] if len(instance) > 1 else [group]
        if per_model and self.model:
            sets.append((*group, ("Model", self.model)))
        return sets

    @property
    def resolution(self) -> int:
        return 1 if self.interval_s < 60 else 60  # high resolution below a minute


def _hottest(values: list[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


Field = Callable[[GpuReading], float | None]
Combine = Callable[[list[float | None]], float | None]

# Per-instance GPU figures: what each GPU says, and how the GPUs combine into one.
GPU_FIGURES: tuple[tuple[MetricSpec, Field, Combine], ...] = (
    (GPU_UTILIZATION, lambda g: g.utilization_pct, averaged),
    (GPU_MEMORY_USED, lambda g: g.memory_used_bytes, summed),
    (GPU_MEMORY_TOTAL, lambda g: g.memory_total_bytes, summed),
    (GPU_POWER, lambda g: g.power_w, summed),
    (GPU_TEMPERATURE, lambda g: g.temperature_c, _hottest),
    (GPU_SM_CLOCK, lambda g: g.sm_clock_mhz, averaged),
)


def gpu_values(gpus: Sequence[GpuReading]) -> Readings:
    """Per-instance GPU figures: utilisation and clock averaged, memory and power summed."""
    return {spec: combine([field(g) for g in gpus]) for spec, field, combine in GPU_FIGURES}


def serving_values(serving: ServingStats) -> Readings:
    """The serving figures that have a value, scaled as published."""
    return {SERVING[field]: value * SERVING[field].scale
            for field, value in serving.present().items()}


def readings(serving: ServingStats, gpus: Sequence[GpuReading], extra: Readings) -> Readings:
    """Every figure of the round by its spec, None where nothing was measured.

    `extra` carries computed figures such as the cost per hour (`agent.cost`).
    """
    return {**serving_values(serving), **gpu_values(gpus), **extra}


def nonfinite(values: Readings) -> list[str]:
    """Names of the figures that are NaN or infinite (left out of the datapoints)."""
    return [spec.name for spec, value in values.items()
            if value is not None and not math.isfinite(value)]


def datapoints(where: Where, timestamp: float, values: Readings) -> list[Datapoint]:
    """Every finite value, under every dimension set that applies to it."""
    return [Datapoint(spec.name, float(value), spec.unit, timestamp, dims, where.resolution)
            for spec, value in values.items()
            if value is not None and math.isfinite(value)
            for dims in where.dimension_sets(spec.per_model, spec.fleet_wide)]


def build(where: Where, timestamp: float, serving: ServingStats,
          gpus: Sequence[GpuReading], extra: Readings) -> list[Datapoint]:
    """The round's datapoints: `datapoints()` of `readings()`."""
    return datapoints(where, timestamp, readings(serving, gpus, extra))
