"""One round's measurements: scrape, read the GPUs, compute, price; nothing is sent here.

A round scrapes the router and every engine (`agent.sources`), reads NVML,
turns the differences since the previous round into serving statistics
(`llmfleet.core.serving`), adds cost and energy figures (`agent.cost`) and
produces the datapoints (`agent.datapoints`) and the figures `/status` serves; until
this boot's first ready answer, it also asks whether the instance serves yet
(`agent.startup`).
Readings that are NaN or infinite are left out and counted per metric, and
said once per metric, not every round. Without NVML (`gpu` off, or no
driver) a round has no GPU figures rather than a collector that may be None.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.buffer import Datapoint
from agent.cost import CostMeter, CostModel, Identity
from agent.datapoints import Where, datapoints, nonfinite, readings
from agent.fetch import PageFetcher
from agent.settings import AgentSettings
from agent.sources import Scraper
from agent.specs import (
    COST_PER_HOUR,
    COST_PER_MILLION_OUTPUT_TOKENS,
    JOULES_PER_OUTPUT_TOKEN,
    TIME_TO_SERVING,
    MetricSpec,
    Readings,
)
from agent.startup import StartupClock, boot_id, boot_time
from agent.status import AgentState
from llmfleet.core.gpu import GpuCollector, GpuReading
from llmfleet.core.instances import Market
from llmfleet.core.serving import ServingStats, compute
from llmfleet.core.wire.agent import GpuStatus, LatestRound

log = logging.getLogger(__name__)

READY_MAX_BYTES = 64 * 1024  # /ready and /health answer a few hundred bytes


@dataclass(frozen=True)
class Round:
    """What one round measured and the datapoints it produced."""

    where: Where
    timestamp: float  # wall clock, seconds since the epoch
    serving: ServingStats
    gpus: list[GpuReading]
    values: Readings  # cost and energy figures
    points: list[Datapoint]

    def summary(self) -> LatestRound:
        """The round's figures as `/status` serves them (None where nothing was measured,
        or where it was NaN or infinite: JSON has no such numbers, and browsers refuse
        them)."""
        return LatestRound(
            at=self.timestamp, instance_type=self.where.instance_type,
            model=self.where.model,
            serving={k: v for k, v in self.serving.present().items() if math.isfinite(v)},
            gpus=tuple(_gpu_status(g) for g in self.gpus),
            cost_usd_per_hour=self._figure(COST_PER_HOUR),
            cost_usd_per_million_output_tokens=self._figure(COST_PER_MILLION_OUTPUT_TOKENS),
            joules_per_output_token=self._figure(JOULES_PER_OUTPUT_TOKEN))

    def _figure(self, spec: MetricSpec) -> float | None:
        return _finite(self.values.get(spec))


class GpuSource(Protocol):
    """What a round needs of NVML (`llmfleet.core.gpu.GpuCollector`)."""

    available: bool

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def read(self) -> list[GpuReading]: ...


class NoGpu:
    """No NVML: `gpu` is off."""

    available = False

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def read(self) -> list[GpuReading]:
        return []


class RoundCollector:
    """Everything a round reads from, and the state kept between rounds."""

    def __init__(self, settings: AgentSettings, identity: Identity, status: AgentState, *,
                 gpu: GpuCollector | None, clock: Callable[[], float],
                 wall: Callable[[], float]) -> None:
        self._settings = settings
        self._identity = identity
        self._status = status
        self._wall = wall
        self._gpu: GpuSource = gpu if gpu is not None else NoGpu()
        self._scraper = Scraper.from_settings(settings, status, clock)
        self._cost = CostMeter(CostModel.for_instance_type(
            identity.instance_type, identity.market or Market.ON_DEMAND), clock)
        self._startup_fetcher = PageFetcher(settings.scrape_timeout_s, READY_MAX_BYTES, clock)
        # Only on an instance: elsewhere the machine's uptime is no start of anything.
        self._startup = StartupClock(_ready_url(settings) if settings.imds else None,
                                     self._startup_fetcher,
                                     settings.state_dir / "served-boot", wall, boot_time(),
                                     boot_id())

    def start(self) -> None:
        self._gpu.start()
        self._status.gpu_available = self._gpu.available

    def close(self) -> None:
        self._scraper.close()
        self._startup_fetcher.close()
        self._gpu.stop()

    async def collect(self, in_group: bool = True) -> Round:
        """Scrape, read and compute one round (`in_group` False: the instance is not in the
        group's capacity, `agent.datapoints.Where`)."""
        router, engines = await self._scraper.scrape()
        # The model this instance serves, when named (every instance in the cloud): its
        # router's figures for that model only, not the requests it sends to other pools.
        serving = compute(router, engines, self._settings.model)
        gpus = self._gpu.read()
        values = self._cost.figures(serving, gpus)
        values[TIME_TO_SERVING] = await asyncio.to_thread(self._startup.check)
        where = self._where(in_group)
        timestamp = self._wall()
        measured = readings(serving, gpus, values)
        self._count_nonfinite(measured)
        return Round(where, timestamp, serving, gpus, values,
                     datapoints(where, timestamp, measured))

    def _where(self, in_group: bool) -> Where:
        identity = self._identity
        return Where(identity.asg_name or "local", identity.instance_id,
                     identity.instance_type, self._settings.interval_s,
                     self._settings.model or self._scraper.served_model(), in_group)

    def _count_nonfinite(self, measured: Readings) -> None:
        for name in self._status.values_left_out(nonfinite(measured)):
            log.warning("%s was NaN or infinite: left out (counted, said once)", name)


def _ready_url(settings: AgentSettings) -> str | None:
    """What says this instance serves: the router's `/ready`, else the first engine's."""
    if settings.router_url:
        return settings.router_url + "/ready"
    return settings.engine_urls[0] + "/health" if settings.engine_urls else None


def _gpu_status(gpu: GpuReading) -> GpuStatus:
    return GpuStatus(index=gpu.index, utilization_pct=_finite(gpu.utilization_pct),
                     power_w=_finite(gpu.power_w),
                     memory_used_bytes=_finite(gpu.memory_used_bytes),
                     memory_total_bytes=_finite(gpu.memory_total_bytes),
                     temperature_c=_finite(gpu.temperature_c))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
