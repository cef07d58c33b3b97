"""Router access-log text written by the router's own accounting, at chosen clock times.

The simulator replays the access log as a trace. These lines come from
`server.accounting.Accounting` and `server.accesslog.AccessLog` themselves, with the clocks
they read replaced by one the test sets, so a change to the log's format breaks the
simulator's tests instead of a replay.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from unittest import mock

from prometheus_client import CollectorRegistry

from server import accesslog, accounting
from server.errors import RateLimited, UpstreamTimeout
from server.metrics import RouterMetrics
from server.outcome import Outcome
from server.protocol import Endpoint, ParsedRequest
from server.ratelimit import RateLimiter

MODEL = "m"


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the router ends it: when, after how long, with what counts."""

    ended_at: float  # seconds since the epoch: the line's `ts`
    latency_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # None: it failed before the engine answered
    refused: bool = False  # turned away before any engine (a 429): no token fields at all


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def access_log_text(requests: Iterable[LoggedRequest]) -> str:
    """The access log the router writes for `requests`, in the order given."""
    out = io.StringIO()
    log = _enabled_access_log(out)
    limiter = RateLimiter(rpm=0, tpm=0)
    books = accounting.Accounting(RouterMetrics(CollectorRegistry()), limiter, log)
    clock = _Clock()
    with _router_clocks(clock):
        for request in requests:
            clock.now = request.ended_at
            _finish(books, limiter, request)
    log.flush()
    return out.getvalue()


def _enabled_access_log(out: io.StringIO) -> accesslog.AccessLog:
    logger = logging.getLogger(accesslog.LOGGER_NAME)
    level = logger.level
    logger.setLevel(logging.INFO)  # AccessLog reads this once, when built
    try:
        return accesslog.AccessLog(out)
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _router_clocks(clock: _Clock) -> Iterator[None]:
    wall = SimpleNamespace(time=clock, strftime=time.strftime, gmtime=time.gmtime)
    with mock.patch.object(accesslog, "time", wall), \
            mock.patch.object(accounting, "time", SimpleNamespace(perf_counter=clock)):
        yield


def _finish(books: accounting.Accounting, limiter: RateLimiter,
            request: LoggedRequest) -> None:
    started = request.ended_at - request.latency_s
    if request.refused:
        books.refused("r", "k", MODEL, RateLimited("slow down"), started=started,
                      endpoint=Endpoint.COMPLETIONS)
        return
    parsed = ParsedRequest(Endpoint.CHAT, MODEL, False, False, 50, 10, b"{}")
    exchange = accounting.Exchange(parsed, "r", "k", MODEL, limiter.reserve("k", 0),
                                   started=started)
    exchange.prompt_tokens = request.prompt_tokens
    exchange.completion_tokens = request.completion_tokens
    outcome = Outcome.answered(200) if request.completion_tokens is not None \
        else Outcome.failed(UpstreamTimeout("no engine in time"))
    books.finish(exchange, outcome)
