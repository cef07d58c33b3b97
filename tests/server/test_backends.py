"""The backend pool against a real (fake) engine over HTTP, checks driven by hand."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llmfleet.core.net import free_port
from server.backends import MAX_LISTING_BYTES, BackendPool, PoolLimits
from server.errors import Overloaded
from server.metrics import RouterMetrics
from server.periodic import Periodic
from tests.helpers.fake_upstream import FakeControl, create_fake_upstream
from tests.helpers.servers import ServerThread

LIMITS = PoolLimits(max_inflight=2, max_queue=0, queue_timeout_s=1, health_interval_s=60,
                    health_timeout_s=1, unhealthy_threshold=3)


async def test_one_missed_check_does_not_eject_three_do(fake: tuple[FakeControl, str]) -> None:
    """Regression: a single slow /health under load ejected the only engine."""
    control, url = fake
    async with httpx.AsyncClient() as client:
        pool = BackendPool([url], client, LIMITS, RouterMetrics(CollectorRegistry()))
        backend = pool.backends[0]
        await pool.check(backend)
        assert backend.healthy and backend.models == {"fake-model"}
        control.healthy = False
        for _ in range(2):
            await pool.check(backend)
            assert backend.healthy
        await pool.check(backend)
        assert not backend.healthy
        assert "health check failed" in (backend.last_error or "")
        control.healthy = True
        await pool.check(backend)  # one success readmits
        assert backend.healthy and backend.failed_checks == 0


async def test_a_backend_failing_from_the_start_never_serves(fake: tuple[FakeControl, str]
                                                             ) -> None:
    control, url = fake
    control.healthy = False
    async with httpx.AsyncClient() as client:
        pool = BackendPool([url], client, LIMITS, RouterMetrics(CollectorRegistry()))
        await pool.check(pool.backends[0])
        assert pool.ready_status() is None and pool.models() == frozenset()


async def test_least_outstanding_and_per_backend_bound(fake: tuple[FakeControl, str]) -> None:
    _, url = fake
    with ServerThread(create_fake_upstream(FakeControl())) as second:
        async with httpx.AsyncClient() as client:
            pool = BackendPool([url, second.url], client, LIMITS,
                               RouterMetrics(CollectorRegistry()))
            await pool.check_all()
            picked = [await pool.acquire("fake-model") for _ in range(4)]
            assert [b.outstanding for b in pool.backends] == [2, 2]
            with pytest.raises(Overloaded):  # both full, and no queue allowed
                await pool.acquire("fake-model")
            for backend in picked:
                pool.release(backend)
            assert [b.outstanding for b in pool.backends] == [0, 0]


async def test_models_answer_that_is_a_list_fails_the_check_instead_of_raising(
        fake: tuple[FakeControl, str]) -> None:
    """Regression: a JSON list from /v1/models raised AttributeError out of the check."""
    control, url = fake
    control.models_body = [{"id": "fake-model"}]
    async with httpx.AsyncClient() as client:
        pool = BackendPool([url], client, LIMITS, RouterMetrics(CollectorRegistry()))
        await pool.check(pool.backends[0])
        assert pool.backends[0].last_error == "health check failed: unexpected /v1/models answer"


async def test_an_ejected_backend_returns_after_the_health_loop_met_a_bad_answer(
        fake: tuple[FakeControl, str]) -> None:
    """Regression: one exception in a health round ended the loop for good, so a backend
    ejected meanwhile never came back."""
    control, url = fake
    limits = PoolLimits(max_inflight=2, max_queue=0, queue_timeout_s=1, health_interval_s=0.05,
                        health_timeout_s=1, unhealthy_threshold=1)
    async with httpx.AsyncClient() as client:
        pool = BackendPool([url], client, limits, RouterMetrics(CollectorRegistry()))
        await pool.start()
        try:
            control.models_body = "not a listing"
            pool.eject(pool.backends[0], "refused")
            await asyncio.sleep(0.3)
            control.models_body = None
            for _ in range(100):
                if pool.ready_status() is not None:
                    break
                await asyncio.sleep(0.02)
            assert pool.ready_status() is not None
        finally:
            await pool.stop()


async def test_a_periodic_task_survives_a_tick_that_raises() -> None:
    """Regression: an unexpected exception stopped the background task for good."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 1:
            raise AttributeError("'list' object has no attribute 'get'")

    task = Periodic("test", 0.01, tick)
    task.start()
    for _ in range(200):
        if ticks >= 3:
            break
        await asyncio.sleep(0.01)
    await task.stop()
    assert ticks >= 3 and task.failures_total == 1


