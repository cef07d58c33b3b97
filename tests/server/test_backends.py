"""The backend pool against a real (fake) engine over HTTP, checks driven by hand."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from llmfleet.fake_upstream import FakeControl, create_fake_upstream
from llmfleet.testing import ServerThread
from server.backends import BackendPool, PoolLimits
from server.errors import Overloaded
from server.metrics import RouterMetrics

LIMITS = PoolLimits(max_inflight=2, max_queue=0, queue_timeout_s=1, health_interval_s=60,
                    health_timeout_s=1, unhealthy_threshold=3)


async def test_one_missed_check_does_not_eject_three_do(fake: tuple[FakeControl, str]) -> None:
    """Regression: a single slow /health under load ejected the only engine."""
    control, url = fake
    async with aiohttp.ClientSession() as session:
        pool = BackendPool([url], session, LIMITS, RouterMetrics(CollectorRegistry()))
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
    async with aiohttp.ClientSession() as session:
        pool = BackendPool([url], session, LIMITS, RouterMetrics(CollectorRegistry()))
        await pool.check(pool.backends[0])
        assert not pool.any_healthy() and pool.models() == frozenset()


async def test_least_outstanding_and_per_backend_bound(fake: tuple[FakeControl, str]) -> None:
    _, url = fake
    with ServerThread(create_fake_upstream(FakeControl())) as second:
        async with aiohttp.ClientSession() as session:
            pool = BackendPool([url, second.url], session, LIMITS,
                               RouterMetrics(CollectorRegistry()))
            await pool.check_all()
            picked = [await pool.acquire("fake-model") for _ in range(4)]
            assert [b.outstanding for b in pool.backends] == [2, 2]
            with pytest.raises(Overloaded):  # both full, and no queue allowed
                await pool.acquire("fake-model")
            for backend in picked:
                pool.release(backend)
            assert [b.outstanding for b in pool.backends] == [0, 0]
