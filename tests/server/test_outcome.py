"""A request's outcome and its one recording by `Accounting.finish`."""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import pytest
from prometheus_client import CollectorRegistry

from server.accesslog import LOGGER_NAME, AccessLog
from server.accounting import Accounting, Exchange
from server.errors import APIError, RateLimited, UpstreamTimeout
from server.metrics import RouterMetrics
from server.outcome import BROKEN_MIDWAY, CANCELLED, CLIENT_CLOSED, Outcome, status_class_of
from server.protocol import Endpoint, ParsedRequest
from server.ratelimit import RateLimiter

MODEL = "m"
TPM = 100


class Books:
    """An `Accounting` on a fresh registry, a token-limited key and a captured access log."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.limiter = RateLimiter(rpm=0, tpm=TPM, clock=lambda: 1000.0)
        self.out = io.StringIO()
        self.log = AccessLog(self.out)
        self.accounting = Accounting(RouterMetrics(self.registry), self.limiter, self.log)

    def exchange(self, *, stream: bool = False) -> Exchange:
        parsed = ParsedRequest(Endpoint.CHAT, MODEL, stream, False, 50, 10, b"{}")
        return Exchange(parsed, "r1", "k", MODEL, self.limiter.reserve("k", TPM))

    def count(self, status: str) -> float | None:
        return self.registry.get_sample_value(
            "llmfleet_requests_total", {"model": MODEL, "status": status})

    def sample(self, name: str) -> float | None:
        return self.registry.get_sample_value(name, {"model": MODEL})

    def lines(self) -> list[dict[str, object]]:
        self.log.flush()
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def tokens_free(self) -> int:
        """Tokens the key may still reserve this minute (probed from 0 up)."""
        for free in range(2 * TPM, -1, -1):
            try:
                reservation = self.limiter.reserve("k", free)
            except RateLimited:
                continue
            self.limiter.reconcile(reservation, 0)
            return free
        return 0


@pytest.fixture
def books(caplog: pytest.LogCaptureFixture) -> Books:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    return Books()


@pytest.mark.parametrize(("code", "label"), [(200, "2xx"), (404, "4xx"), (429, "4xx"),
                                             (502, "5xx"), (504, "5xx")])
def test_an_answer_is_labelled_by_its_status_class(code: int, label: str) -> None:
    outcome = Outcome.answered(code)
    assert (outcome.status, outcome.status_class, outcome.error) == (code, label, None)
    assert status_class_of(code) == label
    assert outcome.logged_status == code and not outcome.client_disconnected


def test_a_typed_error_carries_its_status_and_code_else_its_type() -> None:
    assert Outcome.failed(UpstreamTimeout("slow")) == Outcome(504, "5xx", "upstream_timeout")
    assert Outcome.failed(APIError("bug")) == Outcome(500, "5xx", "server_error")


def test_a_client_that_left_is_cancelled_and_logged_by_status_if_it_had_one() -> None:
    midway = Outcome.client_left()
    assert midway.client_disconnected and midway.status_class == CANCELLED
    assert midway.logged_status == CANCELLED
    before = Outcome.client_left(CLIENT_CLOSED)
    assert before.client_disconnected and before.logged_status == 499


def test_a_broken_answer_is_logged_as_a_502() -> None:
    assert Outcome(502, "5xx") == BROKEN_MIDWAY


def test_an_outcome_cannot_change() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Outcome.answered(200).status = 500  # type: ignore[misc]


def test_finish_records_metrics_settles_tokens_and_logs_one_line(books: Books) -> None:
    ex = books.exchange()
    ex.prompt_tokens, ex.completion_tokens = 10, 5
    books.accounting.finish(ex, Outcome.answered(200))
    assert ex.outcome == Outcome.answered(200)
    assert books.count("2xx") == 1
    assert books.sample("llmfleet_request_duration_seconds_count") == 1
    assert books.sample("llmfleet_prompt_tokens_total") == 10
    assert books.sample("llmfleet_completion_tokens_total") == 5
    assert books.tokens_free() == TPM - 15  # the unused 85 of the reservation came back
    [line] = books.lines()
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (200, 10, 5)


def test_a_second_finish_neither_recounts_nor_refunds_again(books: Books) -> None:
    """Regression guard: a request whose end reached two finish paths (the proxy's and
    the service's error handler) would count twice and refund its unused tokens twice,
    handing the key more than its limit."""
    ex = books.exchange()
    ex.prompt_tokens, ex.completion_tokens = 10, 5
    books.accounting.finish(ex, Outcome.answered(200))
    books.accounting.finish(ex, Outcome.failed(UpstreamTimeout("late")))
    books.accounting.finish(ex, Outcome.client_left(CLIENT_CLOSED))
    assert ex.outcome == Outcome.answered(200)  # the first outcome wins
    assert books.count("2xx") == 1
    assert books.count("5xx") is None and books.count(CANCELLED) is None
    assert books.sample("llmfleet_request_duration_seconds_count") == 1
    assert books.sample("llmfleet_prompt_tokens_total") == 10
    assert books.sample("llmfleet_completion_tokens_total") == 5
    assert books.tokens_free() == TPM - 15  # refunded once, not 85 twice
    assert [line["status"] for line in books.lines()] == [200]


def test_a_client_that_left_mid_stream_is_logged_cancelled_and_charged_its_events(
        books: Books) -> None:
    ex = books.exchange(stream=True)
    ex.reached_engine, ex.streamed_events = True, 4  # a role event, then three tokens
    books.accounting.finish(ex, Outcome.client_left())
    assert books.count(CANCELLED) == 1
    assert books.tokens_free() == TPM - (10 + 3)  # the prompt estimate and three tokens
    [line] = books.lines()
    assert (line["status"], line["completion_tokens"]) == (CANCELLED, 3)


def test_a_request_no_engine_saw_is_refunded_in_full(books: Books) -> None:
    ex = books.exchange()
    books.accounting.finish(ex, Outcome.failed(UpstreamTimeout("no engine in time")))
    assert books.count("5xx") == 1
    assert books.tokens_free() == TPM
    [line] = books.lines()
    assert line["status"] == 504 and "error" not in line  # finish lines name no error


def test_a_refusal_is_counted_by_status_class_and_logged_with_its_code(books: Books) -> None:
    books.accounting.refused("r2", "k", MODEL, RateLimited("slow down"), started=0.0,
                             endpoint=Endpoint.CHAT)
    assert books.count("4xx") == 1
    assert books.sample("llmfleet_request_duration_seconds_count") == 0  # refusals: no latency
    [line] = books.lines()
    assert (line["status"], line["error"]) == (429, "rate_limit_exceeded")
