"""The agent's work, round after round: scrape, read the GPUs, price, buffer, publish.

Each round scrapes the router and every engine concurrently (urllib3, which
boto3 loads anyway, on worker threads; `agent.fetch`), reads NVML,
turns the differences since the previous round into serving statistics,
adds cost and energy figures, and hands the datapoints to the outbox.
Rounds start on a fixed grid (`start + k * interval`),
so a slow round does not push every later one back; a round that overruns
the next tick skips it rather than running two back to back.

A source that fails, answers with more than `scrape_max_bytes`, takes longer
than about `scrape_timeout_s` in all (a page that trickles in), or returns
something that is not Prometheus text is counted and skipped for the round;
its previous scrape is kept, so the next good one covers both intervals and
no counts are lost. The first scrape of a source only primes it: cumulative
histograms since the engine started say nothing about this interval.

Readings that are NaN or infinite are left out and counted per metric. The
datapoints then go to the outbox (`agent.outbox`: CloudWatch first, the
on-disk buffer for what must wait), on one worker thread since SQLite and
boto3 block.

The loop never dies of one bad round: an unexpected error is counted and
logged with its traceback (once while it repeats), and the next round runs
on time. `/health` turns 503 when rounds stop completing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import urllib3

from agent.buffer import Datapoint
from agent.cost import CostModel, Identity, imds_identity, joules_per_output_token
from agent.datapoints import Where, datapoints, nonfinite, readings
from agent.fetch import PageFetcher
from agent.outbox import Outbox
from agent.settings import AgentSettings
from agent.status import AgentStatus
from llmfleet.core.gpu import GpuCollector, GpuReading
from llmfleet.core.instances import Market
from llmfleet.core.prometheus import ScrapeError, Snapshot
from llmfleet.core.serving import VLLM_GENERATION_TOKENS, Pair, ServingStats, compute, summed

log = logging.getLogger(__name__)

Values = dict[tuple[str, str], float | None]


@dataclass
class Source:
    """One `/metrics` endpoint and what it said last time."""

    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    previous: Snapshot | None = None


@dataclass(frozen=True)
class Round:
    """What one round measured and the datapoints it produced."""

    where: Where
    timestamp: float  # wall clock, seconds since the epoch
    serving: ServingStats
    gpus: list[GpuReading]
    values: Values  # cost and energy figures
    points: list[Datapoint]


async def resolve_identity(settings: AgentSettings) -> Identity:
    """Settings first; instance metadata for whatever they leave unset (when allowed)."""
    wanted = (settings.instance_id, settings.instance_type, settings.market, settings.asg_name,
              settings.region)
    found = Identity()
    if settings.imds and any(value is None for value in wanted):
        found = await asyncio.to_thread(imds_identity, settings.imds_url)
        if found.instance_id is None:
            log.warning("no EC2 instance metadata at %s; set the identity in settings",
                        settings.imds_url)
    return Identity(
        instance_id=settings.instance_id or found.instance_id,
        instance_type=settings.instance_type or found.instance_type,
        market=settings.market or found.market,
        asg_name=settings.asg_name or found.asg_name,
        region=settings.region or found.region,
    )


class Agent:
    def __init__(self, settings: AgentSettings, identity: Identity, *,
                 gpu: GpuCollector | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.identity = identity
        self._clock = clock
        self._wall = wall
        self._gpu = gpu
        self._cost = CostModel.for_instance_type(identity.instance_type,
                                                 identity.market or Market.ON_DEMAND)
        self._router = Source("router", settings.router_url + "/metrics", _auth(settings)) \
            if settings.router_url else None
        self._engines = [Source(f"engine{i}", url + "/metrics")
                         for i, url in enumerate(settings.engine_urls)]
        self._energy: tuple[float, float] | None = None  # (joules, at) at the last round
        self._fetcher = PageFetcher(settings.scrape_timeout_s, settings.scrape_max_bytes, clock)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-publish")
        self._outbox: Outbox | None = None
        self._round_error: str | None = None  # while rounds fail the same way
        self.status = AgentStatus(settings.interval_s, clock())

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        if self._gpu is not None:
            self._gpu.start()
            self.status.gpu_available = self._gpu.available
        if self.settings.publish:
            self._outbox = await self._on_worker(Outbox, self.settings, self.identity.region,
                                                 self.status, self._clock)

    async def close(self) -> None:
        """Flush what waits (bounded by `shutdown_flush_s`), then release everything, even
        when the flush fails."""
        try:
            if self._outbox is not None:
                await self._on_worker(self._outbox.flush, self.settings.shutdown_flush_s)
        finally:
            if self._outbox is not None:
                await self._on_worker(self._outbox.close)
            self._worker.shutdown(wait=True)
            self._fetcher.close()
            if self._gpu is not None:
                self._gpu.stop()

    async def _on_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # -- the loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run rounds on a fixed grid until `stop` is set."""
        interval = self.settings.interval_s
        next_at = self._clock()
        while not stop.is_set():
            await self._guarded_round()
            next_at += interval
            late = self._clock() - next_at
            if late > 0:  # overran one or more ticks: skip them, keep the grid
                next_at += math.ceil(late / interval) * interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), next_at - self._clock())

    async def _guarded_round(self) -> None:
        """A round whose failure is counted and logged, never the end of the loop."""
        try:
            await self.run_round()
        except Exception as exc:  # the loop's outer edge: the next round must still run
            self.status.round_errors_total += 1
            if repr(exc) != self._round_error:  # with its traceback, once while it repeats
                log.exception("round failed; the next one runs on time")
            self._round_error = repr(exc)
            return
        if self._round_error is not None:
            log.info("rounds work again")
            self._round_error = None

    async def run_round(self) -> Round:
        started = self._clock()
        result = await self.collect()
        if self._outbox is not None:
            await self._on_worker(self._outbox.deliver, result.points)
        self.status.rounds_total += 1
        self.status.last_round = summary(result)
        self.status.last_round_at = self._clock()
        self.status.last_round_duration_s = self.status.last_round_at - started
        return result

    # -- one round ----------------------------------------------------------------

    async def collect(self) -> Round:
        """Scrape, read and compute one round; nothing is stored or sent here."""
        sources = [s for s in (self._router, *self._engines) if s is not None]
        scraped = await asyncio.gather(*(self._scrape(s) for s in sources))
        pairs = {s.name: self._advance(s, snap) for s, snap in zip(sources, scraped, strict=True)}
        router = pairs.get("router", (None, None))
        engines = [pairs[s.name] for s in self._engines]
        serving = compute(router, engines)
        gpus = self._gpu.read() if self._gpu is not None else []
        values = self._cost_and_energy(serving, gpus)
        where = Where(self.identity.asg_name or "local", self.identity.instance_id,
                      self.identity.instance_type, self.settings.interval_s, self._model())
        timestamp = self._wall()
        measured = readings(serving, gpus, values)
        for name in self.status.values_left_out(nonfinite(measured)):
            log.warning("%s was NaN or infinite: left out (counted, said once)", name)
        return Round(where, timestamp, serving, gpus, values,
                     datapoints(where, timestamp, measured))

    async def _scrape(self, source: Source) -> Snapshot | None:
        loop = asyncio.get_running_loop()
        try:
            text = await loop.run_in_executor(None, self._fetcher.get, source.url,
                                              source.headers)
            snapshot = Snapshot.parse(text, self._clock())
        except (urllib3.exceptions.HTTPError, ScrapeError) as exc:
            if self.status.scrape_failed(source.name):  # say it once, not every round
                log.warning("scraping %s (%s) failed: %s", source.name, source.url, exc)
            return None
        if self.status.scrape_worked(source.name):
            log.info("scraping %s works again", source.name)
        return snapshot

    @staticmethod
    def _advance(source: Source, latest: Snapshot | None) -> Pair:
        """The pair to compute over; a failed scrape keeps the previous one for next time."""
        if latest is None:
            return (None, None)
        previous, source.previous = source.previous, latest
        return (previous, latest) if previous is not None else (None, None)

    def _model(self) -> str | None:
        if self.settings.model:
            return self.settings.model
        names = set().union(*(s.previous.label_values(VLLM_GENERATION_TOKENS, "model_name")
                              for s in self._engines if s.previous is not None))
        return names.pop() if len(names) == 1 else None

    def _cost_and_energy(self, serving: ServingStats, gpus: list[GpuReading]) -> Values:
        tokens_per_s = serving.generation_tokens_per_s
        energy_j, joules_per_token = None, None
        total = summed([g.energy_j for g in gpus])
        now = self._clock()
        if total is not None:
            if self._energy is not None and now > self._energy[1]:
                energy_j = total - self._energy[0]
                elapsed = now - self._energy[1]
                joules_per_token = joules_per_output_token(
                    energy_j, None if tokens_per_s is None else tokens_per_s * elapsed)
            self._energy = (total, now)
        return {
            ("CostPerHourUSD", "None"): self._cost.usd_per_hour,
            ("CostPerMillionOutputTokensUSD", "None"):
                self._cost.usd_per_million_output_tokens(tokens_per_s),
            ("GPUEnergyJoules", "None"): energy_j,
            ("JoulesPerOutputToken", "None"): joules_per_token,
        }


def summary(result: Round) -> dict[str, object]:
    """The round's figures as `/status` serves them (None where nothing was measured,
    or where it was NaN or infinite: JSON has no such numbers, and browsers refuse them)."""
    values = {name: _finite(value) for (name, _unit), value in result.values.items()}
    return {
        "at": result.timestamp,
        "instance_type": result.where.instance_type,
        "model": result.where.model,
        "serving": {k: v for k, v in result.serving.present().items() if math.isfinite(v)},
        "gpus": [{"index": g.index, "utilization_pct": _finite(g.utilization_pct),
                  "power_w": _finite(g.power_w),
                  "memory_used_bytes": _finite(g.memory_used_bytes),
                  "memory_total_bytes": _finite(g.memory_total_bytes),
                  "temperature_c": _finite(g.temperature_c)} for g in result.gpus],
        "cost_usd_per_hour": values.get("CostPerHourUSD"),
        "cost_usd_per_million_output_tokens": values.get("CostPerMillionOutputTokensUSD"),
        "joules_per_output_token": values.get("JoulesPerOutputToken"),
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _auth(settings: AgentSettings) -> dict[str, str]:
    key = settings.router_api_key
    return {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}
