"""Work repeated on a fixed interval for as long as the router runs.

Health checks, access-log flushes and the console's fleet samples each run as one
background task started in the lifespan hook and cancelled on shutdown; this is
that task, once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Periodic:
    """Await `tick()` every `interval_s` (after the first interval) until stopped."""

    def __init__(self, name: str, interval_s: float,
                 tick: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        self._interval_s = interval_s
        self._tick = tick
        self._task: asyncio.Task[None] | None = None

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
            await self._tick()
