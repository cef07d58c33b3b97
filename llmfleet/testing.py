"""Helpers for tests and benchmarks: real uvicorn servers on ephemeral ports.

`ServerThread` runs any ASGI app under uvicorn in a background thread, bound
to a socket on 127.0.0.1 that the OS picked, so tests exercise real HTTP
(streaming included, which `httpx.ASGITransport` would buffer) without port
clashes.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn


def free_port() -> int:
    """A port that was free a moment ago (for child processes that bind themselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerThread:
    """Serve an ASGI app on 127.0.0.1:<ephemeral> in a thread until exited."""

    def __init__(self, app: Any, *, startup_timeout_s: float = 30.0) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # "auto" is uvloop where installed, as in production: transports differ.
        config = uvicorn.Config(app, log_config=None, access_log=False, loop="auto",
                                timeout_graceful_shutdown=2, lifespan="on")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run,
                                        kwargs={"sockets": [self._sock]}, daemon=True)
        self._startup_timeout_s = startup_timeout_s

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server thread failed to start")
            time.sleep(0.01)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
