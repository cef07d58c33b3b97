"""Helpers for tests and benchmarks: real uvicorn servers on ephemeral ports.

`ServerThread` runs any ASGI app under uvicorn in a background thread, bound
to a socket on 127.0.0.1 that the OS picked, so tests exercise real HTTP
(streaming included, which `httpx.ASGITransport` would buffer) without port
clashes. `RawEngine` answers at the byte level, for the protocol faults that
no HTTP framework will produce.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn


class ServerThread:
    """Serve an ASGI app on 127.0.0.1:<ephemeral> in a thread until exited."""

    def __init__(self, app: Any, *, startup_timeout_s: float = 30.0,
                 **uvicorn_options: Any) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # "auto" is uvloop where installed, as in production: transports differ.
        config = uvicorn.Config(app, log_config=None, access_log=False, loop="auto",
                                timeout_graceful_shutdown=2, lifespan="on", **uvicorn_options)
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


def read_http_request(sock: socket.socket, limit: int = 1 << 20) -> bytes | None:
    """One request's head and body from a blocking socket; None at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > limit:
            raise ValueError("request head too large")
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body


# What a scripted answer does with the connection: write raw bytes, then keep it open
# for the next request (True) or close it (False).
Answer = Callable[[socket.socket], bool]


class RawEngine:
    """A misbehaving engine at the byte level: for faults no HTTP framework will send.

    GET /health and /v1/models get sane answers (so a router's health checks pass);
    each POST is answered by the next function in `answers` (the last one repeats),
    which writes whatever bytes the test wants: a stray `100 Continue`, bytes after a
    complete answer, a close-delimited body, a dropped connection.
    """

    def __init__(self, answers: list[Answer], model: str = "fake-model") -> None:
        self._answers = answers
        self._listing = json.dumps({"object": "list", "data": [{"id": model}]}).encode()
        self.posts = 0
        self.connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RawEngine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while (request := read_http_request(conn)) is not None:
                    if not self._answer(conn, request):
                        return
            except OSError:
                return

    def _answer(self, conn: socket.socket, request: bytes) -> bool:
        if request.startswith(b"GET "):
            body = self._listing if b" /v1/models " in request.split(b"\r\n", 1)[0] else b"{}"
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            return True
        answer = self._answers[min(self.posts, len(self._answers) - 1)]
        self.posts += 1
        return answer(conn)


def json_answer(payload: object, *, status: str = "200 OK", before: bytes = b"",
                after: bytes = b"", pause_s: float = 0.05) -> Answer:
    """An answer with `before` sent first (then a pause, so that it arrives alone) and
    `after` right behind the body."""
    body = json.dumps(payload).encode()
    head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()

    def answer(conn: socket.socket) -> bool:
        if before:
            conn.sendall(before)
            time.sleep(pause_s)
        conn.sendall(head + body + after)
        return True

    return answer


def hang_up(conn: socket.socket) -> bool:
    """An answer that is no answer: the engine closes the connection."""
    return False
