"""Accounting for each request: metrics, limit settlement and the access log.

`Exchange` carries one request's bookkeeping from admission to its end;
`Accounting.finish` is the one place that end is recorded: it turns the
exchange and its `Outcome` into Prometheus observations, settles the token
reservation against the usage the engine reported (or, without usage, the
streamed events counted) and writes the access log line, once per exchange
however often it is called. Requests refused before reaching an engine go
through `Accounting.refused`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from server.accesslog import AccessLog
from server.archiving import MAX_ANSWER_BYTES, Archive, RecordMeta
from server.errors import APIError
from server.metrics import ModelSeries, RouterMetrics
from server.outcome import Outcome
from server.protocol import Endpoint, ParsedRequest
from server.ratelimit import RateLimiter, Reservation

# Usage is the last object of an OpenAI answer; scanning for its two counters
# costs a tenth of parsing the whole body. The Responses API names them input and output.
_PROMPT_TOKENS = re.compile(rb'"(?:prompt|input)_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"(?:completion|output)_tokens"\s*:\s*(\d+)')
# What some pooling answers report alone (rerank's usage in some vLLM versions).
_TOTAL_TOKENS = re.compile(rb'"total_tokens"\s*:\s*(\d+)')
# A streamed response's text arrives in these events, a token or so each.
_RESPONSE_DELTA = b'"response.output_text.delta"'
NO_MODEL = "(none)"  # metric label for requests refused before a served model was known


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
    outcome: Outcome | None = None  # set by Accounting.finish, once: how the request ended
    retried: bool = False
    ttft: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    streamed_events: int = 0
    reached_engine: bool = False  # the request was sent: its prompt cost the engine work
    hop: bool = False  # a peer pool's router sent it: this router's engines only
    weight: float = 1.0  # its key's share of the queue (server.fairqueue)
    via_peer: bool = False  # sent to another pool's router, which records it in its archive
    # The answer's bytes, kept for the archive (server.archiving) when it keeps text; None
    # when it does not, or a whole answer was too large to hold; a stream's first
    # MAX_ANSWER_BYTES (answer_truncated once it went on past them).
    answer: list[bytes] | None = None
    answer_bytes: int = 0
    answer_truncated: bool = False
    # The client's Authorization header, passed to a peer pool's router (which checks the
    # key itself); never logged, never sent to an engine.
    credentials: str | None = field(default=None, repr=False)


def keep_answer(ex: Exchange, data: bytes) -> None:
    """Keep a piece of the answer for the archive, up to MAX_ANSWER_BYTES in all (none of
    one another pool's router serves: it keeps its own record)."""
    if ex.answer is not None and not ex.answer_truncated and not ex.via_peer:
        ex.answer_bytes += len(data)
        if ex.answer_bytes > MAX_ANSWER_BYTES:
            ex.answer_truncated = True
        else:
            ex.answer.append(data)


def count_events(events: bytes, ex: Exchange) -> None:
    """Count whole SSE events relayed (of a response, those with text), and pick up usage
    from the one that carries it."""
    if ex.request.endpoint is Endpoint.RESPONSES:
        ex.streamed_events += events.count(_RESPONSE_DELTA)
    else:
        ex.streamed_events += events.count(b"data: ") - events.count(b"data: [DONE]")
    if b'"usage":{' in events or b'"usage": {' in events:
        for line in events.split(b"\n"):
            if line.startswith(b"data: {") and b'"usage"' in line:
                usage_from(line[6:], ex)


def usage_from(body: bytes, ex: Exchange) -> None:
    """Read the engine-reported token counts from an answer or an event."""
    at = body.rfind(b'"usage"')
    if at < 0:
        return
    prompt = _PROMPT_TOKENS.search(body, at)
    completion = _COMPLETION_TOKENS.search(body, at)
    if prompt is None and not ex.request.endpoint.generates:
        prompt = _TOTAL_TOKENS.search(body, at)  # all of a pooling route's tokens are read
    if prompt is not None:
        ex.prompt_tokens = int(prompt.group(1))
    if completion is not None:
        ex.completion_tokens = int(completion.group(1))


class Accounting:
    """Settles each request into metrics, per-key limits and the access log."""

    def __init__(self, metrics: RouterMetrics, limiter: RateLimiter,
                 access_log: AccessLog, archive: Archive | None = None) -> None:
        self._metrics = metrics
        self._limiter = limiter
        self._access_log = access_log
        self._archive = archive

    def keeps_answer(self, endpoint: Endpoint) -> bool:
        """Whether requests on `endpoint` keep their answer for the archive."""
        return self._archive is not None and self._archive.keeps_answer(endpoint)

    def refused(self, request_id: str, key_id: str | None, model: str, exc: APIError,
                started: float, endpoint: Endpoint) -> None:
        """Count and log a request refused before it reached an engine (on `endpoint`)."""
        outcome = Outcome.failed(exc)
        self._metrics.model(model).count(outcome.status_class)
        if self._access_log.enabled:
            self._access_log.record({
                "request_id": request_id, "key_id": key_id, "model": model,
                "endpoint": endpoint.value,
                "status": outcome.status, "error": outcome.error,
                "latency_s": round(time.perf_counter() - started, 6)})

    def finish(self, ex: Exchange, outcome: Outcome) -> None:
        """Record how `ex` ended: metrics, the token settlement and the access log line.

        Only the first call for an exchange records, with its outcome; later ones do
        nothing, so that no path can count a request twice or settle it twice.
        """
        if ex.outcome is not None:
            return
        ex.outcome = outcome
        latency = time.perf_counter() - ex.started
        series = self._metrics.model(ex.model)
        series.count(outcome.status_class)
        series.latency.observe(latency)
        completion = completion_tokens(ex)
        _count_tokens(series, ex.prompt_tokens, completion)
        self._limiter.reconcile(ex.reservation, charged_tokens(ex, completion))
        if self._access_log.enabled:
            self._access_log.record(_line(ex, outcome, completion, latency))
        if (self._archive is not None and ex.reached_engine and not ex.via_peer
                and ex.request.endpoint.metered):
            self._archive.record(_archived(ex, outcome, completion, latency),
                                 ex.request.body, ex.answer, ex.answer_truncated)


def completion_tokens(ex: Exchange) -> int | None:
    """The engine's count, else (a stream without usage) one per content event."""
    if ex.completion_tokens is None and ex.request.stream and ex.streamed_events:
        # vLLM sends one token per content event, after a role-only first event on chat.
        return max(0, ex.streamed_events - (ex.request.endpoint is Endpoint.CHAT))
    return ex.completion_tokens


def charged_tokens(ex: Exchange, completion: int | None) -> int:
    """What the key pays for `ex`.

    Refused before any engine saw it, or a tokenizer route: nothing, the whole reservation
    goes back.
    Anything an engine read is charged, failed, timed out or cancelled too:
    otherwise a caller sends 4 MiB prompts and hangs up after prefill at no cost
    in tokens.
    """
    if not ex.request.endpoint.metered or not (
            ex.reached_engine or ex.prompt_tokens is not None or completion is not None):
        return 0
    prompt = ex.prompt_tokens if ex.prompt_tokens is not None \
        else ex.request.prompt_tokens_estimate
    return prompt + (completion or 0)


def _count_tokens(series: ModelSeries, prompt: int | None, completion: int | None) -> None:
    if prompt is not None:
        series.prompt_tokens.inc(prompt)
    if completion is not None:
        series.completion_tokens.inc(completion)


def _archived(ex: Exchange, outcome: Outcome, completion: int | None,
              latency: float) -> RecordMeta:
    """The archive's metadata for a finished exchange (the key's id, never the key)."""
    return RecordMeta(request_id=ex.request_id, engine_request_id=ex.engine_request_id,
                      key_id=ex.key_id, model=ex.model, endpoint=ex.request.endpoint,
                      status=outcome.logged_status, stream=ex.request.stream,
                      prompt_tokens=ex.prompt_tokens, completion_tokens=completion,
                      ttft_s=ex.ttft, latency_s=latency, route=ex.route_reason,
                      retried=ex.retried)


def _line(ex: Exchange, outcome: Outcome, completion: int | None,
          latency: float) -> dict[str, object]:
    """The access log's fields for a finished exchange."""
    return {
        "request_id": ex.request_id, "engine_request_id": ex.engine_request_id,
        "key_id": ex.key_id, "model": ex.model, "endpoint": ex.request.endpoint.value,
        "backend": ex.backend, "status": outcome.logged_status,
        "stream": ex.request.stream, "retried": ex.retried,
        "prompt_tokens": ex.prompt_tokens, "completion_tokens": completion,
        "ttft_s": None if ex.ttft is None else round(ex.ttft, 6),
        "latency_s": round(latency, 6), "route": ex.route_reason,
    }
