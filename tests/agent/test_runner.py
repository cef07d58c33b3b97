"""The agent's rounds against real servers: a router, bad sources, moto, outages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from agent.buffer import DatapointBuffer
from agent.collect import Round
from agent.cost import Identity
from agent.outbox import OutboxThread
from agent.report import render
from agent.runner import Agent
from agent.settings import AgentSettings
from llmfleet.core.gpu import GpuCollector
from llmfleet.core.instances import Market
from llmfleet.core.net import free_port
from llmfleet.core.serving import VLLM_LATENCY, VLLM_TTFT, compute
from server.metrics import LATENCY_BUCKETS, TTFT_BUCKETS
from tests.helpers.disk import fill_up, make_read_only
from tests.helpers.fake_upstream import FakeControl
from tests.helpers.moto import start_moto, statistic
from tests.helpers.nvml import FakeGpu, FakeNvml, fake_nvml
from tests.helpers.prometheus import bucket_of, scrape
from tests.helpers.router import TEST_KEY, RouterFactory
from tests.helpers.servers import ServerThread

IDENTITY = Identity("i-0test", "g5.xlarge", Market.ON_DEMAND, "fleet-test", "us-east-1")


@pytest.fixture(autouse=True)
def _aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def settings(tmp_path: Path, port: int, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "interval_s": 0.2, "router_url": "", "engine_urls": [], "imds": False, "gpu": False,
        "namespace": "LLMFleet/Test", "cloudwatch_endpoint_url": f"http://127.0.0.1:{port}",
        "state_dir": tmp_path / "state", "max_backoff_s": 0.3, "shutdown_flush_s": 5,
    }
    values.update(overrides)
    return AgentSettings(**values)


class Recording(Agent):
    """An agent that remembers each round, for tests of the loop."""

    rounds: list[Round]

    async def run_round(self) -> Round:
        result = await super().run_round()
        self.rounds = [*getattr(self, "rounds", []), result]
        return result


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[None]:
    """The agent's loop in the background for the body of the `async with`."""
    stop = asyncio.Event()
    await agent.start()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await agent.close()


async def stream(url: str, n: int) -> list[float]:
    """`n` streamed completions through the router; what the client measured for each."""
    took = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(n):
            started = time.monotonic()
            async with client.stream(
                    "POST", url + "/v1/completions",
                    json={"model": "fake-model", "prompt": "x", "max_tokens": 12, "stream": True},
                    headers={"authorization": f"Bearer {TEST_KEY}"}) as resp:
                await resp.aread()
            took.append(time.monotonic() - started)
    return took


async def test_a_round_publishes_serving_gpu_and_cost_figures(
        tmp_path: Path, moto_port: int, fake: tuple[FakeControl, str],
        make_router: RouterFactory) -> None:
    control, url = fake
    control.chunk_delay_s = 0.02
    gpu = GpuCollector(fake_nvml([FakeGpu(util=80), FakeGpu(util=40)]))
    with make_router([url]) as router:
        agent = Agent(settings(tmp_path, moto_port, router_url=router.url), IDENTITY, gpu=gpu)
        await agent.start()
        try:
            await agent.collect()  # primes
            measured = await stream(router.url, 10)
            result = await agent.run_round()
        finally:
            await agent.close()
    assert result.serving.latency_p50_s is not None
    low, high = bucket_of(statistics.median(measured))
    assert low <= result.serving.latency_p50_s <= high
    assert statistic(moto_port, "GPUUtilization", "Average") == 60.0
    assert statistic(moto_port, "CostPerHourUSD", "Maximum") == 1.006
    published_p50 = statistic(moto_port, "LatencyP50", "Maximum")
    assert published_p50 == pytest.approx(result.serving.latency_p50_s)
    assert statistic(moto_port, "RequestsPerSecond", "SampleCount") == 1
    assert agent.status.sent_total == len(result.points) and agent.status.buffered == 0
    table = render(result)  # what `llmfleet agent --once --print` shows
    assert re.search(r"GPUUtilization\s+60\s+Percent", table)
    assert re.search(r"LatencyP50\s+\d+\.\d ms", table)
    assert re.search(r"GPUMemoryTotal\s+48\.00 GiB", table)
    latest = agent.status.last_round  # what the agent's /status serves the router's console
    assert latest is not None and latest.cost_usd_per_hour == 1.006
    assert [g.utilization_pct for g in latest.gpus] == [80, 40]
    assert latest.serving["latency_p50_s"] == result.serving.latency_p50_s


def garbage_source() -> Starlette:
    async def metrics(request: Request) -> Response:
        return PlainTextResponse("<html><body>502 Bad Gateway</body></html>\n")

    return Starlette(routes=[Route("/metrics", metrics)])


