"""A lean HTTP/1.1 client for the request path: one keep-alive pool per engine.

Why not aiohttp or httpx: measured under the router benchmark, aiohttp's
client cost about 75 us of CPU per proxied request, more than all the router's
features together (httpx's default transport about 1,500 us). The router
needs little of a general client: POST a body it already has as bytes to a
known host, read a status, a content type and a body that may be chunked and
streamed. This module does exactly that on an asyncio protocol, with
httptools (uvicorn's C parser) doing the HTTP parsing and chunked decoding.

Failures surface as distinct exceptions, because the proxy's retry policy
depends on where a request failed: `ConnectRefused` (nobody listens),
`ConnectTimeout` (nothing sent), `Disconnected` (the connection dropped)
and `ReadTimeout` (the engine went silent). Whether an answer had begun is
known to the caller from where the exception is raised: `post` (before the
headers) or the body reads (after).

Connections are reused LIFO, so the warmest socket goes first, and dropped
once idle for `keepalive_s` (keep that below the engine's own keep-alive).
A response that was not read to its end closes its connection: that is how
a cancelled request tells vLLM to stop generating.

An answer belongs to exactly one request, or the connection goes. Found with a
misbehaving engine stub, each of these once handed bytes to the wrong request:
informational (1xx) answers are skipped; bytes that arrive while no answer is
expected (after a complete one, or on an idle pooled connection) discard the
connection; a body without a length ends at the connection's close; and an
answer's head is capped at `MAX_HEAD_BYTES` (httptools joins header pieces in
Python, so a 16 MB header once held the event loop for 5 s).

A dropped connection is `StaleConnection` when it had sat idle in the pool
for `STALE_AFTER_IDLE_S` or more (the engine may have closed it as idle just
as the request went out, so the request cannot have been read), and plain
`Disconnected` otherwise: a new connection, or one busy a moment ago, means
the engine took the request and died, and the proxy must not hand it to
another engine. Under load nearly every connection is reused, so "reused"
alone would have retried most crashes.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import cast

import httptools

MAX_BUFFER_BYTES = 1 << 20  # pause reading from the engine beyond this
MAX_HEAD_BYTES = 64 * 1024  # an answer's status line and headers (Envoy: 60 KiB)
# An engine closes a connection for idleness only after it sat idle a while (vLLM: 5 s);
# a drop on one that was busy a moment ago means the engine had the request.
STALE_AFTER_IDLE_S = 1.0


class UpstreamError(Exception):
    """Base of the client's failures."""


class ConnectRefused(UpstreamError):
    pass


class ConnectTimeout(UpstreamError):
    pass


class Disconnected(UpstreamError):
    pass


class StaleConnection(Disconnected):
    """A connection that sat idle dropped before any answer: the engine closed it as idle,
    and the request never got through."""


class ReadTimeout(UpstreamError):
    pass


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    read_s: float  # silence before an answer's head, and within a non-streamed answer
    keepalive_s: float
    stream_idle_s: float = 30.0  # silence once a stream has begun


