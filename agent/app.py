"""The agent as a long-lived process: its loop, `/metrics`, `/health`, clean shutdown.

The loop runs as a task inside the ASGI lifespan, so uvicorn's signal
handling is the agent's: SIGTERM (systemd's stop, an instance being
scaled in) ends the loop after the round in progress, flushes the buffer to
CloudWatch for at most `shutdown_flush_s`, and leaves whatever could not be
sent on disk for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.runner import Agent
from agent.status import StatusCollector

log = logging.getLogger(__name__)


def create_app(agent: Agent) -> Starlette:
    registry = CollectorRegistry()
    registry.register(StatusCollector(agent.status))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        await agent.start()
        loop = asyncio.create_task(agent.run(stop), name="agent-loop")
        try:
            yield
        finally:
            stop.set()
            await loop
            await agent.close()
            status = agent.status
            log.info("agent stopped", extra={"fields": {
                "rounds": status.rounds_total, "sent": status.sent_total,
                "left_buffered": status.buffered, "dropped": status.dropped_total}})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def health(request: Request) -> Response:
        now = time.monotonic()
        body = agent.status.as_json(now)
        return JSONResponse(body, status_code=200 if agent.status.healthy(now) else 503)

    return Starlette(routes=[Route("/metrics", metrics), Route("/health", health)],
                     lifespan=lifespan)