async def test_garbage_on_a_scraped_page_is_skipped_and_counted(
        tmp_path: Path, moto_port: int, fake: tuple[FakeControl, str],
        make_router: RouterFactory) -> None:
    _, url = fake
    dead = f"http://127.0.0.1:{free_port()}"
    with make_router([url]) as router, ServerThread(garbage_source()) as garbage:
        agent = Agent(settings(tmp_path, moto_port, router_url=router.url,
                               engine_urls=[garbage.url, dead]), IDENTITY)
        await agent.start()
        try:
            for _ in range(3):
                await stream(router.url, 2)
                result = await agent.run_round()
        finally:
            await agent.close()
    assert agent.status.scrape_errors_total == {"engine0": 3, "engine1": 3}
    assert agent.status.failing_sources == {"engine0", "engine1"}
    assert result.serving.requests_per_s is not None  # the router's figures still came
    assert statistic(moto_port, "RequestsPerSecond") == 2  # rounds 2 and 3; 1 primed


async def test_rounds_keep_a_fixed_grid_when_a_source_is_slow(
        tmp_path: Path, moto_port: int) -> None:
    async def slow_metrics(request: Request) -> Response:
        await asyncio.sleep(0.05)  # a quarter of the interval, every round
        return PlainTextResponse("# TYPE up gauge\nup 1\n")

    with ServerThread(Starlette(routes=[Route("/metrics", slow_metrics)])) as slow:
        agent = Recording(settings(tmp_path, moto_port, engine_urls=[slow.url]), IDENTITY)
        async with running(agent):
            await asyncio.sleep(2.1)
    stamps = [r.timestamp for r in agent.rounds]
    # On the grid every round starts a whole number of intervals after the first (a round
    # delayed past a tick skips it but stays aligned); drift would add 0.05 s per round.
    offsets = [((t - stamps[0]) / 0.2) % 1 for t in stamps]
    assert all(min(o, 1 - o) < 0.25 for o in offsets), offsets  # 0.25 of 0.2 s: 50 ms
    assert len(stamps) >= 8


async def test_an_outage_then_recovery_delivers_every_round_once(tmp_path: Path) -> None:
    port = free_port()  # CloudWatch is down: nothing listens here yet
    agent = Recording(settings(tmp_path, port), IDENTITY)
    server = None
    try:
        async with running(agent):
            await asyncio.sleep(1.0)
            assert agent.status.sent_total == 0 and agent.status.buffered > 0
            assert agent.status.failed_calls_total >= 1
            server = start_moto(port)
            for _ in range(100):  # bounded: backoff is capped at 0.3 s here
                if agent.status.buffered == 0 and agent.status.sent_total > 0:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # a few more rounds after recovery
        rounds = len(agent.rounds)
        assert statistic(port, "CostPerHourUSD") == rounds  # each round exactly once
        assert agent.status.sent_total == sum(len(r.points) for r in agent.rounds)
        assert agent.status.dropped_total == 0
    finally:
        if server is not None:
            server.stop()


async def timed_streams(client: openai.AsyncOpenAI, model: str) -> tuple[list[float],
                                                                        list[float]]:
    """Streamed completions of growing length: end-to-end time and TTFT of each."""
    measured, ttfts = [], []
    for max_tokens in (8, 16, 24, 32, 40, 48, 56, 64, 72):  # odd count: one median request
        started = time.monotonic()
        first = None
        async for chunk in await client.completions.create(
                model=model, prompt="Once upon", max_tokens=max_tokens, stream=True,
                extra_body={"ignore_eos": True}):
            # The router's TTFT is its first event from the engine, whatever the text: a
            # token may decode to nothing yet (a partial UTF-8 byte), so count any chunk.
            if first is None and chunk.choices:
                first = time.monotonic() - started
        measured.append(time.monotonic() - started)
        ttfts.append(first or 0.0)
    return measured, ttfts


