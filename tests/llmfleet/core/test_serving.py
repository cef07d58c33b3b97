"""Serving statistics from real scrapes of a real router and a real vLLM."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from llmfleet.core.prometheus import Snapshot
from llmfleet.core.serving import compute
from tests.helpers.fake_upstream import FakeControl, Mode, create_fake_upstream
from tests.helpers.prometheus import bucket_of, scrape
from tests.helpers.router import TEST_KEY, RouterFactory
from tests.helpers.servers import ServerThread


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


def test_one_pools_figures_leave_out_the_requests_it_sends_to_another(
        make_router: RouterFactory) -> None:
    """A router of one pool among several answers requests for every pool's model; the
    agent of its instance publishes its own model's figures only (before the fix, pool B's
    failures raised pool A's error rate, and its latency A's scaling guardrail)."""
    own, other = FakeControl(models=("own",)), FakeControl(models=("other",))
    other.mode, other.status = Mode.STATUS, 500
    with ServerThread(create_fake_upstream(own)) as own_url, \
            ServerThread(create_fake_upstream(other)) as other_url, \
            make_router([own_url.url, other_url.url]) as router:
        before = scrape(router.url)
        for model in ("own", "own", "other", "other", "other"):
            httpx.post(router.url + "/v1/completions", timeout=30,
                       json={"model": model, "prompt": "x", "max_tokens": 4},
                       headers={"authorization": f"Bearer {TEST_KEY}"})
        after = scrape(router.url)
    everything = compute((before, after), [])
    mine = compute((before, after), [], model="own")
    assert everything.error_rate == pytest.approx(3 / 5)
    assert mine.error_rate == 0
    assert mine.requests_per_s is not None and everything.requests_per_s is not None
    assert mine.requests_per_s == pytest.approx(everything.requests_per_s * 2 / 5)


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


def engine_page(generated: float, running: float, kv: float, latency_counts: list[int]) -> str:
    bounds = ["0.5", "1.0", "+Inf"]
    lines = ["# TYPE vllm:generation_tokens counter",
             f'vllm:generation_tokens_total{{model_name="m"}} {generated}',
             "# TYPE vllm:num_requests_running gauge",
             f'vllm:num_requests_running{{model_name="m"}} {running}',
             "# TYPE vllm:kv_cache_usage_perc gauge",
             f'vllm:kv_cache_usage_perc{{model_name="m"}} {kv}',
             "# TYPE vllm:e2e_request_latency_seconds histogram"]
    lines += [f'vllm:e2e_request_latency_seconds_bucket{{le="{b}",model_name="m"}} {c}'
              for b, c in zip(bounds, latency_counts, strict=True)]
    return "\n".join(lines) + "\n"


def test_engines_combine_and_a_restart_stays_with_its_engine() -> None:
    a0 = Snapshot.parse(engine_page(1000, 0, 0.1, [0, 0, 0]), 0.0)
    a1 = Snapshot.parse(engine_page(1500, 3, 0.3, [4, 4, 4]), 10.0)  # 500 tokens, fast
    b0 = Snapshot.parse(engine_page(90_000, 0, 0.0, [10, 50, 50]), 0.0)
    b1 = Snapshot.parse(engine_page(200, 1, 0.5, [0, 4, 4]), 10.0)  # restarted: 200 new tokens
    stats = compute((None, None), [(a0, a1), (b0, b1)])
    assert stats.generation_tokens_per_s == pytest.approx((500 + 200) / 10)
    assert stats.requests_running == 4
    assert stats.kv_cache_usage == pytest.approx(0.4)
    # Merged latency histogram: 4 requests under 0.5 s, 4 between 0.5 and 1 s.
    assert stats.latency_p50_s == pytest.approx(0.5)
    assert stats.latency_p95_s is not None and 0.5 < stats.latency_p95_s <= 1.0


def test_an_engine_without_a_previous_scrape_contributes_nothing_yet() -> None:
    a1 = Snapshot.parse(engine_page(1500, 2, 0.3, [4, 4, 4]), 10.0)
    stats = compute((None, None), [(None, None), (None, a1)])
    assert stats.generation_tokens_per_s is None
    assert stats.requests_running == 2  # gauges are current values: no previous needed
