"""Work repeated on a fixed interval for as long as the router runs.

Health checks, access-log flushes and the console's fleet samples each run as one
background task started in the lifespan hook and cancelled on shutdown; this is
that task, once. A tick that raises is logged and the next tick runs as usual:
one unexpected answer (a `/v1/models` body of the wrong shape, say) must not stop
health checks for good and leave an ejected backend out forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    """Await `tick()` every `interval_s` (after the first interval) until stopped."""

    def __init__(self, name: str, interval_s: float,
                 tick: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        self._interval_s = interval_s
        self._tick = tick
        self._task: asyncio.Task[None] | None = None
        self.failures_total = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._tick()
            except Exception:
                # The edge of a background task: nobody awaits it, so log and go on.
                self.failures_total += 1
                log.exception("%s: one round failed; the next runs as usual", self._name)