@pytest.mark.engine
async def test_real_router_and_vllm_percentiles_match_what_the_client_measured(
        tmp_path: Path, moto_port: int, vllm_engine: tuple[str, str],
        make_router: RouterFactory) -> None:
    engine_url, model = vllm_engine
    with make_router([engine_url]) as router:
        agent = Agent(settings(tmp_path, moto_port, router_url=router.url,
                               engine_urls=[engine_url]), IDENTITY)
        await agent.start()
        try:
            await agent.collect()  # primes
            engine_before = scrape(engine_url)
            async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=TEST_KEY,
                                          max_retries=0, timeout=60) as client:
                measured, ttfts = await timed_streams(client, model)
            engine_after = scrape(engine_url)
            result = await agent.run_round()
        finally:
            await agent.close()
    serving = result.serving
    engine = compute((None, None), [(engine_before, engine_after)])
    # Each request is timed three times, nested: vLLM inside the router inside this client.
    # So the router's median lies between vLLM's and the client's, and the agent's estimate
    # of it must lie in the router buckets between the two (the client's measurement here
    # shares a process, and so the GIL, with the router: it can be tens of ms later).
    for estimate, inner, inner_name, seen, buckets in (
            (serving.latency_p50_s, engine.latency_p50_s, VLLM_LATENCY, measured,
             LATENCY_BUCKETS),
            (serving.ttft_p50_s, engine.ttft_p50_s, VLLM_TTFT, ttfts, TTFT_BUCKETS)):
        assert estimate is not None and inner is not None
        engine_bounds = tuple(bound for bound, _ in engine_after.buckets(inner_name) or [])
        floor = bucket_of(bucket_of(inner, engine_bounds)[0], buckets)[0]
        ceiling = bucket_of(statistics.median(seen), buckets)[1]
        assert floor <= estimate <= ceiling, (inner, estimate, sorted(seen))
    tokens = serving.generation_tokens_per_s
    assert tokens is not None and tokens > 0
    assert result.where.model == model  # taken from vLLM's own labels
    per_model = [{"Name": "AutoScalingGroupName", "Value": "fleet-test"},
                 {"Name": "Model", "Value": model}]
    assert statistic(moto_port, "LatencyP50", "Maximum", per_model) == pytest.approx(
        serving.latency_p50_s)
    assert statistic(moto_port, "GenerationTokensPerSecond", "Maximum") == pytest.approx(
        tokens)
    assert statistic(moto_port, "CostPerMillionOutputTokensUSD", "Maximum") == pytest.approx(
        1.006 / (tokens * 3600) * 1e6)


async def test_stopping_flushes_even_while_backing_off(tmp_path: Path) -> None:
    """CloudWatch comes back during a long backoff and the agent is told to stop."""
    port = free_port()
    agent = Recording(settings(tmp_path, port, max_backoff_s=60), IDENTITY)
    await agent.start()
    for _ in range(3):
        await agent.run_round()
    assert agent.status.backing_off and agent.status.buffered > 0
    server = start_moto(port)
    try:
        await agent.close()  # what SIGTERM leads to
        assert statistic(port, "CostPerHourUSD") == 3
        assert agent.status.buffered == 0
    finally:
        server.stop()


# -- faults: a full or read-only disk, bad values, bad pages, a round that raises -------


def outbox_of(agent: Agent) -> OutboxThread:
    assert isinstance(agent.outbox, OutboxThread), "start() a publishing agent first"
    return agent.outbox


def buffer_of(agent: Agent) -> DatapointBuffer:
    return outbox_of(agent).outbox.buffer


async def test_a_full_disk_does_not_stop_the_rounds_being_published(
        tmp_path: Path, moto_port: int) -> None:
    agent = Agent(settings(tmp_path, moto_port), IDENTITY)
    await agent.start()
    try:
        await outbox_of(agent).run(fill_up, buffer_of(agent))
        for _ in range(3):
            await agent.run_round()
    finally:
        await agent.close()
    assert statistic(moto_port, "CostPerHourUSD") == 3  # straight to CloudWatch
    assert agent.status.sent_total == 6 and agent.status.buffered == 0


async def test_a_full_disk_during_an_outage_counts_the_lost_points_and_logs_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    agent = Agent(settings(tmp_path, free_port()), IDENTITY)  # CloudWatch down, too
    await agent.start()
    try:
        await outbox_of(agent).run(fill_up, buffer_of(agent))
        with caplog.at_level(logging.WARNING, logger="agent"):
            for _ in range(3):
                await agent.run_round()
    finally:
        await agent.close()
    assert agent.status.lost_total == 6 and agent.status.buffered == 0
    assert agent.status.rounds_total == 3
    said = [r for r in caplog.records if "could not be stored" in r.getMessage()]
    assert len(said) == 1 and "database or disk is full" in said[0].getMessage()


async def test_a_backlog_drains_once_while_the_buffer_is_read_only(tmp_path: Path) -> None:
    port = free_port()
    agent = Agent(settings(tmp_path, port), IDENTITY)
    await agent.start()
    server = None
    try:
        for _ in range(3):  # an outage: the rounds wait on disk
            await agent.run_round()
        assert agent.status.buffered == 6
        await outbox_of(agent).run(make_read_only, buffer_of(agent))
        server = start_moto(port)
        await asyncio.sleep(0.4)  # past the (0.3 s) backoff
        for _ in range(3):
            await agent.run_round()
        await agent.close()
        assert agent.status.buffered == 0 and agent.status.lost_total == 0
        assert statistic(port, "CostPerHourUSD") == 6  # every round, each exactly once
    finally:
        if server is not None:
            server.stop()


