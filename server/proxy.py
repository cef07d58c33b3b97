"""Forwarding one admitted request to an engine and its answer back to the client.

The hot path speaks to engines through `server.upstream`, a lean HTTP/1.1
pool: measured, it costs a fraction of aiohttp's client, which itself costs a
fraction of httpx's default transport (see BENCHMARKS.md).

Failure rules, before any byte reached the client. Only what cannot have
reached an engine's scheduler is retried (once), so that a request which
crashes an engine is not sent on to crash a second one, and no GPU work is
done twice and charged once:
- a refused connection ejects the backend and retries on another;
- a pooled connection that had sat idle and dropped before the answer (the
  engine closed it as idle just as the request went out) retries without
  ejecting, on the same backend if it is alone;
- a connect timeout (a stalled engine) retries on another backend only;
- an engine 503 (it refused the work) retries on another backend, else passes through;
- any other connection dropped before the answer is a 502: the engine had the
  request and died with it;
- a peer pool (`Backend.pool`) is a load balancer in front of routers: its own 503 (not
  JSON: no router wrote it; the pool has no healthy router) ejects the peer and retries, as
  a refused connection does; its own 502 or 504 (a router there failed or timed out with
  the request) is the engine's 502 or 504 (work may have been done);
- a peer router's 503 (draining, overloaded, its engine just gone) is retried once on the
  same peer, which the load balancer sends to another of that pool's routers;
- when the model has no other backend and the policy chose it for the alias, the policy
  chooses again without it (`CompletionService.reroute`) and the retry goes there rather
  than to the same peer.
After that:
- Engine 4xx answers pass through untouched; other engine 5xx become 502.
- A non-streamed answer is held whole only up to `MAX_BUFFERED_ANSWER_BYTES`; a
  larger one (many choices, logprobs, echo) is relayed as it arrives, so that
  64 requests in flight per engine cannot exhaust the router's memory (a 200 MB
  answer once raised its peak by 369 MB). If the engine fails after such an
  answer has begun, the client's connection is cut: a JSON body cannot carry an
  error once its head is sent.
- A stream that breaks midway ends with an SSE error event in OpenAI's shape.
  A begun stream silent for `stream_idle_s` ends so too, and when all of its
  engine's streams are silent the engine is ejected until a health check passes.
  Only whole SSE events are forwarded, so that event never lands inside a
  half-sent one.
- A client that disconnects cancels the generator, whose `finally` closes the
  upstream connection; vLLM aborts the request when its client goes away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import Response, StreamingResponse

from llmfleet.core.wire.pools import POOL_HEADER
from server.accounting import Accounting, Exchange, count_events, keep_answer, usage_from
from server.backends import Backend, BackendPool
from server.errors import NoHealthyBackend, UpstreamFailed, UpstreamTimeout, error_body
from server.metrics import RouterMetrics
from server.outcome import BROKEN_MIDWAY, Outcome
from server.upstream import (
    ConnectRefused,
    ConnectTimeout,
    Disconnected,
    ReadTimeout,
    StaleConnection,
    Timeouts,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
)

log = logging.getLogger(__name__)

EVENT_END = b"\n\n"
MAX_PENDING_BYTES = 1 << 20
MAX_BUFFERED_ANSWER_BYTES = 1 << 20
USAGE_TAIL_BYTES = 4096  # usage is the last object of an answer

# Chooses another model for an exchange whose model failed (CompletionService.reroute).
Reroute = Callable[[Exchange, str], bool]


class AnswerCut(Exception):
    """An engine failed in the middle of a relayed answer; the client's connection must
    close without the body's end, so that the client sees it incomplete."""


