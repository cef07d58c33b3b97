"""Per-key limits: the sliding window on a fake clock, then through a real router."""

from __future__ import annotations

import time

import httpx
import pytest

from server.errors import RateLimited
from server.ratelimit import RateLimiter, SlidingWindow
from tests.helpers.fake_upstream import FakeControl, Mode
from tests.helpers.router import TEST_KEY, RouterFactory
from tests.helpers.servers import ServerThread


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_window_admits_up_to_the_limit_and_frees_what_has_aged_out() -> None:
    clock = FakeClock()
    window = SlidingWindow(limit=60, clock=clock)
    window.take(40)
    clock.advance(30)
    window.take(20)
    assert window.used() == 60 and window.wait_for(1) == pytest.approx(30.0)
    clock.advance(30)  # the first 40 are now 60 s old
    assert window.used() == 20 and window.wait_for(40) == 0


def test_window_wait_says_when_enough_has_aged_out() -> None:
    clock = FakeClock()
    window = SlidingWindow(limit=10, clock=clock)
    for _ in range(5):
        window.take(2)
        clock.advance(1)
    assert window.wait_for(4) == pytest.approx(56.0)  # the two oldest entries, 4 units


def test_requests_per_minute_limit_then_the_window_moves_on() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=3, tpm=0, clock=clock)
    for _ in range(3):
        limiter.reserve("k", 10)
    with pytest.raises(RateLimited) as info:
        limiter.reserve("k", 10)
    assert info.value.status == 429
    assert info.value.retry_after == pytest.approx(60.0)
    assert info.value.headers() == {"retry-after": "60"}
    clock.advance(60)
    limiter.reserve("k", 10)


@pytest.mark.parametrize("rpm", [60, 600])
def test_any_60_second_window_holds_to_the_requests_per_minute_limit(rpm: int) -> None:
    """Regression: with 60 requests/min a burst took 60 at once and the refill admitted 59
    more within the same minute: 119 in 60 s."""
    clock = FakeClock()
    limiter = RateLimiter(rpm=rpm, tpm=0, clock=clock)
    admitted: list[float] = []
    while clock.now < 1000 + 300:  # a client sending as fast as it is let, for 5 minutes
        try:
            limiter.reserve("k", 1)
            admitted.append(clock.now)
        except RateLimited:
            clock.advance(0.05)
    starts = [1000 + i * 0.5 for i in range(480)]  # every window of 60 s, at 0.5 s steps
    counts = [sum(start <= t < start + 60 for t in admitted) for start in starts]
    assert max(counts) <= rpm * 1.05
    assert min(counts) >= rpm * 0.95  # and a steady sender gets its whole limit


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


def test_reconcile_charges_overuse_until_it_ages_out() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=0, tpm=600, clock=clock)
    reservation = limiter.reserve("k", 100)
    clock.advance(5)
    limiter.reconcile(reservation, used_tokens=700)  # 600 more than reserved: 100 over
    with pytest.raises(RateLimited) as info:
        limiter.reserve("k", 1)
    assert info.value.retry_after == pytest.approx(60.0)  # the extra 600 was charged at 5 s


def test_overuse_settled_after_the_window_is_still_charged() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=0, tpm=600, clock=clock)
    reservation = limiter.reserve("k", 100)
    clock.advance(90)  # a long generation
    limiter.reconcile(reservation, used_tokens=650)
    with pytest.raises(RateLimited):
        limiter.reserve("k", 100)


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


# -- through a real router in front of the fake engine --------------------------------

def _post(router: ServerThread, body: dict[str, object], timeout: float = 10) -> httpx.Response:
    return httpx.post(router.url + "/v1/completions", json=body, timeout=timeout,
                      headers={"authorization": f"Bearer {TEST_KEY}"})


def test_a_request_without_max_tokens_reserves_up_to_the_engines_context(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    """Regression: without max_tokens 256 tokens were reserved while the engine may
    generate to the context length, so concurrent requests overran the token limit."""
    control, url = fake
    control.models_body = {"object": "list",
                           "data": [{"id": "fake-model", "max_model_len": 2048}]}
    control.chunk_delay_s = 0.5  # the first stream stays in flight for seconds
    with make_router([url], rate_limit_tpm=3000, rate_limit_rpm=0) as router, \
            httpx.stream("POST", router.url + "/v1/completions", timeout=10,
                         json={"model": "fake-model", "prompt": "x", "stream": True},
                         headers={"authorization": f"Bearer {TEST_KEY}"}) as first:
        assert first.status_code == 200  # in flight, holding ~2048 tokens
        second = _post(router, {"model": "fake-model", "prompt": "x"})
    assert second.status_code == 429
    assert "tokens per minute" in second.json()["error"]["message"]


def test_n_and_best_of_multiply_the_reservation(fake: tuple[FakeControl, str],
                                                make_router: RouterFactory) -> None:
    """Regression: n and best_of were ignored, so n=4 generated four times what was
    reserved."""
    with make_router([fake[1]], rate_limit_tpm=1000, rate_limit_rpm=0) as router:
        for extra in ({"n": 4}, {"best_of": 4}):
            resp = _post(router, {"model": "fake-model", "prompt": "x", "max_tokens": 300,
                                  **extra})
            assert resp.status_code == 429, extra
            assert resp.json()["error"]["param"] == "max_tokens"
        assert _post(router, {"model": "fake-model", "prompt": "x", "max_tokens": 300,
                              "n": 3}).status_code == 200


def test_a_client_hanging_up_after_its_prompt_is_charged_for_the_prompt(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    """Regression: failed, timed-out and cancelled requests were refunded in full, so a
    caller could send huge prompts and hang up after prefill for nothing."""
    control, url = fake
    prompt = "x" * 400_000  # ~100,000 tokens by the router's estimate
    with make_router([url], rate_limit_tpm=150_000, rate_limit_rpm=0,
                     read_timeout_s=60) as router:
        control.mode = Mode.HANG
        with pytest.raises(httpx.ReadTimeout):
            _post(router, {"model": "fake-model", "prompt": prompt, "max_tokens": 1},
                  timeout=0.5)
        control.mode = Mode.OK
        cancelled = 'llmfleet_requests_total{model="fake-model",status="cancelled"} 1.0'
        for _ in range(100):  # until the router has seen the hang-up and settled it
            if cancelled in httpx.get(router.url + "/metrics").text:
                break
            time.sleep(0.05)
        resp = _post(router, {"model": "fake-model", "prompt": prompt, "max_tokens": 1})
    assert resp.status_code == 429
