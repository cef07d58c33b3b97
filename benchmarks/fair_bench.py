"""A flooding key and a polite key through the router's queue: fair, and in arrival order.

    python -m benchmarks.fair_bench [--out DIR]                 (make bench-fair)

The fake engine (its own process) answers each request with a stream of `TOKENS` events
`DELAY_S` apart; the router (its own process) lets each engine hold `INFLIGHT` requests, so
that the queue, not the engine, decides who waits. The polite key sends `POLITE` requests
one after another, first alone (its unloaded latency), then while the flooding key keeps
`FLOOD` requests in flight at all times, through a router with the fair queue
(`LLMFLEET_FAIR_QUEUE=true`, the default) and one serving in arrival order (`false`), each
twice, alternated. Reports the polite key's latency p50 and p95 in each case, the flood's
throughput, and the engine's (both keys': fairness must not cost the engine's work).

Results go to stdout and <out>/fair.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.procs import spawn, wait_http
from benchmarks.router_bench import start_router
from llmfleet.core.net import free_port
from llmfleet.core.stats import percentile

FLOOD_KEY, POLITE_KEY = "sk-bench-flood", "sk-bench-polite"
TOKENS, DELAY_S = 20, 0.01  # ~0.2 s a request
INFLIGHT = 4
FLOOD = 64
POLITE = 30
ROUNDS = 2


def start_fair_router(engine: str, out: Path, fair: bool) -> tuple[subprocess.Popen[bytes], str]:
    """`benchmarks.router_bench.start_router` with the two keys, no per-key limits, room
    for the whole flood in the queue, and the fair queue on or off."""
    return start_router([engine], out, core=None,
                        api_keys=f"flood:{FLOOD_KEY},polite:{POLITE_KEY}",
                        max_inflight_per_backend=str(INFLIGHT), max_queue="1000",
                        queue_timeout_s="120", rate_limit_rpm="0", rate_limit_tpm="0",
                        fair_queue=str(fair).lower(), log_level="WARNING")


async def one(client: httpx.AsyncClient, url: str, key: str) -> float:
    started = time.perf_counter()
    body = {"model": "fake-model", "max_tokens": TOKENS, "stream": True,
            "fake_chunk_delay_s": DELAY_S, "messages": [{"role": "user", "content": "hi"}]}
    async with client.stream("POST", url + "/v1/chat/completions", json=body,
                             headers={"authorization": f"Bearer {key}"}) as resp:
        async for _ in resp.aiter_bytes():
            pass
        if resp.status_code != 200:
            raise RuntimeError(f"{key}: HTTP {resp.status_code}")
    return time.perf_counter() - started


async def polite_under(url: str, flood: bool) -> dict[str, Any]:
    """The polite key's latencies, with or without a flood holding `FLOOD` in flight."""
    limits = httpx.Limits(max_connections=FLOOD + 8, max_keepalive_connections=FLOOD + 8)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        stop = asyncio.Event()
        flooded = 0

        async def flooder() -> None:
            nonlocal flooded
            while not stop.is_set():
                await one(client, url, FLOOD_KEY)
                flooded += 1

        tasks = [asyncio.create_task(flooder()) for _ in range(FLOOD if flood else 0)]
        await asyncio.sleep(2.0 if flood else 0)  # the queue fills
        started, before = time.perf_counter(), flooded
        latencies = [await one(client, url, POLITE_KEY) for _ in range(POLITE)]
        wall, done = time.perf_counter() - started, flooded - before
        stop.set()
        await asyncio.gather(*tasks)
    ordered = sorted(latencies)
    return {"p50_s": percentile(ordered, 50), "p95_s": percentile(ordered, 95),
            "mean_s": statistics.fmean(ordered), "flood_requests_per_s": done / wall,
            "engine_requests_per_s": (done + POLITE) / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(".run/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    engine = spawn([sys.executable, "-m", "tests.helpers.fake_upstream", str(port)], None)
    engine_url = f"http://127.0.0.1:{port}"
    wait_http(engine_url + "/health")
    routers = {}
    try:
        routers = {name: start_fair_router(engine_url, args.out, fair)
                   for name, fair in (("fair", True), ("arrival-order", False))}
        results: dict[str, Any] = {"inflight_per_engine": INFLIGHT, "flood_in_flight": FLOOD,
                                   "polite_requests": POLITE, "request_s": TOKENS * DELAY_S,
                                   "unloaded": asyncio.run(
                                       polite_under(routers["fair"][1], flood=False))}
        runs: dict[str, list[dict[str, Any]]] = {"fair": [], "arrival-order": []}
        for round_ in range(ROUNDS):
            for name, (_, url) in routers.items():
                found = asyncio.run(polite_under(url, flood=True))
                runs[name].append(found)
                print(f"  round {round_ + 1}, {name}: polite p50 {found['p50_s']:.3f} s, "
                      f"p95 {found['p95_s']:.3f} s; flood {found['flood_requests_per_s']:.1f} "
                      "req/s", file=sys.stderr)
        results["flooded"] = runs
    finally:
        for proc, _ in routers.values():
            proc.terminate()
            proc.wait(timeout=30)
        engine.terminate()
        engine.wait(timeout=30)
    (args.out / "fair.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
