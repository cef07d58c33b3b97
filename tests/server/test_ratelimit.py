"""Token buckets and per-key limits, on a fake clock."""

from __future__ import annotations

import pytest

from server.errors import RateLimited
from server.ratelimit import RateLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_starts_full_and_refills_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=60, rate=1, clock=clock)
    bucket.take(60)
    assert bucket.level() == 0
    clock.advance(10)
    assert bucket.level() == pytest.approx(10)
    clock.advance(1000)
    assert bucket.level() == 60  # never above capacity


def test_bucket_wait_for_says_how_long() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=10, rate=2, clock=clock)
    bucket.take(10)
    assert bucket.wait_for(4) == pytest.approx(2.0)
    clock.advance(2)
    assert bucket.wait_for(4) == 0


def test_requests_per_minute_limit_then_refill() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=3, tpm=0, clock=clock)
    for _ in range(3):
        limiter.reserve("k", 10)
    with pytest.raises(RateLimited) as info:
        limiter.reserve("k", 10)
    assert info.value.status == 429
    assert info.value.retry_after == pytest.approx(20.0)  # one request per 20 s
    assert info.value.headers() == {"retry-after": "20"}
    clock.advance(20)
    limiter.reserve("k", 10)


def test_keys_are_limited_independently() -> None:
    limiter = RateLimiter(rpm=1, tpm=0, clock=FakeClock())
    limiter.reserve("a", 1)
    limiter.reserve("b", 1)
    with pytest.raises(RateLimited):
        limiter.reserve("a", 1)


def test_tokens_per_minute_reservation_is_all_or_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=100, tpm=1000, clock=clock)
    limiter.reserve("k", 900)
    with pytest.raises(RateLimited, match="tokens per minute"):
        limiter.reserve("k", 200)
    # The refused request took no request slot either: 99 more still fit.
    for _ in range(99):
        limiter.reserve("k", 1)


def test_reconcile_refunds_unused_tokens() -> None:
    limiter = RateLimiter(rpm=0, tpm=1000, clock=FakeClock())
    reservation = limiter.reserve("k", 800)  # prompt estimate + max_tokens
    limiter.reconcile(reservation, used_tokens=100)  # the answer was short
    limiter.reserve("k", 800)  # fits again thanks to the refund


def test_reconcile_charges_overuse_into_debt() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=0, tpm=600, clock=clock)
    reservation = limiter.reserve("k", 100)
    limiter.reconcile(reservation, used_tokens=700)  # 600 more than reserved: bucket at -100
    with pytest.raises(RateLimited) as info:
        limiter.reserve("k", 1)
    assert info.value.retry_after == pytest.approx(10.1)  # 101 tokens at 10 per second


def test_request_larger_than_the_whole_minute_budget_is_refused_with_param() -> None:
    limiter = RateLimiter(rpm=0, tpm=100, clock=FakeClock())
    with pytest.raises(RateLimited) as info:
        limiter.reserve("k", 101)
    assert info.value.param == "max_tokens"
    assert info.value.retry_after is None


def test_zero_limits_mean_unlimited() -> None:
    limiter = RateLimiter(rpm=0, tpm=0, clock=FakeClock())
    for _ in range(10_000):
        limiter.reserve("k", 10**6)