class FlakyNvml(FakeNvml):
    """NVML whose next read fails with something the collector does not expect."""

    failures = 1

    def nvmlDeviceGetUtilizationRates(self, g: FakeGpu) -> Any:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the driver returned garbage")
        return super().nvmlDeviceGetUtilizationRates(g)


async def test_a_failing_round_is_logged_and_the_loop_goes_on(
        tmp_path: Path, moto_port: int, caplog: pytest.LogCaptureFixture) -> None:
    gpu = GpuCollector(FlakyNvml([FakeGpu()]))
    agent = Agent(settings(tmp_path, moto_port), IDENTITY, gpu=gpu)
    with caplog.at_level(logging.ERROR, logger="agent"):
        async with running(agent):
            await asyncio.sleep(1.0)
    assert agent.status.round_errors_total == 1
    assert agent.status.rounds_total >= 3
    (said,) = [r for r in caplog.records if r.exc_info]
    assert "the driver returned garbage" in str(said.exc_info[1])  # type: ignore[index]
    assert statistic(moto_port, "GPUUtilization") == agent.status.rounds_total


def page(text: str) -> Starlette:
    async def metrics(request: Request) -> Response:
        return PlainTextResponse(text)

    return Starlette(routes=[Route("/metrics", metrics)])


async def test_a_nan_on_a_scraped_page_is_left_out_and_the_round_still_arrives(
        tmp_path: Path, moto_port: int) -> None:
    nan_page = "vllm:kv_cache_usage_perc NaN\nvllm:num_requests_waiting 2\n"
    with ServerThread(page(nan_page)) as engine:
        agent = Agent(settings(tmp_path, moto_port, engine_urls=[engine.url]), IDENTITY)
        await agent.start()
        try:
            await agent.run_round()  # primes
            result = await agent.run_round()
        finally:
            await agent.close()
    assert {p.name for p in result.points} >= {"RequestsWaiting", "CostPerHourUSD"}
    assert statistic(moto_port, "CostPerHourUSD") == 2
    assert statistic(moto_port, "RequestsWaiting", "Maximum") == 2
    assert statistic(moto_port, "KVCacheUsage") is None
    assert agent.status.nonfinite_total == {"KVCacheUsage": 1}
    last_round = agent.status.last_round
    assert last_round is not None
    json.dumps(last_round.model_dump(mode="json"), allow_nan=False)  # /status stays valid JSON


def streaming_page(chunks: Callable[[], Iterator[bytes]]) -> Starlette:
    async def metrics(request: Request) -> Response:
        return StreamingResponse(iterate_in_threadpool(chunks()), media_type="text/plain")

    return Starlette(routes=[Route("/metrics", metrics)])


async def test_an_oversized_page_fails_that_source_not_the_agent(
        tmp_path: Path, moto_port: int, caplog: pytest.LogCaptureFixture) -> None:
    def huge() -> Iterator[bytes]:  # 20 MiB of comments: valid text, past the 16 MiB cap
        line = b"# " + b"x" * 1021 + b"\n"
        for _ in range(20):
            yield line * 1024

    with ServerThread(streaming_page(huge)) as engine, \
            caplog.at_level(logging.WARNING, logger="agent"):
        agent = Agent(settings(tmp_path, moto_port, engine_urls=[engine.url]), IDENTITY)
        await agent.start()
        try:
            await agent.run_round()
        finally:
            await agent.close()
    assert agent.status.scrape_errors_total == {"engine0": 1}
    assert any("larger than 16777216 bytes" in r.getMessage() for r in caplog.records)
    assert statistic(moto_port, "CostPerHourUSD") == 1


async def test_a_trickling_page_is_cut_off_at_the_scrape_timeout(
        tmp_path: Path, moto_port: int) -> None:
    def slow() -> Iterator[bytes]:  # each piece well inside the read timeout; 3 s in all
        for _ in range(30):
            yield b"# still here\n"
            time.sleep(0.1)
        yield b"up 1\n"

    with ServerThread(streaming_page(slow)) as engine:
        agent = Agent(settings(tmp_path, moto_port, engine_urls=[engine.url],
                               scrape_timeout_s=0.5), IDENTITY)
        await agent.start()
        try:
            started = time.monotonic()
            await agent.run_round()
            took = time.monotonic() - started
        finally:
            await agent.close()
    assert agent.status.scrape_errors_total == {"engine0": 1}
    assert took < 2.0


async def test_a_buffer_that_cannot_be_opened_falls_back_to_memory(
        tmp_path: Path, moto_port: int) -> None:
    (tmp_path / "not-a-dir").write_text("")  # the state dir cannot be created under it
    agent = Agent(settings(tmp_path, moto_port, state_dir=tmp_path / "not-a-dir" / "state"),
                  IDENTITY)
    await agent.start()
    try:
        await agent.run_round()
    finally:
        await agent.close()
    assert statistic(moto_port, "CostPerHourUSD") == 1
