"""The router's HTTP edge: limits and timeouts on every connection, before any key is checked.

uvicorn with httptools parses whatever a client sends for as long as it sends
it. Measured against the router: a 1 MiB header line was answered 200; 20
connections each sending an unfinished 20 MiB header held 559 MiB; 500
connections sending headers at one byte a second, a chunked body at one byte a
second and silent connections all stayed open for as long as the test ran.
nginx (8 KiB a header line, 32 KiB in all) and Envoy (60 KiB, 100 headers)
refuse such input and time such connections out; so does this edge:

- the request line and headers: at most `max_header_bytes` in all, a line
  (name and value, or the URL) at most `MAX_LINE_BYTES`, at most
  `max_headers` headers (431 or 414 otherwise);
- time: the head must arrive within `header_timeout_s` of the connection
  opening or the request's first byte, the body within `body_timeout_s` of
  the head (408 otherwise, and the connection closes); a client that stops
  reading an answer for `send_timeout_s` is disconnected, which ends the
  request and frees its engine;
- connections: at most `max_connections` open at once; one more is answered
  503 and closed at once;
- keep-alive: an idle connection between requests stays open `keepalive_s`,
  which must outlast the load balancer's idle timeout (ALB: 600 s here), or
  the load balancer sends a request on a connection the router is closing and
  its client gets a 502 (8 of 12 trials at 5 s, uvicorn's default).

It is uvicorn's own httptools protocol with these checks added, so the
request path keeps its measured speed (see BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from server.errors import error_body

MAX_LINE_BYTES = 8 * 1024  # one header line or the URL (nginx's large_client_header_buffers)


@dataclass(frozen=True)
class EdgeLimits:
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 4096
    keepalive_s: float = 620.0
    send_timeout_s: float = 60.0


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request already answered."""


def _refusal(status: int, message: str, code: str) -> bytes:
    body = error_body(message, "invalid_request_error", code, None)
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"content-length: ", str(len(body)).encode(), b"\r\n",
                     b"connection: close\r\n\r\n", body])


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with size limits, deadlines and a connection cap.

    Deadlines belong to the request being served: none runs while another response
    is in flight (a pipelined request waits its turn, a stray CRLF is harmless), and
    none is armed at all for a request that arrives whole in one read, which is most
    of them (a timer per request cost ~3 us).
    """

    limits = EdgeLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._send_stall: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # of the request head being read; 0 between requests
        self._header_count = 0
        self._in_head = False  # a request's head has begun and is not complete
        self._in_body = False

    # -- connection ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            transport.write(_refusal(503, "too many connections; retry shortly",
                                     "server_overloaded"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._cancel_send_stall()
        if self.transport is not None:  # None: refused in connection_made
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused: read nothing more
        self._unset_keepalive_if_required()
        if not self._in_body:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # as uvicorn does
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if not self.transport.is_closing():  # else refused from a callback, answered
                self.logger.warning("Invalid HTTP request received.")
                self._refuse(400, "invalid HTTP request", "invalid_request")
            return
        if not self._in_body and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, f"request headers over {self.limits.max_header_bytes} bytes",
                         "request_header_fields_too_large")
        elif self._deadline is None:
            self._arm_if_waiting()

    # -- parser callbacks -----------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count, self._in_head = 0, True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_LINE_BYTES:
            self._refuse(414, f"the URL is over {MAX_LINE_BYTES} bytes", "uri_too_long")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if len(name) + len(value) > MAX_LINE_BYTES:
            self._refuse(431, f"a header line is over {MAX_LINE_BYTES} bytes",
                         "request_header_fields_too_large")
            raise _Refused
        if self._header_count > self.limits.max_headers:
            self._refuse(431, f"more than {self.limits.max_headers} headers",
                         "request_header_fields_too_large")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()  # the head's deadline is met; the body's starts after this read
        self._in_head, self._in_body = False, True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_body, self._head_bytes = False, 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request
        if self._deadline is None and not self.transport.is_closing():
            self._arm_if_waiting()

    # -- deadlines -----------------------------------------------------------------

    def _arm_if_waiting(self) -> None:
        """Start the deadline of a request that is only partly here, if it is the one
        being served (not one queued behind a response in flight)."""
        if self._in_body:
            if not self.pipeline:
                self._arm(self.limits.body_timeout_s, "the request body took too long")
        elif self._in_head and (self.cycle is None or self.cycle.response_complete):
            self._arm_head()

    def _arm_head(self) -> None:
        self._arm(self.limits.header_timeout_s, "the request head took too long")

    def _arm(self, delay_s: float, message: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay_s, self._refuse, 408, message,
                                              "request_timeout")

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer `status` unless another answer is being written, then close."""
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_refusal(status, message, code))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() now says the client left
            cycle.message_event.set()
        self.transport.close()

    # -- a client that stops reading ---------------------------------------------

    def pause_writing(self) -> None:
        """The client stopped reading: give it `send_timeout_s` to start again, else
        close, so that it does not hold an engine's sequence and slot for ever."""
        super().pause_writing()
        if self._send_stall is None:
            self._send_stall = self.loop.call_later(self.limits.send_timeout_s,
                                                    self._send_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_send_stall()

    def _cancel_send_stall(self) -> None:
        if self._send_stall is not None:
            self._send_stall.cancel()
            self._send_stall = None

    def _send_stalled(self) -> None:
        self._send_stall = None
        self.logger.info("closing a connection whose client stopped reading for %.0f s",
                         self.limits.send_timeout_s)
        self.transport.abort()


def edge_protocol(limits: EdgeLimits) -> type[GuardedProtocol]:
    """The protocol class for uvicorn's `http=` option, carrying `limits`."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})


def uvicorn_options(limits: EdgeLimits) -> dict[str, Any]:
    """What every server of the router passes to uvicorn (the CLI, `up`, the tests)."""
    # No websockets: the router serves none, and an upgrade would leave this protocol.
    return {"http": edge_protocol(limits), "timeout_keep_alive": limits.keepalive_s,
            "ws": "none"}
