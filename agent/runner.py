"""The agent's work, round after round: scrape, read the GPUs, price, buffer, publish.

Each round scrapes the router and every engine concurrently (`agent.sources`),
reads NVML, turns the differences since the previous round into serving
statistics, adds cost and energy figures (`agent.collect` does all of that),
and hands the datapoints to the outbox (`agent.outbox`: CloudWatch first, the
on-disk buffer for what must wait), on one worker thread since SQLite and
boto3 block; with publishing off there is no outbox and no thread. This module
owns the loop around them and its life cycle.

Rounds start on a fixed grid (`start + k * interval`), so a slow round does
not push every later one back; a round that overruns the next tick skips it
rather than running two back to back.

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

from agent.archive import build_sender
from agent.collect import Round, RoundCollector
from agent.cost import Identity, imds_identity
from agent.lifecycle import build_watcher
from agent.outbox import Delivery, OutboxThread, Unpublished
from agent.settings import AgentSettings
from agent.status import AgentState
from llmfleet.core.gpu import GpuCollector

log = logging.getLogger(__name__)


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
    """The loop: a round on every tick of the grid, its result recorded in `status`."""

    def __init__(self, settings: AgentSettings, identity: Identity, *,
                 gpu: GpuCollector | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.identity = identity
        self.status = AgentState(settings.interval_s, clock())
        self.collector = RoundCollector(settings, identity, self.status, gpu=gpu,
                                        clock=clock, wall=wall)
        self.outbox: Delivery = Unpublished()  # until start(), and for good when not publishing
        self.archive = build_sender(settings, identity, self.status)  # None unless asked
        self.lifecycle = build_watcher(settings, identity, archive=self.archive)  # None off EC2
        self._clock = clock
        self._round_error: str | None = None  # while rounds fail the same way

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.collector.start()
        if self.settings.publish:
            self.outbox = await OutboxThread.open(self.settings, self.identity.region,
                                                  self.status, self._clock)

    async def close(self) -> None:
        """Flush what waits (bounded by `shutdown_flush_s`), then release everything, even
        when the flush fails."""
        try:
            await self.outbox.close()
        finally:
            self.collector.close()

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
        """Collect a round, hand it to the outbox, record it for `/status`."""
        started = self._clock()
        result = await self.collect()
        await self.outbox.deliver(result.points)
        self.status.rounds_total += 1
        self.status.last_round = result.summary()
        self.status.last_round_at = self._clock()
        self.status.last_round_duration_s = self.status.last_round_at - started
        return result

    async def collect(self) -> Round:
        """Scrape, read and compute one round; nothing is stored or sent here. An instance
        not yet in the group's capacity (a warm pool's, `LifecycleState.in_group`) publishes
        its load figures under its own dimensions only."""
        in_group = self.lifecycle is None or self.lifecycle.state.in_group
        return await self.collector.collect(in_group=in_group)
