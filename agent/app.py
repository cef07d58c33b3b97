"""The agent as a long-lived process: its loop, `/metrics`, `/health`, clean shutdown.

The loop runs on asyncio, beside the lifecycle watcher on EC2 (`agent.lifecycle`:
it drains the router when the instance is leaving the fleet); SIGTERM (systemd's
stop, an instance being scaled in) or SIGINT ends it after the round in progress,
then the buffer is flushed to CloudWatch for at most `shutdown_flush_s` and whatever could not
be sent stays on disk for the next start.

`/metrics` and `/health` are served by the standard library's threading
HTTP server, as `prometheus_client.start_http_server` does: two tiny
endpoints on 127.0.0.1 do not need an ASGI stack, and leaving uvicorn,
Starlette and httpx out keeps the agent's memory well under its 80 MB
budget (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel

from agent.lifecycle import LifecycleCollector, LifecycleState
from agent.runner import Agent
from agent.status import AgentState, StatusCollector

log = logging.getLogger(__name__)


class StatusServer:
    """`/metrics` (Prometheus text), `/health` and `/status` (JSON) from a background thread."""

    def __init__(self, status: AgentState, host: str, port: int,
                 lifecycle: LifecycleState | None = None) -> None:
        registry = CollectorRegistry()
        registry.register(StatusCollector(status))
        if lifecycle is not None:
            registry.register(LifecycleCollector(lifecycle))
        self._server = ThreadingHTTPServer((host, port), _handler(status, registry))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="agent-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _json(body: BaseModel) -> bytes:
    """The standard library's JSON text (its separators), as the agent always sent."""
    return json.dumps(body.model_dump(mode="json")).encode()


def _handler(status: AgentState, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif self.path == "/status":
                # The latest round's figures: what the router's console shows beside its own.
                self._send(200, "application/json", _json(status.status(time.monotonic())))
            elif self.path == "/health":
                health = status.health(time.monotonic())
                self._send(200 if health.status == "ok" else 503, "application/json",
                           _json(health))
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a line per health check is noise; the agent logs what matters

    return Handler


async def serve(agent: Agent, host: str, port: int) -> None:
    """Run until SIGTERM or SIGINT, then flush and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = agent.lifecycle
    server = StatusServer(agent.status, host, port, watcher.state if watcher else None)
    server.start()
    log.info("agent serving /metrics and /health on http://%s:%d", host, server.port)
    await agent.start()
    try:
        # The watcher ends on its own once the instance is released.
        await asyncio.gather(
            agent.run(stop),
            *([] if watcher is None else [watcher.run(stop, agent.settings.lifecycle_poll_s)]),
            *([] if agent.archive is None else [agent.archive.run(stop)]))
    finally:
        await agent.close()
        server.stop()
        s = agent.status
        log.info("agent stopped", extra={"fields": {
            "rounds": s.rounds_total, "sent": s.sent_total, "left_buffered": s.buffered,
            "dropped": s.dropped_total, "lost": s.lost_total,
            "round_errors": s.round_errors_total}})
