"""Serving statistics from real scrapes of a real router and a real vLLM."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from agent.scrape import Snapshot
from agent.serving import compute
from llmfleet.fake_upstream import FakeControl
from server.metrics import LATENCY_BUCKETS
from tests.conftest import TEST_KEY, RouterFactory


def scrape(url: str) -> Snapshot:
    return Snapshot.parse(httpx.get(url + "/metrics", timeout=10).text, time.monotonic())


def bucket_of(value: float) -> tuple[float, float]:
    lower = 0.0
    for bound in LATENCY_BUCKETS:
        if value <= bound:
            return lower, bound
        lower = bound
    return lower, float("inf")


def test_router_percentiles_match_what_the_client_measured(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, url = fake
    control.chunk_delay_s = 0.02  # 12 events: ~0.25 s streams
    with make_router([url]) as router:
        before = scrape(router.url)
        measured = []
        for _ in range(20):
            started = time.monotonic()
            with httpx.stream("POST", router.url + "/v1/completions",
                              json={"model": "fake-model", "prompt": "x", "max_tokens": 12,
                                    "stream": True},
                              headers={"authorization": f"Bearer {TEST_KEY}"}) as resp:
                resp.read()
            measured.append(time.monotonic() - started)
        stats = compute((before, scrape(router.url)), [])
    assert stats.latency_p50_s is not None and stats.ttft_p50_s is not None
    low, high = bucket_of(statistics.median(measured))
    assert low <= stats.latency_p50_s <= high  # histogram resolution is the bucket
    assert stats.ttft_p50_s < stats.latency_p50_s
    assert stats.itl_p50_s is not None and 0.01 <= stats.itl_p50_s <= 0.04
    assert stats.requests_per_s is not None and stats.requests_per_s > 0
    assert stats.error_rate == 0


@pytest.mark.engine
def test_vllm_token_rates_are_exact(vllm_engine: tuple[str, str]) -> None:
    url, model = vllm_engine
    before = scrape(url)
    for _ in range(4):
        httpx.post(url + "/v1/completions", timeout=60,
                   json={"model": model, "prompt": "Once", "max_tokens": 25, "ignore_eos": True})
    after = scrape(url)
    stats = compute((None, None), [(before, after)])
    elapsed = after.taken_at - before.taken_at
    assert stats.generation_tokens_per_s == pytest.approx(100 / elapsed)
    assert stats.prompt_tokens_per_s is not None and stats.prompt_tokens_per_s > 0
    assert stats.requests_running == 0 and stats.requests_waiting == 0
    assert stats.kv_cache_usage is not None and 0 <= stats.kv_cache_usage <= 1
    assert stats.latency_p50_s is not None  # from vLLM's own histogram, no router here
