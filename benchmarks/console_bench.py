"""What the web console costs the router: the fleet sampler and the planner endpoint.

    python -m benchmarks.console_bench    (make bench-console)

The fleet view's background task snapshots the router's registry and computes rates and
percentiles every 2 s whether or not a page is open; this times one sample on a registry
shaped like a busy router's (3 models with every status class, 4 backends). The sizing
explorer's request runs the planner's search on a worker thread; this times the whole
answer as `POST /console/plan` builds it. Medians and worst of repeated runs; writes
docs/benchmarks/console.json.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from llmfleet.core.serving import compute
from server.console import PlanRequest, answer_plan
from server.fleet import registry_snapshot
from server.metrics import RouterMetrics

OUT = Path("docs/benchmarks")
SAMPLE_INTERVAL_S = 2.0  # the default LLMFLEET_CONSOLE_INTERVAL_S


def busy_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    for model in ("small", "large", "auto"):
        series = metrics.model(model)
        for status in ("2xx", "4xx", "5xx"):
            series.count(status)
        for i in range(200):
            series.latency.observe(i / 20)
            series.ttft.observe(i / 200)
            series.itl.observe(i / 2000)
    for b in range(4):
        url = f"http://10.0.0.{b}:8001"
        metrics.in_flight.labels(url).inc()
        metrics.backend_healthy.labels(url).set(1)
    return registry


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return {"median_ms": statistics.median(samples) * 1e3, "worst_ms": max(samples) * 1e3,
            "runs": runs}


def main() -> None:
    registry = busy_registry()
    previous = registry_snapshot(registry, 0.0)

    def sample() -> None:
        compute((previous, registry_snapshot(registry, 2.0)), [])

    fleet = timed(sample, 500)
    fleet["samples_in_registry"] = len(previous.values)
    fleet["share_of_one_core_pct"] = fleet["median_ms"] / (SAMPLE_INTERVAL_S * 1e3) * 100
    questions = {
        "Llama-3.1-8B 512/256, TTFT<=1s TPOT<=50ms, 20 req/s": PlanRequest(
            model="Llama-3.1-8B", ttft_ms=1000, tpot_ms=50, rate=20),
        "Llama-3.1-70B 2048/512, TPOT<=60ms": PlanRequest(
            model="Llama-3.1-70B", input_len=2048, output_len=512, tpot_ms=60),
    }
    plan = {name: timed(partial(answer_plan, q), 20) for name, q in questions.items()}
    result = {"fleet_sample": fleet, "plan_answer": plan}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "console.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"fleet sample ({fleet['samples_in_registry']} series samples): median "
          f"{fleet['median_ms']:.2f} ms, worst {fleet['worst_ms']:.2f} ms; every "
          f"{SAMPLE_INTERVAL_S:g} s that is {fleet['share_of_one_core_pct']:.3f}% of one core")
    for name, t in plan.items():
        print(f"POST /console/plan, {name}: median {t['median_ms']:.1f} ms, "
              f"worst {t['worst_ms']:.1f} ms")
    print(f"wrote {OUT / 'console.json'}")


if __name__ == "__main__":
    main()