class UpstreamResponse:
    """Status and headers as soon as they arrive; the body as it arrives."""

    __slots__ = ("_buffered", "_chunks", "_conn", "_done", "_error", "_last_data", "_loop",
                 "_read_timeout", "_timer", "_waiter", "content_type", "status")

    def __init__(self, conn: _Connection, read_timeout: float) -> None:
        self._conn = conn
        self._read_timeout = read_timeout
        self._loop = asyncio.get_running_loop()
        self._last_data = self._loop.time()
        # One idle timer per response, re-armed from the last data: arming a timer on
        # every wait cost microseconds per streamed token.
        self._timer: asyncio.TimerHandle | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.content_type = "application/json"

    # -- fed by the protocol ----------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        self._last_data = self._loop.time()
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > MAX_BUFFER_BYTES:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if not self._done:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the proxy --------------------------------------------------------

    async def _wait(self) -> None:
        self._waiter = waiter = self._loop.create_future()
        if self._timer is None:
            self._arm()
        try:
            await waiter
        finally:
            self._waiter = None

    def _arm(self) -> None:
        due = max(self._loop.time(), self._last_data + self._read_timeout)
        self._timer = self._loop.call_at(due, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self._waiter is None:
            return  # nobody waiting: the next wait re-arms
        if self._loop.time() - self._last_data >= self._read_timeout:
            _expire(self._waiter)
        else:
            self._arm()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def limit_silence(self, seconds: float) -> None:
        """From now on, end the answer with ReadTimeout after `seconds` without data
        (a stream that has begun: an engine that stalls must not hold it for the whole
        read timeout)."""
        self._read_timeout = seconds
        if self._timer is not None:
            self._disarm()
            if self._waiter is not None:
                self._arm()

    async def next_chunk(self) -> bytes | None:
        """The next piece of body, or None at its end.

        Raises:
            Disconnected, ReadTimeout: the engine dropped the connection or went silent.
        """
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return None
            try:
                await self._wait()
            except TimeoutError as exc:
                raise ReadTimeout("the engine sent nothing in time") from exc
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= MAX_BUFFER_BYTES // 2:
            self._conn.resume()
        return chunk

    async def read(self) -> bytes:
        parts = []
        while (chunk := await self.next_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Hand the connection back: reused if the answer was read to its end."""
        self._disarm()
        self._conn.finish(reusable=self._done and self._error is None and not self._chunks)

    def close(self) -> None:
        """Drop the connection (an engine aborts a request whose client went away)."""
        self._disarm()
        self._conn.finish(reusable=False)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One keep-alive TCP connection to an engine, parsing answers with httptools."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._response: UpstreamResponse | None = None
        self._headers_seen: asyncio.Future[None] | None = None
        self._keep_alive = True
        self._paused = False
        # Per answer: expected at all, its head's size, whether its head is complete, an
        # informational one to skip, and whether its body has a length (else EOF ends it).
        self._awaiting = False
        self._head_bytes = 0
        self._head_done = False
        self._informational = False
        self._framed = False
        self._content_type = "application/json"
        self.lost = False
        self.idle_since = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._awaiting:
            self._discard("the engine sent bytes while no answer was expected")
            return
        if not self._head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._discard(f"unparsable answer from the engine: {exc!r}")
            return
        if not self._head_done and self._head_bytes > MAX_HEAD_BYTES:
            self._discard(f"the engine's answer head is over {MAX_HEAD_BYTES} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and self._awaiting and self._head_done and not self._framed \
                and self._response is not None:
            # A body without a length ends with the connection: an orderly close, not a
            # reset, which may have cut it.
            self._response._finish()
            self._awaiting = False
        self._lose(Disconnected("the engine closed the connection"))

    def _discard(self, why: str) -> None:
        self._lose(Disconnected(why))
        self.abort()

    # -- httptools callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self._awaiting:
            # A second answer behind a complete one: stop before it reaches anyone.
            raise httptools.HttpParserError("a second answer to one request")
        self._informational = False
        self._framed = False
        self._content_type = "application/json"

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self._content_type = value.decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._informational = True  # e.g. 100 Continue: the real answer follows
            return
        self._head_done = True
        if status in (204, 304):
            self._framed = True  # no body, whatever the headers say
        self._keep_alive = self._parser.should_keep_alive()
        if self._response is not None:
            self._response.status = status
            self._response.content_type = self._content_type
        if self._headers_seen is not None and not self._headers_seen.done():
            self._headers_seen.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            return
        self._awaiting = False
        if self._response is not None:
            self._response._finish()

    # -- used by the pool and the response -------------------------------------------

    def _lose(self, error: Disconnected) -> None:
        self.lost = True
        if self._headers_seen is not None and not self._headers_seen.done():
            self._headers_seen.set_exception(error)
        if self._response is not None:
            self._response._fail(error)

    async def send(self, head: bytes, body: bytes, read_timeout: float) -> UpstreamResponse:
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        response = self._response = UpstreamResponse(self, read_timeout)
        self._headers_seen = seen = loop.create_future()
        self._awaiting, self._head_done, self._head_bytes = True, False, 0
        self._transport.writelines((head, body))
        timer = loop.call_later(read_timeout, _expire, seen)
        try:
            await seen
        except TimeoutError as exc:
            self.abort()
            raise ReadTimeout("the engine did not answer in time") from exc
        finally:
            timer.cancel()
        return response

    def pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def finish(self, *, reusable: bool) -> None:
        self._response = None
        self._headers_seen = None
        if reusable and self._keep_alive and not self.lost and not self._awaiting:
            self._pool.put_back(self)
        else:
            self.abort()

    def abort(self) -> None:
        self.lost = True
        if self._transport is not None:
            self._transport.abort()


class UpstreamPool:
    """Keep-alive connections to one engine, and the request call."""

    def __init__(self, base_url: str, timeouts: Timeouts) -> None:
        scheme, _, rest = base_url.partition("://")
        if scheme != "http":
            raise ValueError(f"{base_url}: the request path speaks plain HTTP to engines")
        hostport = rest.split("/", 1)[0]
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
        self.host, self.port = host.strip("[]"), int(port)
        self._host_header = hostport.encode()
        self._timeouts = timeouts
        self._idle: list[_Connection] = []
        self._closed = False

    def put_back(self, conn: _Connection) -> None:
        if self._closed:  # its engine left the pool: nothing will reuse the connection
            conn.abort()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.append(conn)

    async def _connection(self) -> tuple[_Connection, float | None]:
        """A live connection, and how long it had been idle (None: it is new)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        oldest = now - self._timeouts.keepalive_s
        while self._idle:
            conn = self._idle.pop()
            if not conn.lost and conn.idle_since > oldest:
                return conn, now - conn.idle_since
            conn.abort()
        try:
            async with asyncio.timeout(self._timeouts.connect_s):
                _, conn = await loop.create_connection(lambda: _Connection(self), self.host,
                                                       self.port)
        except TimeoutError as exc:
            raise ConnectTimeout(f"no connection to {self.host}:{self.port} in "
                                 f"{self._timeouts.connect_s} s") from exc
        except OSError as exc:
            raise ConnectRefused(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn, None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> UpstreamResponse:
        """Send a POST and wait for the answer's status line and headers.

        Raises:
            ConnectRefused, ConnectTimeout, ReadTimeout.
            StaleConnection: a connection idle a while dropped before answering (safe to retry).
            Disconnected: a fresh connection dropped (the engine may have the request).
        """
        head = [f"POST {path} HTTP/1.1\r\n".encode(), b"host: ", self._host_header,
                b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n"]
        for name, value in headers.items():
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        head.append(b"\r\n")
        conn, idle_s = await self._connection()
        try:
            return await conn.send(b"".join(head), body, self._timeouts.read_s)
        except Disconnected as exc:
            conn.abort()
            if idle_s is not None and idle_s >= STALE_AFTER_IDLE_S:
                raise StaleConnection(f"{exc} (after {idle_s:.1f} s idle)") from exc
            raise
        except BaseException:
            conn.abort()
            raise

    def close(self) -> None:
        """Drop the idle connections, and those handed back from now on."""
        self._closed = True
        while self._idle:
            self._idle.pop().abort()