class Proxy:
    """Sends requests upstream with one retry and streams answers back."""

    def __init__(self, pool: BackendPool, accounting: Accounting, metrics: RouterMetrics,
                 timeouts: Timeouts, backend_api_key: str | None = None) -> None:
        self._pool = pool
        self._accounting = accounting
        self._metrics = metrics
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

    def forget(self, url: str) -> None:
        """The backend at `url` left the pool (drained): close its connections."""
        upstream = self._upstreams.pop(url, None)
        if upstream is not None:
            upstream.close()

    async def forward(self, ex: Exchange, reroute: Reroute | None = None) -> Response:
        """Send `ex` upstream (retrying once, on another model if `reroute` picks one)
        and build the client's response.

        Raises:
            NoHealthyBackend, Overloaded: from admission.
            UpstreamFailed, UpstreamTimeout: the engine could not be reached or hung.
        """
        failure: _Retryable | None = None
        tried: Backend | None = None
        for _attempt in range(2):
            try:
                backend = await self._acquire(ex, tried, failure, reroute)
            except NoHealthyBackend:
                if failure is None:
                    raise
                break
            if failure is not None:
                log.info("retrying %s on %s after: %s", ex.request_id, backend.label,
                         failure.reason)
                failure.discard()
                ex.retried = True
                self._metrics.retries.labels(ex.model).inc()
            try:
                resp = await self._send(backend, ex)
            except _Retryable as exc:
                ex.reached_engine = False  # refused or never sent: no engine did any work
                self._pool.release(backend)
                if exc.eject:
                    self._pool.eject(backend, exc.shown)
                failure, tried = exc, backend
                continue
            except BaseException:
                self._pool.release(backend)
                raise
            ex.backend = backend.label
            if ex.request.stream and resp.status == 200:
                return self._streaming(resp, backend, ex)
            return await self._answer(resp, ex, backend)
        assert failure is not None
        return await self._gave_up(failure, ex)

    async def _gave_up(self, failure: _Retryable, ex: Exchange) -> Response:
        """Every attempt failed before a byte reached the client: say how."""
        if failure.response is not None:
            return await self._answer(failure.response, ex)  # e.g. the engine's own 503
        # The reason names engines' addresses: for the log, not for the client.
        log.warning("%s: giving up after: %s", ex.request_id, failure.reason)
        if failure.timed_out:
            raise UpstreamTimeout("no engine accepted the connection in time")
        if failure.unavailable:
            raise NoHealthyBackend(f"no healthy backend serves model '{ex.model}'",
                                   retry_after=1)
        raise UpstreamFailed("no engine could be reached")

    async def _acquire(self, ex: Exchange, tried: Backend | None,
                       failure: _Retryable | None, reroute: Reroute | None) -> Backend:
        """Prefer another backend for a retry; after a dropped (not refused)
        connection the same one will do, on a fresh connection; with none left for the
        model, another model if the policy chose this one."""
        try:
            try:
                return await self._pool.acquire(ex.model, exclude=tried, local_only=ex.hop,
                                                **self._admission(ex))
            except NoHealthyBackend:
                if failure is None:
                    raise
                if failure.same_backend_ok:
                    return await self._pool.acquire(ex.model, local_only=ex.hop,
                                                    **self._admission(ex))
                if reroute is None or not reroute(ex, ex.model):
                    raise
                return await self._pool.acquire(ex.model, local_only=ex.hop,
                                                **self._admission(ex))
        except NoHealthyBackend:
            raise  # the caller may still pass the failed attempt's answer on
        except BaseException:  # overloaded, or the client left: that answer is nobody's
            if failure is not None:
                failure.discard()
            raise

    @staticmethod
    def _admission(ex: Exchange) -> dict[str, Any]:
        """What the pool weighs besides the model: the prompt's prefix (cache-aware
        balancing) and its key and weight (the fair queue)."""
        return {"prefix": ex.request.prefix, "key": ex.key_id or "", "weight": ex.weight}

    def _request_headers(self, backend: Backend, ex: Exchange) -> dict[str, str]:
        """An engine gets the engine key; a peer pool's router the client's own
        credentials (it checks the key itself) and the pool's name, never the engine key."""
        headers = {"content-type": "application/json",
                   "x-request-id": ex.engine_request_id or ex.request_id}
        if backend.pool is not None:
            headers[POOL_HEADER] = backend.pool
            if ex.credentials:
                headers["authorization"] = ex.credentials
        elif self._auth:
            headers["authorization"] = self._auth
        return headers

    async def _send(self, backend: Backend, ex: Exchange) -> UpstreamResponse:
        headers = self._request_headers(backend, ex)
        upstream = self._upstream(backend)
        # Counted as read by the engine unless the failure proves otherwise: a client that
        # hangs up while the engine is still on its prompt leaves from inside post().
        ex.reached_engine = True
        # Another pool's router serves it, and keeps its record in the archive; set before
        # the post, whose failures (a timeout, the client leaving) end the exchange here too.
        ex.via_peer = backend.pool is not None
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
            raise _Retryable(str(exc), eject=True, shown="connection refused") from exc
        except StaleConnection as exc:
            # An idle pooled connection the engine had just closed. Retry without
            # ejecting; a dead engine shows on the fresh connection.
            raise _Retryable(str(exc), eject=False, same_backend_ok=True) from exc
        except Disconnected as exc:
            log.warning("%s: %s dropped the connection before answering: %s",
                        ex.request_id, backend.label, exc)
            raise UpstreamFailed("the engine closed the connection before answering") from exc
        if backend.pool is not None and not resp.content_type.startswith("application/json"):
            self._balancer_failure(backend, resp)
        if resp.status == 503:
            # A peer pool has other routers behind its load balancer: the same peer again,
            # unless the alias may go to another model instead.
            again = backend.pool is not None and ex.route_reason is None
            raise _Retryable("engine answered 503", eject=False, response=resp,
                             same_backend_ok=again)
        return resp

    @staticmethod
    def _balancer_failure(backend: Backend, resp: UpstreamResponse) -> None:
        """A peer's load balancer answered itself (a router answers JSON): 503, no healthy
        router in that pool; 502 or 504, the router it chose failed or timed out with the
        request. Its page is not an answer in OpenAI's shape.

        Raises:
            _Retryable: 503 (the peer is out until a health check passes).
            UpstreamFailed, UpstreamTimeout: 502, 504.
        """
        if resp.status not in (502, 503, 504):
            return
        resp.close()
        if resp.status == 503:
            raise _Retryable(f"pool {backend.pool} answered 503", eject=True, unavailable=True,
                             shown="its load balancer answered 503: no healthy router")
        if resp.status == 504:
            raise UpstreamTimeout(f"pool {backend.pool} did not answer in time")
        raise UpstreamFailed(f"pool {backend.pool} failed while answering")

    async def _answer(self, resp: UpstreamResponse, ex: Exchange,
                      backend: Backend | None = None) -> Response:
        """A non-streamed answer: whole when small, relayed once it outgrows the buffer.

        Frees `backend`'s slot when the answer is done (the relay frees it at its end).
        """
        parts: list[bytes] = []
        size = 0
        relayed = False
        replaced = resp.status >= 500 and resp.status != 503  # the body is not passed on
        try:
            while (chunk := await resp.next_chunk()) is not None:
                if replaced:
                    continue
                parts.append(chunk)
                size += len(chunk)
                if size > MAX_BUFFERED_ANSWER_BYTES:
                    relayed = True
                    return self._relayed_answer(resp, parts, backend, ex)
        except BaseException as exc:
            # Closing (not releasing) drops the connection, which makes vLLM abort the
            # request: wanted on timeouts and failures, and when the client went away.
            resp.close()
            if isinstance(exc, ReadTimeout):
                raise UpstreamTimeout("the engine did not finish in time") from exc
            if isinstance(exc, UpstreamError):
                log.warning("%s: the engine failed while answering: %s", ex.request_id, exc)
                raise UpstreamFailed("the engine failed while answering") from exc
            raise
        finally:
            if backend is not None and not relayed:
                self._pool.release(backend)
        resp.release()
        body = b"".join(parts)
        status = resp.status
        if replaced:
            body = error_body(f"the engine answered {status}", "server_error",
                              "upstream_error", None)
            status = 502
        if status == 200:
            usage_from(body, ex)
            keep_answer(ex, body)
        self._accounting.finish(ex, Outcome.answered(status))
        return Response(body, status_code=status, media_type=resp.content_type,
                        headers=self._headers(ex))

    def _relayed_answer(self, resp: UpstreamResponse, head: list[bytes],
                        backend: Backend | None, ex: Exchange) -> StreamingResponse:
        ex.answer = None  # over the buffer: too large for the archive to keep
        return StreamingResponse(self._relay_answer(resp, head, backend, ex),
                                 status_code=resp.status, media_type=resp.content_type,
                                 headers=self._headers(ex))

    async def _relay_answer(self, resp: UpstreamResponse, head: list[bytes],
                            backend: Backend | None, ex: Exchange) -> AsyncIterator[bytes]:
        tail = b"".join(head)[-USAGE_TAIL_BYTES:]
        clean = False
        outcome = Outcome.client_left()  # unless the answer ends first
        try:
            for part in head:
                yield part
            head.clear()
            while (chunk := await resp.next_chunk()) is not None:
                tail = chunk[-USAGE_TAIL_BYTES:] if len(chunk) >= USAGE_TAIL_BYTES \
                    else (tail + chunk)[-USAGE_TAIL_BYTES:]
                yield chunk
            clean = True
            if resp.status == 200:
                usage_from(tail, ex)
            outcome = Outcome.answered(resp.status)
        except UpstreamError as exc:
            log.warning("%s: the engine failed mid-answer on %s: %s", ex.request_id,
                        ex.backend, exc)
            outcome = BROKEN_MIDWAY
            raise AnswerCut(str(exc)) from exc
        finally:
            if clean:
                resp.release()
            else:
                resp.close()
            if backend is not None:
                self._pool.release(backend)
            self._accounting.finish(ex, outcome)

    def _streaming(self, resp: UpstreamResponse, backend: Backend,
                   ex: Exchange) -> StreamingResponse:
        headers = self._headers(ex)
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        return StreamingResponse(self._relay(resp, backend, ex), status_code=200,
                                 media_type="text/event-stream", headers=headers)

    async def _relay(self, resp: UpstreamResponse, backend: Backend,
                     ex: Exchange) -> AsyncIterator[bytes]:
        itl = self._metrics.model(ex.model).itl
        pending = b""
        last = 0.0
        clean = False
        waiting = _EngineWait(backend)
        outcome = Outcome.client_left()  # unless the stream ends or breaks first
        try:
            while (chunk := await resp.next_chunk()) is not None:
                now = time.perf_counter()
                if last:
                    itl.observe(now - last)
                else:
                    self._began(resp, ex, now)
                self._pool.progress(backend, now)
                last = now
                pending += chunk
                cut = pending.rfind(EVENT_END)
                if cut < 0:
                    if len(pending) > MAX_PENDING_BYTES:
                        raise UpstreamFailed("engine sent an SSE event over 1 MiB")
                    continue
                events, pending = pending[:cut + 2], pending[cut + 2:]
                count_events(events, ex)
                keep_answer(ex, events)
                waiting.leave()
                yield events
                waiting.enter()
            waiting.leave()  # the engine is done: what is left is the client's to read
            if pending:
                count_events(pending, ex)
                keep_answer(ex, pending)
                yield pending
            outcome, clean = Outcome.answered(200), True
        except (UpstreamError, UpstreamFailed) as exc:
            outcome = BROKEN_MIDWAY
            error = self._broken(exc, backend, ex)
            waiting.leave()
            yield error
        finally:
            waiting.leave()
            if clean:
                resp.release()
            else:
                resp.close()
            self._pool.release(backend)
            self._accounting.finish(ex, outcome)

    def _began(self, resp: UpstreamResponse, ex: Exchange, now: float) -> None:
        """The first piece of a stream arrived."""
        ex.ttft = now - ex.started
        self._metrics.model(ex.model).ttft.observe(ex.ttft)
        # Before the first token the engine may be queueing or on a long prompt; after
        # it, a silence this long means it has stalled.
        resp.limit_silence(min(self._timeouts.stream_idle_s, self._timeouts.read_s))

    def _broken(self, exc: Exception, backend: Backend, ex: Exchange) -> bytes:
        """The SSE error event that ends a stream broken mid-way (headers are gone
        already: all that is left is to say so in-band)."""
        log.warning("stream %s broke mid-way on %s: %r", ex.request_id, backend.label, exc)
        message = "the engine failed mid-stream; the answer is incomplete"
        if isinstance(exc, ReadTimeout):
            message = "the engine stopped sending mid-stream; the answer is incomplete"
            if self._pool.is_stalled(backend):
                # All its streams are silent, not just this one: out until a health
                # check passes, or its other requests would be sent there next.
                self._pool.eject(backend, "its streams went silent")
        return b"data: " + error_body(message, "server_error", "upstream_error",
                                      None) + EVENT_END

    @staticmethod
    def _headers(ex: Exchange) -> dict[str, str]:
        headers = {"x-request-id": ex.request_id, "x-llmfleet-model": ex.model}
        if ex.route_reason:
            headers["x-llmfleet-route"] = ex.route_reason
        return headers


class _EngineWait:
    """Counts a stream in `backend.streams` while it waits on the engine (after its first
    piece), which is what stall detection reads: the time a slow client takes to read is
    not the engine's silence (counting it once shut a healthy engine out)."""

    __slots__ = ("_backend", "_on")

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._on = False

    def enter(self) -> None:
        if not self._on:
            self._backend.streams += 1
            self._on = True

    def leave(self) -> None:
        if self._on:
            self._backend.streams -= 1
            self._on = False


class _Retryable(Exception):
    """A failure before any byte reached the client: safe to try another backend."""

    def __init__(self, reason: str, *, eject: bool, same_backend_ok: bool = False,
                 timed_out: bool = False, response: UpstreamResponse | None = None,
                 shown: str | None = None, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason  # for the log: may name the engine's address
        self.shown = shown or reason  # for last_error, which any key may read
        self.eject = eject
        self.same_backend_ok = same_backend_ok
        self.timed_out = timed_out
        self.unavailable = unavailable  # nothing behind a peer's load balancer serves
        self.response = response

    def discard(self) -> None:
        """Drop the failed attempt's response once another backend takes over."""
        if self.response is not None:
            self.response.close()
