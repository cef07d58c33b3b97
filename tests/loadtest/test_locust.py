"""The Locust load test, headless, against the real local stack (router + vLLM on CPU).

Locust runs as its own process (it monkey-patches the standard library with
gevent), so these tests drive it the way `make load` does and compare what it
reports with what the router counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmfleet.core.net import free_port
from tests.helpers.router import TEST_KEY, RouterFactory
from tests.helpers.servers import ServerThread

pytestmark = pytest.mark.engine
LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"


def locust(*args: str, key: str = TEST_KEY,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCUST_API_KEY": key}
    return subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args],
                          capture_output=True, text=True, env=env, timeout=timeout, check=False)


def headless(host: str, out: Path, *args: str) -> list[str]:
    return ["--headless", "--only-summary", "--host", host, "--stop-timeout", "60",
            "--ignore-eos", "--summary-json", str(out / "summary.json"), *args]


def router_counts(url: str) -> dict[str, float]:
    """Requests (2xx) and tokens the router counted, summed over models."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    counts = {"requests": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "llmfleet_requests_total" and sample.labels["status"] == "2xx":
                counts["requests"] += sample.value
            elif sample.name in ("llmfleet_prompt_tokens_total",
                                 "llmfleet_completion_tokens_total"):
                counts[sample.name.removeprefix("llmfleet_").removesuffix("_total")] += (
                    sample.value)
    return counts


@pytest.fixture
def router(vllm_engine: tuple[str, str], make_router: RouterFactory) -> Iterator[ServerThread]:
    with make_router([vllm_engine[0]], rate_limit_rpm=0, rate_limit_tpm=0) as server:
        yield server


def test_streamed_chat_numbers_match_what_the_router_saw(router: ServerThread,
                                                          tmp_path: Path) -> None:
    before = router_counts(router.url)
    result = locust(*headless(router.url, tmp_path, "-u", "3", "-r", "3", "-t", "6s",
                              "--rate", "6", "--workload", "fixed:24:16",
                              "--extra-body", '{"temperature": 0.5}',
                              "--sla", "ttft_p99_ms<=60000,error_rate<=0",
                              "--csv", str(tmp_path / "locust"),
                              "--html", str(tmp_path / "report.html")),
                    "StreamingChatUser")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SLA met" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    seen = {k: router_counts(router.url)[k] - before[k] for k in before}

    assert summary["failures"] == 0
    assert summary["requests"] == seen["requests"] > 0
    assert summary["output_tokens"] == seen["completion_tokens"] == 16 * summary["requests"]
    assert summary["prompt_tokens"] == seen["prompt_tokens"]
    # The same requests, each with TTFT <= end to end: so every percentile keeps the order.
    ttft, tpot, e2e = (summary["latency_ms"][k] for k in ("ttft", "tpot", "e2e"))
    assert all(t <= e for t, e in zip(ttft, e2e, strict=True))
    assert all(0 < v < e for v, e in zip(tpot, e2e, strict=True))
    # Three users paced to 6 requests/s in total.
    assert summary["requests_per_s"] == pytest.approx(6, rel=0.25)

    stats = (tmp_path / "locust_stats.csv").read_text()
    assert 'E2E,chat stream,' in stats and 'TTFT,chat stream,' in stats
    assert 'TPOT,chat stream,' in stats
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_every_scenario_in_distributed_mode(router: ServerThread, tmp_path: Path) -> None:
    """A master and a worker: the worker's samples reach the master's summary."""
    before = router_counts(router.url)
    port = free_port()
    env = {**os.environ, "LOCUST_API_KEY": TEST_KEY}
    worker = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
         "--master-host", "127.0.0.1", "--master-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        result = locust(*headless(router.url, tmp_path, "--master", "--expect-workers", "1",
                                  "--master-bind-host", "127.0.0.1", "--master-bind-port",
                                  str(port), "-u", "4", "-r", "4", "-t", "5s",
                                  "--workload", "fixed:16:8"))
    finally:
        worker.wait(timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    seen = {k: router_counts(router.url)[k] - before[k] for k in before}
    assert summary["requests"] == seen["requests"] > 0
    assert summary["output_tokens"] == seen["completion_tokens"]
    for scenario in ("chat stream", "chat json", "completions stream", "completions json"):
        assert f"E2E      {scenario}" in result.stdout + result.stderr  # Locust's table


def test_a_missed_sla_exits_1_and_says_which(router: ServerThread, tmp_path: Path) -> None:
    result = locust(*headless(router.url, tmp_path, "-u", "1", "-t", "2s",
                              "--workload", "fixed:8:4", "--sla", "ttft_p50_ms<=0.001"),
                    "StreamingCompletionUser")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SLA MISSED: ttft_p50_ms<=0.001 (missed:" in result.stdout


def test_wrong_key_stops_before_the_load(router: ServerThread, tmp_path: Path) -> None:
    result = locust(*headless(router.url, tmp_path, "-u", "1", "-t", "5s"), key="sk-wrong")
    assert result.returncode == 2
    assert "/v1/models answered HTTP 401 (check --api-key)" in result.stderr
    assert "sk-wrong" not in result.stdout + result.stderr


def test_unreachable_host_is_a_clear_error(tmp_path: Path) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    result = locust(*headless(host, tmp_path, "-u", "1", "-t", "5s"))
    assert result.returncode == 2
    assert f"cannot reach {host}/v1/models: [Errno 111] Connection refused" in result.stderr


@pytest.mark.parametrize(("option", "message"), [
    (("--workload", "fixed:x:1"), "lengths must be whole numbers"),
    (("--shape", "step:9:1"), "N must be 1..1"),
    (("--sla", "p95<=1"), "unknown metric 'p95'"),
    (("--extra-body", "[1]"), "--extra-body must be a JSON object"),
    (("--extra-body", "{temperature"), "--extra-body is not JSON"),
])
def test_bad_options_are_refused(tmp_path: Path, option: tuple[str, str], message: str) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    result = locust(*headless(host, tmp_path, "-u", "1", "-t", "5s", *option))
    assert result.returncode == 2
    assert message in result.stderr
