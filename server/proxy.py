"""Forwarding one admitted request to an engine and its answer back to the client.

The hot path speaks to engines through `server.upstream`, a lean HTTP/1.1
pool: measured, it costs a fraction of aiohttp's client, which itself costs a
fraction of httpx's default transport (see BENCHMARKS.md).

Failure rules:
- Before any byte reached the client, a connection failure ejects the backend
  and the request is retried once on another healthy backend; an engine 503
  is retried the same way without ejecting (it may just be busy).
- Engine 4xx answers pass through untouched; other engine 5xx become 502.
- A stream that breaks midway ends with an SSE error event in OpenAI's shape.
  Only whole SSE events are forwarded, so that event never lands inside a
  half-sent one.
- A client that disconnects cancels the generator, whose `finally` closes the
  upstream connection; vLLM aborts the request when its client goes away.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.responses import Response, StreamingResponse

from server.accesslog import AccessLog
from server.backends import Backend, BackendPool
from server.errors import (
    APIError,
    NoHealthyBackend,
    UpstreamFailed,
    UpstreamTimeout,
    error_body,
)
from server.metrics import RouterMetrics
from server.protocol import Endpoint, ParsedRequest
from server.ratelimit import RateLimiter, Reservation
from server.upstream import (
    ConnectRefused,
    ConnectTimeout,
    Disconnected,
    ReadTimeout,
    Timeouts,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
)

log = logging.getLogger(__name__)
# Usage is the last object of an OpenAI answer; scanning for its two counters
# costs a tenth of parsing the whole body.
_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')

EVENT_END = b"\n\n"
NO_MODEL = "(none)"  # metric label for requests refused before a served model was known
MAX_PENDING_BYTES = 1 << 20


@dataclass(slots=True)
class Exchange:
    """Bookkeeping for one request, finished into metrics, limits and the access log."""

    request: ParsedRequest
    request_id: str
    key_id: str | None
    model: str
    reservation: Reservation
    started: float = field(default_factory=time.perf_counter)
    route_reason: str | None = None
    engine_request_id: str = ""
    backend: str | None = None
    status: str = "5xx"
    http_status: int = 0
    retried: bool = False
    ttft: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    streamed_events: int = 0


def _status_class(code: int) -> str:
    return f"{code // 100}xx"


class Proxy:
    """Sends requests upstream with one retry and streams answers back."""

    def __init__(self, pool: BackendPool, limiter: RateLimiter, metrics: RouterMetrics,
                 access_log: AccessLog, timeouts: Timeouts,
                 backend_api_key: str | None = None) -> None:
        self._pool = pool
        self._limiter = limiter
        self._metrics = metrics
        self._access_log = access_log
        self._timeouts = timeouts
        self._upstreams: dict[str, UpstreamPool] = {}
        self._auth = f"Bearer {backend_api_key}" if backend_api_key else None

    def _upstream(self, backend: Backend) -> UpstreamPool:
        upstream = self._upstreams.get(backend.url)
        if upstream is None:
            upstream = self._upstreams[backend.url] = UpstreamPool(backend.url, self._timeouts)
        return upstream

    def close(self) -> None:
        for upstream in self._upstreams.values():
            upstream.close()

    async def forward(self, ex: Exchange) -> Response:
        """Send `ex` upstream (retrying once) and build the client's response.

        Raises:
            NoHealthyBackend, Overloaded: from admission.
            UpstreamFailed, UpstreamTimeout: the engine could not be reached or hung.
        """
        failure: _Retryable | None = None
        tried: Backend | None = None
        for _attempt in range(2):
            try:
                backend = await self._acquire(ex.model, tried, failure)
            except NoHealthyBackend:
                if failure is None:
                    raise
                break
            if failure is not None:
                log.info("retrying %s on %s after: %s", ex.request_id, backend.url, failure.reason)
                failure.discard()
                ex.retried = True
                self._metrics.retries.labels(ex.model).inc()
            try:
                resp = await self._send(backend, ex)
            except _Retryable as exc:
                self._pool.release(backend)
                if exc.eject:
                    self._pool.eject(backend, exc.reason)
                failure, tried = exc, backend
                continue
            except BaseException:
                self._pool.release(backend)
                raise
            ex.backend = backend.url
            if ex.request.stream and resp.status == 200:
                return self._streaming(resp, backend, ex)
            try:
                return await self._buffered(resp, ex)
            finally:
                self._pool.release(backend)
        assert failure is not None
        return await self._gave_up(failure, ex)

    async def _gave_up(self, failure: _Retryable, ex: Exchange) -> Response:
        """Every attempt failed before a byte reached the client: say how."""
        if failure.response is not None:
            return await self._buffered(failure.response, ex)  # e.g. the engine's own 503
        if failure.timed_out:
            raise UpstreamTimeout(f"the engine did not accept the connection: {failure.reason}")
        raise UpstreamFailed(f"engine unreachable: {failure.reason}")

    async def _acquire(self, model: str, tried: Backend | None,
                       failure: _Retryable | None) -> Backend:
        """Prefer another backend for a retry; after a dropped (not refused)
        connection the same one will do, on a fresh connection."""
        try:
            return await self._pool.acquire(model, exclude=tried)
        except NoHealthyBackend:
            if failure is None or not failure.same_backend_ok:
                raise
            return await self._pool.acquire(model)

    async def _send(self, backend: Backend, ex: Exchange) -> UpstreamResponse:
        headers = {"content-type": "application/json",
                   "x-request-id": ex.engine_request_id or ex.request_id}
        if self._auth:
            headers["authorization"] = self._auth
        upstream = self._upstream(backend)
        try:
            resp = await upstream.post(ex.request.endpoint.value, ex.request.body, headers)
        except ConnectTimeout as exc:
            # Nothing was sent: another backend may take it. Not this one again, nor
            # ejected: a stalled engine accepts again once it catches up.
            raise _Retryable(f"connect timed out: {exc}", eject=False, timed_out=True) from exc
        except ReadTimeout as exc:
            raise UpstreamTimeout("the engine did not answer in time") from exc
        except ConnectRefused as exc:
            # Nobody listens: the engine is down. Take it out until a health check passes.
            raise _Retryable(str(exc), eject=True) from exc
        except Disconnected as exc:
            # Dropped before answering: usually a pooled connection the engine had just
            # closed. Retry without ejecting; a dead engine shows on the fresh connection.
            raise _Retryable(str(exc), eject=False, same_backend_ok=True) from exc
        if resp.status == 503:
            raise _Retryable("engine answered 503", eject=False, response=resp)
        return resp

    async def _buffered(self, resp: UpstreamResponse, ex: Exchange) -> Response:
        try:
            body = await resp.read()
        except BaseException as exc:
            # Closing (not releasing) drops the connection, which makes vLLM abort the
            # request: wanted on timeouts and failures, and when the client went away.
            resp.close()
            if isinstance(exc, ReadTimeout):
                raise UpstreamTimeout("the engine did not finish in time") from exc
            if isinstance(exc, UpstreamError):
                raise UpstreamFailed(f"the engine failed while answering: {exc}") from exc
            raise
        resp.release()
        status = resp.status
        if status >= 500 and status != 503:
            body = error_body(f"the engine answered {status}", "server_error",
                              "upstream_error", None)
            status = 502
        if status == 200:
            self._usage_from(body, ex)
        ex.http_status = status
        ex.status = _status_class(status)
        self.finish(ex)
        return Response(body, status_code=status, media_type=resp.content_type,
                        headers=self._headers(ex))

    def _streaming(self, resp: UpstreamResponse, backend: Backend,
                   ex: Exchange) -> StreamingResponse:
        headers = self._headers(ex)
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        return StreamingResponse(self._relay(resp, backend, ex), status_code=200,
                                 media_type="text/event-stream", headers=headers)

    async def _relay(self, resp: UpstreamResponse, backend: Backend,
                     ex: Exchange) -> AsyncIterator[bytes]:
        series = self._metrics.model(ex.model)
        ttft, itl = series.ttft, series.itl
        pending = b""
        last = 0.0
        clean = False
        ex.status = "cancelled"
        try:
            while (chunk := await resp.next_chunk()) is not None:
                now = time.perf_counter()
                if last:
                    itl.observe(now - last)
                else:
                    ex.ttft = now - ex.started
                    ttft.observe(ex.ttft)
                last = now
                pending += chunk
                cut = pending.rfind(EVENT_END)
                if cut < 0:
                    if len(pending) > MAX_PENDING_BYTES:
                        raise UpstreamFailed("engine sent an SSE event over 1 MiB")
                    continue
                events, pending = pending[:cut + 2], pending[cut + 2:]
                self._count_events(events, ex)
                yield events
            if pending:
                self._count_events(pending, ex)
                yield pending
            ex.status, ex.http_status, clean = "2xx", 200, True
        except (UpstreamError, UpstreamFailed) as exc:
            # Headers are gone already: all that is left is to say so in-band.
            log.warning("stream %s broke mid-way on %s: %r", ex.request_id, backend.url, exc)
            ex.status, ex.http_status = "5xx", 502
            message = "the engine failed mid-stream; the answer is incomplete"
            if isinstance(exc, ReadTimeout):
                message = "the engine stopped sending mid-stream; the answer is incomplete"
            payload = error_body(message, "server_error", "upstream_error", None)
            yield b"data: " + payload + EVENT_END
        finally:
            if clean:
                resp.release()
            else:
                resp.close()
            self._pool.release(backend)
            self.finish(ex)

    @staticmethod
    def _count_events(events: bytes, ex: Exchange) -> None:
        ex.streamed_events += events.count(b"data: ") - events.count(b"data: [DONE]")
        if b'"usage":{' in events or b'"usage": {' in events:
            for line in events.split(b"\n"):
                if line.startswith(b"data: {") and b'"usage"' in line:
                    Proxy._usage_from(line[6:], ex)

    @staticmethod
    def _usage_from(body: bytes, ex: Exchange) -> None:
        at = body.rfind(b'"usage"')
        if at < 0:
            return
        prompt = _PROMPT_TOKENS.search(body, at)
        completion = _COMPLETION_TOKENS.search(body, at)
        if prompt is not None:
            ex.prompt_tokens = int(prompt.group(1))
        if completion is not None:
            ex.completion_tokens = int(completion.group(1))

    @staticmethod
    def _headers(ex: Exchange) -> dict[str, str]:
        headers = {"x-request-id": ex.request_id, "x-llmfleet-model": ex.model}
        if ex.route_reason:
            headers["x-llmfleet-route"] = ex.route_reason
        return headers

    def refused(self, request_id: str, key_id: str | None, model: str, exc: APIError,
                started: float) -> None:
        """Count and log a request refused before it reached an engine."""
        self._metrics.model(model).count(f"{exc.status // 100}xx")
        if self._access_log.enabled:
            self._access_log.record({
                "request_id": request_id, "key_id": key_id, "model": model,
                "status": exc.status, "error": exc.code or exc.type,
                "latency_s": round(time.perf_counter() - started, 6)})

    def finish(self, ex: Exchange) -> None:
        """Record metrics, settle the token reservation and write the access log line."""
        latency = time.perf_counter() - ex.started
        series = self._metrics.model(ex.model)
        series.count(ex.status)
        series.latency.observe(latency)
        completion = ex.completion_tokens
        if completion is None and ex.request.stream and ex.streamed_events:
            # No usage in the stream: vLLM sends one token per content event, after
            # a role-only first event on chat.
            completion = max(0, ex.streamed_events - (ex.request.endpoint is Endpoint.CHAT))
        prompt = ex.prompt_tokens if ex.prompt_tokens is not None else 0
        if ex.prompt_tokens is not None:
            series.prompt_tokens.inc(prompt)
        if completion is not None:
            series.completion_tokens.inc(completion)
        used = 0  # refused or failed before generating: refund the whole reservation
        if ex.prompt_tokens is not None or completion is not None:
            used = (ex.prompt_tokens if ex.prompt_tokens is not None
                    else ex.request.prompt_tokens_estimate) + (completion or 0)
        self._limiter.reconcile(ex.reservation, used)
        if self._access_log.enabled:
            self._access_log.record({
                "request_id": ex.request_id, "engine_request_id": ex.engine_request_id,
                "key_id": ex.key_id, "model": ex.model,
                "backend": ex.backend, "status": ex.http_status or ex.status,
                "stream": ex.request.stream, "retried": ex.retried,
                "prompt_tokens": ex.prompt_tokens, "completion_tokens": completion,
                "ttft_s": None if ex.ttft is None else round(ex.ttft, 6),
                "latency_s": round(latency, 6), "route": ex.route_reason,
            })


class _Retryable(Exception):
    """A failure before any byte reached the client: safe to try another backend."""

    def __init__(self, reason: str, *, eject: bool, same_backend_ok: bool = False,
                 timed_out: bool = False, response: UpstreamResponse | None = None
                 ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.eject = eject
        self.same_backend_ok = same_backend_ok
        self.timed_out = timed_out
        self.response = response

    def discard(self) -> None:
        """Drop the failed attempt's response once another backend takes over."""
        if self.response is not None:
            self.response.close()
