"""Where a round's datapoints go: CloudWatch first, the on-disk buffer for the rest.

A round's datapoints go straight to CloudWatch when nothing older waits in
the buffer; only what CloudWatch did not take (an outage, throttling) is
written to disk, and every round behind a backlog waits there too, so the
oldest still leave first. Writing only what must wait means a full disk
costs nothing while CloudWatch is up, and an outage still loses nothing
while the disk works. When neither takes a round (an outage on a full or
read-only disk), its datapoints are counted as lost and that is logged once,
not every round. A buffer that cannot be opened at all (a state directory
that cannot be created, a full disk at start) is replaced by one in memory:
the agent publishes all the same, and only a restart loses what waits.

SQLite and boto3 block: every method of `Outbox` runs on the agent's one
worker thread, which also bounds each round's publishing so that draining a
long backlog never stalls collection. `OutboxThread` owns that thread and is
what the agent's loop awaits; an agent that does not publish
(`llmfleet agent --once`) gets `Unpublished` instead, and neither opens a
buffer nor starts a thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, Protocol, TypeVar

from agent.buffer import Datapoint, DatapointBuffer
from agent.publisher import Publisher
from agent.settings import AgentSettings
from agent.status import AgentState

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

# Up to 20,000 datapoints a round: a backlog drains ~300x faster than it grows.
PUBLISH_CALLS_PER_ROUND = 20
STORAGE_ERRORS = (sqlite3.OperationalError, OSError)  # a full or read-only disk


def make_cloudwatch(settings: AgentSettings, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # botocore's own retries are off: the publisher's backoff and buffer decide.
    config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2,
                    read_timeout=10)
    return boto3.client("cloudwatch", region_name=region,
                        endpoint_url=settings.cloudwatch_endpoint_url, config=config)


class Outbox:
    """The buffer and the publisher, and the rules between them; reports into `status`."""

    def __init__(self, settings: AgentSettings, region: str | None, status: AgentState,
                 clock: Callable[[], float]) -> None:
        self.buffer = _open_buffer(settings, status)
        self.publisher = Publisher(make_cloudwatch(settings, region), settings.namespace,
                                   self.buffer, clock=clock,
                                   max_backoff_s=settings.max_backoff_s)
        self._status = status
        self._clock = clock
        self._storage_error: str | None = None  # while the buffer cannot be written
        self.refresh_status()
        if status.buffered:
            log.info("%d datapoints from before a restart are waiting to be sent",
                     status.buffered)

    def deliver(self, points: list[Datapoint]) -> None:
        """Send the round (straight out when nothing older waits), keep what CloudWatch
        did not take, then drain the backlog."""
        if not len(self.buffer):
            points = self.publisher.send(points)
        if points:
            self._keep(points)
        self.publisher.publish(max_calls=PUBLISH_CALLS_PER_ROUND)
        self.refresh_status()

    def _keep(self, points: list[Datapoint]) -> None:
        try:
            dropped = self.buffer.add(points)
        except STORAGE_ERRORS as exc:
            # Behind a backlog they were not tried yet; after a failed try this returns
            # them at once (backing off). Either way, what is left has nowhere to go.
            lost = self.publisher.send(points)
            self._status.lost_total += len(lost)
            if self._storage_error is None:  # said once, not every round
                log.error("datapoints could not be stored (%s): rounds go straight to "
                          "CloudWatch; what it does not take is lost and counted", exc)
            self._storage_error = str(exc)
            return
        if self._storage_error is not None:
            log.info("the buffer takes datapoints again")
            self._storage_error = None
        if dropped:
            log.error("buffer full (%d datapoints): dropped the %d oldest",
                      self.buffer.max_points, dropped)

    def flush(self, budget_s: float) -> None:
        """Send what waits, for at most `budget_s`: the last chance before stopping."""
        deadline = self._clock() + budget_s
        # One try even while backing off: CloudWatch may be back, and there is no next round.
        retry = True
        left = len(self.buffer)
        while left and self._clock() < deadline and (retry or not self.publisher.backing_off):
            self.publisher.publish(max_calls=1, even_if_backing_off=retry)
            retry = False
            left, before = len(self.buffer), left
            if left >= before:  # no progress (nothing readable): do not spin to the deadline
                break
        self.refresh_status()
        if self._status.buffered:
            log.warning("stopping with %d datapoints on disk; they are sent after the restart",
                        self._status.buffered)

    def close(self) -> None:
        self.buffer.close()

    def refresh_status(self) -> None:
        stats, status = self.publisher.stats, self._status
        status.buffered = len(self.buffer)
        status.dropped_total = self.buffer.dropped_total
        status.corrupt_rows_total = self.buffer.corrupt_rows_total
        status.sent_total = stats.sent_total
        status.rejected_total = stats.rejected_total
        status.failed_calls_total = stats.failed_calls_total
        status.backing_off = self.publisher.backing_off


def _open_buffer(settings: AgentSettings, status: AgentState) -> DatapointBuffer:
    path, bound = settings.buffer_path, settings.buffer_max_points
    try:
        return DatapointBuffer(path, bound)
    except (sqlite3.Error, OSError) as exc:  # a corrupt file was moved aside already
        log.error("cannot open the buffer %s (%s): datapoints CloudWatch does not take "
                  "wait in memory, and a restart loses them", path, exc)
        status.buffer_on_disk = False
        return DatapointBuffer(None, bound)


class Delivery(Protocol):
    """Where the agent's loop hands each round's datapoints."""

    async def deliver(self, points: list[Datapoint]) -> None: ...

    async def close(self) -> None: ...


class Unpublished:
    """Publishing is off: a round's datapoints are only looked at."""

    async def deliver(self, points: list[Datapoint]) -> None:
        return None

    async def close(self) -> None:
        return None


class OutboxThread:
    """An `Outbox` on its own worker thread, awaited from the agent's loop."""

    def __init__(self, outbox: Outbox, worker: ThreadPoolExecutor, flush_s: float) -> None:
        self.outbox = outbox
        self._worker = worker
        self._flush_s = flush_s

    @classmethod
    async def open(cls, settings: AgentSettings, region: str | None, status: AgentState,
                   clock: Callable[[], float]) -> OutboxThread:
        """Open the buffer and the CloudWatch client on the worker that will use them."""
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-publish")
        try:
            outbox = await _on(worker, Outbox, settings, region, status, clock)
        except BaseException:
            worker.shutdown(wait=True)
            raise
        return cls(outbox, worker, settings.shutdown_flush_s)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn` on the worker thread, where the buffer's SQLite connection lives."""
        return await _on(self._worker, fn, *args, **kwargs)

    async def deliver(self, points: list[Datapoint]) -> None:
        await self.run(self.outbox.deliver, points)

    async def close(self) -> None:
        """Flush what waits (bounded by `shutdown_flush_s`), then release everything, even
        when the flush fails."""
        try:
            await self.run(self.outbox.flush, self._flush_s)
        finally:
            try:
                await self.run(self.outbox.close)
            finally:
                self._worker.shutdown(wait=True)


async def _on(worker: ThreadPoolExecutor, fn: Callable[P, T], *args: P.args,
              **kwargs: P.kwargs) -> T:
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(worker, call)