async def test_engine_key_never_lands_in_the_backends_last_error(
        fake: tuple[FakeControl, str], caplog: pytest.LogCaptureFixture) -> None:
    """Regression: last_error held repr(exc), which for the HTTP client's response errors
    carried the request headers, so the engine key showed in /console/fleet and in the log."""
    control, url = fake
    control.healthy = False
    secret = "sk-engine-secret-7f3a"
    limits = PoolLimits(max_inflight=2, max_queue=0, queue_timeout_s=1, health_interval_s=60,
                        health_timeout_s=1, unhealthy_threshold=1)
    async with httpx.AsyncClient() as client:
        pool = BackendPool([url], client, limits, RouterMetrics(CollectorRegistry()),
                           api_key=secret)
        pool.backends[0].healthy = True  # so that losing it is logged
        with caplog.at_level(logging.INFO):
            await pool.check(pool.backends[0])
    backend = pool.backends[0]
    assert backend.last_error == "health check failed: HTTP 503"
    assert not backend.healthy
    assert "HTTP 503" in caplog.text and secret not in caplog.text


SECRET = "sk-engine-secret-7f3a"
ONE_STRIKE = PoolLimits(max_inflight=2, max_queue=0, queue_timeout_s=1, health_interval_s=60,
                        health_timeout_s=0.5, unhealthy_threshold=1)


def _trickle() -> Response:
    async def drip() -> AsyncIterator[bytes]:
        for _ in range(50):  # a byte every 0.1 s: no single wait is long
            yield b" "
            await asyncio.sleep(0.1)
    return StreamingResponse(drip(), media_type="application/json")


def _gzipped_listing() -> Response:
    listing = json.dumps({"data": [{"id": "fake-model"}]}).encode()
    return Response(gzip.compress(listing), media_type="application/json",
                    headers={"content-encoding": "gzip"})


def _oversized_listing() -> Response:
    return Response(json.dumps({"data": [], "pad": "x" * MAX_LISTING_BYTES}),
                    media_type="application/json")


@contextlib.contextmanager
def odd_engine(models: Callable[[], Response] | None) -> Iterator[str]:
    """An engine whose /health is fine and whose /v1/models answers `models()`; None: a
    port where nobody listens."""
    if models is None:
        yield f"http://127.0.0.1:{free_port()}"
        return

    async def health(_: Request) -> Response:
        return Response()

    async def listing(_: Request) -> Response:
        return models()

    app = Starlette(routes=[Route("/health", health), Route("/v1/models", listing)])
    with ServerThread(app) as server:
        yield server.url


async def _one_check(url: str) -> tuple[str | None, float]:
    async with httpx.AsyncClient() as client:
        pool = BackendPool([url], client, ONE_STRIKE, RouterMetrics(CollectorRegistry()),
                           api_key=SECRET)
        pool.backends[0].healthy = True  # so that losing it is logged
        started = time.perf_counter()
        await pool.check(pool.backends[0])
        return pool.backends[0].last_error, time.perf_counter() - started


@pytest.mark.parametrize(("models", "reason"), [
    (lambda: Response(status_code=500), "HTTP 500"),
    (None, "connection refused"),
    (_trickle, "timed out"),
    (lambda: Response("[1]", media_type="application/json"), "unexpected /v1/models answer"),
], ids=["error status", "refused", "timeout", "bad listing"])
async def test_engine_key_is_in_no_log_line_or_error_whatever_the_failure(
        models: Callable[[], Response] | None, reason: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The HTTP client's errors carry the request's headers; what the pool keeps and logs
    must not, at any level (the client's own debug lines included)."""
    with odd_engine(models) as url, caplog.at_level(logging.DEBUG):
        error, _ = await _one_check(url)
    assert error == f"health check failed: {reason}"
    assert reason in caplog.text and SECRET not in caplog.text


async def test_a_models_answer_that_trickles_in_times_out_as_a_whole() -> None:
    """health_timeout_s bounds the whole check, body included, not each wait for data."""
    with odd_engine(_trickle) as url:
        error, took = await _one_check(url)
    assert error == "health check failed: timed out"
    assert took < 2.0


@pytest.mark.parametrize("models", [_oversized_listing, _gzipped_listing],
                         ids=["oversized", "gzipped"])
async def test_a_models_answer_is_read_as_sent_and_capped(
        models: Callable[[], Response]) -> None:
    """The cap counts bytes on the wire, and nothing is inflated past it: a gzipped body
    is not decompressed (a small one can inflate to gigabytes), so it fails the check."""
    with odd_engine(models) as url:
        error, _ = await _one_check(url)
    assert error == "health check failed: unexpected /v1/models answer"
