"""Router overhead, measured side by side against the same upstream direct.

    python -m benchmarks.router_bench [--quick] [--skip-vllm] [--out DIR]

(a) A fake engine (separate process) and the router pinned to its own core,
    with every feature on (auth, limits, metrics, JSON access logs), beside a
    bare pass-through with no features (benchmarks/bare_passthrough.py):
    32 concurrent non-streaming requests, then 32 concurrent 64-chunk streams,
    each straight to the engine and through the router. Reports added p50/p99
    latency, requests/s, and the router's CPU time per request and per chunk,
    read from /proc/<pid>/stat around each phase.
(b) A real vLLM engine (the generated model on this CPU): 32 concurrent
    streams of 128 tokens, direct and through the router, alternated 5 times;
    reports each round, the median of the per-round tokens/s and TTFT ratios,
    and the router's CPU per streamed token.
(c) 1,000 concurrent slow streams held through the router: errors, and the
    router's RSS sampled before, during and after two waves.

Results go to stdout and <out>/router.json, and a figure to <out>/router.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.procs import cpu_seconds, rss_mib, spawn, wait_http
from llmfleet.core.engine import EngineProcess, engine_spec_for
from llmfleet.core.net import free_port

KEY = "sk-bench"
ROUNDS_B = 5
ROUTER_CORE, LOAD_CORE = 1, 0


@dataclass
class Phase:
    name: str
    target: str
    requests: int = 0
    errors: int = 0
    chunks: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    ttfts: list[float] = field(default_factory=list, repr=False)
    router_cpu_s: float | None = None
    error_reasons: dict[str, int] = field(default_factory=dict, repr=False)

    def fail(self, reason: str) -> None:
        self.errors += 1
        self.error_reasons[reason] = self.error_reasons.get(reason, 0) + 1

    def stats(self) -> Stats:
        def pct(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

        per_s = 1 / self.wall_s if self.wall_s else 0.0
        return Stats(self.requests, self.errors, self.chunks, self.tokens, self.wall_s,
                     pct(self.latencies, 0.5) * 1e3, pct(self.latencies, 0.99) * 1e3,
                     self.requests * per_s, self.tokens * per_s,
                     pct(self.ttfts, 0.5) * 1e3, self.router_cpu_s)


@dataclass(frozen=True)
class Stats:
    requests: int
    errors: int
    chunks: int
    tokens: int
    wall_s: float
    p50_ms: float
    p99_ms: float
    rps: float
    tokens_per_s: float
    ttft_p50_ms: float
    router_cpu_s: float | None


async def one(session: aiohttp.ClientSession, url: str, body: dict[str, object],
              phase: Phase, headers: dict[str, str]) -> None:
    started = time.perf_counter()
    try:
        async with session.post(url, json=body, headers=headers) as resp:
            if resp.status != 200:
                phase.fail(f"HTTP {resp.status}: {(await resp.read())[:120]!r}")
                return
            if not body.get("stream"):
                data = await resp.json()
                phase.tokens += data["usage"]["completion_tokens"]
            else:
                first = True
                async for line in resp.content:
                    if line.startswith(b'data: {"error"'):
                        phase.fail(f"SSE error: {line[:160]!r}")
                        return
                    if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
                        if first:
                            phase.ttfts.append(time.perf_counter() - started)
                            first = False
                        phase.chunks += 1
                        if b'"usage":{' in line or b'"usage": {' in line:
                            phase.tokens += json.loads(line[6:])["usage"]["completion_tokens"]
    except (aiohttp.ClientError, TimeoutError) as exc:
        phase.fail(f"{type(exc).__name__}: {exc}"[:160])
        return
    phase.requests += 1
    phase.latencies.append(time.perf_counter() - started)


async def drive(phase: Phase, url: str, body: dict[str, object], total: int,
                concurrency: int, headers: dict[str, str], router_pid: int | None) -> Phase:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        queue = iter(range(total))

        async def worker() -> None:
            for _ in queue:
                await one(session, url, body, phase, headers)

        cpu0 = cpu_seconds(router_pid) if router_pid else None
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        phase.wall_s = time.perf_counter() - started
        if router_pid and cpu0 is not None:
            phase.router_cpu_s = cpu_seconds(router_pid) - cpu0
    return phase


async def drive_paced(phase: Phase, url: str, body: dict[str, object], total: int,
                      rate: float, headers: dict[str, str], router_pid: int | None) -> Phase:
    """Open-loop load: requests start at a fixed rate whatever the answers' pace."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        loop = asyncio.get_running_loop()
        cpu0 = cpu_seconds(router_pid) if router_pid else None
        started = loop.time()
        tasks = []
        for i in range(total):
            delay = started + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, url, body, phase, headers)))
        await asyncio.gather(*tasks)
        phase.wall_s = loop.time() - started
        if router_pid and cpu0 is not None:
            phase.router_cpu_s = cpu_seconds(router_pid) - cpu0
    return phase


def start_router(backends: list[str], run_dir: Path, core: int | None = ROUTER_CORE,
                 **settings: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    # Every feature stays on: limits are high enough never to refuse, not disabled.
    env = {"LLMFLEET_BACKENDS": ",".join(backends), "LLMFLEET_API_KEYS": f"bench:{KEY}",
           "LLMFLEET_PORT": str(port), "LLMFLEET_RATE_LIMIT_RPM": "100000000",
           "LLMFLEET_RATE_LIMIT_TPM": "10000000000", "LLMFLEET_MAX_INFLIGHT_PER_BACKEND": "1100",
           "LLMFLEET_MAX_QUEUE": "1000"}
    env.update({f"LLMFLEET_{k.upper()}": v for k, v in settings.items()})
    proc = spawn([sys.executable, "-m", "llmfleet.cli", "router"], core, env,
                 run_dir / f"router-{port}.log")
    wait_http(f"http://127.0.0.1:{port}/ready")
    return proc, f"http://127.0.0.1:{port}"


def start_fake_engine() -> tuple[subprocess.Popen[bytes], str]:
    """The fake OpenAI engine in its own process, on the load generator's core."""
    port = free_port()
    fake = spawn([sys.executable, "-m", "tests.helpers.fake_upstream", str(port)], LOAD_CORE)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health")
    return fake, url


def overhead(direct: Stats, routed: Stats) -> dict[str, object]:
    per_req = (routed.router_cpu_s or 0) / max(1, routed.requests)
    return {"direct": asdict(direct), "router": asdict(routed),
            "added_p50_ms": routed.p50_ms - direct.p50_ms,
            "added_p99_ms": routed.p99_ms - direct.p99_ms,
            "rps_ratio": routed.rps / direct.rps,
            "router_cpu_us_per_request": per_req * 1e6}


def part_a(run_dir: Path, quick: bool) -> dict[str, object]:
    fake, upstream = start_fake_engine()
    router, router_url = start_router([upstream], run_dir)
    bare_port = free_port()
    bare = spawn([sys.executable, "-m", "benchmarks.bare_passthrough", str(bare_port)],
                 ROUTER_CORE, {"UPSTREAM": upstream})
    bare_url = f"http://127.0.0.1:{bare_port}"
    n_plain, n_stream = (1000, 200) if quick else (6000, 1000)
    auth = {"authorization": f"Bearer {KEY}"}
    plain = {"model": "fake-model", "prompt": "hello", "max_tokens": 16}
    stream = {"model": "fake-model", "prompt": "hello", "max_tokens": 64, "stream": True}
    try:
        wait_http(bare_url + "/health")  # any answer will do: it is up
        for base in (router_url, bare_url):
            asyncio.run(drive(Phase("warm-up", "-"), base + "/v1/completions", plain, 300,
                              32, auth, None))
        results: dict[str, dict[str, object]] = {}
        cpu_us: dict[str, float] = {}
        for label, body, total in (("non_streaming", plain, n_plain),
                                   ("streaming_64_chunks", stream, n_stream)):
            print(f"(a) {label}: {total} requests at concurrency 32, direct then router",
                  flush=True)
            d = asyncio.run(drive(Phase(label, "direct"), upstream + "/v1/completions", body,
                                  total, 32, {}, None))
            r = asyncio.run(drive(Phase(label, "router"), router_url + "/v1/completions", body,
                                  total, 32, auth, router.pid))
            results[label] = overhead(d.stats(), r.stats())
            cpu_us[label] = (r.router_cpu_s or 0) / max(1, r.requests) * 1e6
        # A stream costs one request's work plus its chunks' relay.
        per_chunk = (cpu_us["streaming_64_chunks"] - cpu_us["non_streaming"]) / 64
        results["streaming_64_chunks"]["router_cpu_us_per_chunk"] = per_chunk
        print(f"(a) non_streaming: {n_plain} requests through a bare pass-through (the floor)",
              flush=True)
        b = asyncio.run(drive(Phase("non_streaming", "bare"), bare_url + "/v1/completions",
                              plain, n_plain, 32, {}, bare.pid))
        results["non_streaming"]["bare_cpu_us_per_request"] = (
            (b.router_cpu_s or 0) / max(1, b.requests) * 1e6)
        # Like tokens from an engine: one event per write, 2 ms apart, 32 streams.
        paced = {**stream, "max_tokens": 128, "fake_chunk_delay_s": 0.002}
        n_paced = 64 if quick else 320
        print(f"(a) {n_paced} streams of 128 events paced 2 ms apart, direct then router",
              flush=True)
        d = asyncio.run(drive(Phase("paced", "direct"), upstream + "/v1/completions", paced,
                              n_paced, 32, {}, None))
        r = asyncio.run(drive(Phase("paced", "router"), router_url + "/v1/completions", paced,
                              n_paced, 32, auth, router.pid))
        results["streaming_paced_events"] = overhead(d.stats(), r.stats())
        results["streaming_paced_events"]["router_cpu_us_per_event"] = (
            (r.router_cpu_s or 0) / max(1, r.chunks) * 1e6)
        rate, paced_total = 1000.0, (2000 if quick else 10000)
        print(f"(a) non_streaming paced at {rate:.0f} req/s (below saturation), direct then "
              "router", flush=True)
        d = asyncio.run(drive_paced(Phase("paced", "direct"), upstream + "/v1/completions",
                                    plain, paced_total, rate, {}, None))
        r = asyncio.run(drive_paced(Phase("paced", "router"), router_url + "/v1/completions",
                                    plain, paced_total, rate, auth, router.pid))
        results["non_streaming_paced_1000rps"] = overhead(d.stats(), r.stats())
        # A stream costs one request's work plus its chunks' relay.
        per_chunk = (cpu_us["streaming_64_chunks"] - cpu_us["non_streaming"]) / 64
        results["streaming_64_chunks"]["router_cpu_us_per_chunk"] = per_chunk
        return dict(results)
    finally:
        for proc in (router, bare, fake):
            proc.terminate()
            proc.wait(10)


def part_b(run_dir: Path, quick: bool) -> dict[str, object]:
    spec = engine_spec_for("", free_port())
    engine = EngineProcess(spec, run_dir / "bench-vllm.log")
    print("(b) starting vLLM on the generated model ...", flush=True)
    engine.start()
    router = None
    try:
        engine.wait_ready()
        # vLLM's CPU worker owns core 0 and its API server and engine loop live on
        # core 1: pinning the router there would measure a fight for that core.
        router, router_url = start_router([spec.url], run_dir, core=None)
        body = {"model": spec.served_name, "prompt": "Once upon a time", "max_tokens": 128,
                "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
        total = 64 if quick else 128
        asyncio.run(drive(Phase("warm-up", "direct"), spec.url + "/v1/completions", body, 32,
                          32, {}, None))
        auth = {"authorization": f"Bearer {KEY}"}
        rounds: list[tuple[Stats, Stats]] = []
        for i in range(ROUNDS_B):
            pair = []
            for target, base, headers in (("direct", spec.url, {}), ("router", router_url, auth)):
                print(f"(b) round {i + 1}/{ROUNDS_B}: {total} streams x 128 tokens via {target}",
                      flush=True)
                pid = router.pid if target == "router" else None
                phase = asyncio.run(drive(Phase("vllm_streams", target),
                                          base + "/v1/completions", body, total, 32, headers, pid))
                pair.append(phase.stats())
            rounds.append((pair[0], pair[1]))
        return summarise_b(rounds)
    finally:
        if router is not None:
            router.terminate()
            router.wait(10)
        engine.stop()


def summarise_b(rounds: list[tuple[Stats, Stats]]) -> dict[str, object]:
    """Per-round ratios and their median: on a 2-core machine vLLM's own processes
    saturate the CPU and stall for seconds now and then, on either path."""
    tps_ratio = [r.tokens_per_s / d.tokens_per_s for d, r in rounds]
    ttft_ratio = [d.ttft_p50_ms / r.ttft_p50_ms for d, r in rounds]
    cpu_s = sum(r.router_cpu_s or 0 for _, r in rounds)
    tokens = sum(r.tokens for _, r in rounds)
    return {
        "rounds": [{"direct_tokens_per_s": d.tokens_per_s, "router_tokens_per_s": r.tokens_per_s,
                    "direct_ttft_p50_ms": d.ttft_p50_ms, "router_ttft_p50_ms": r.ttft_p50_ms,
                    "direct_errors": d.errors, "router_errors": r.errors} for d, r in rounds],
        "median_tokens_per_s_ratio": statistics.median(tps_ratio),
        "median_ttft_ratio_direct_over_router": statistics.median(ttft_ratio),
        "router_cpu_us_per_streamed_token": cpu_s / max(1, tokens) * 1e6,
        "router_cpu_share_of_a_core": cpu_s / sum(r.wall_s for _, r in rounds),
    }


def part_c(run_dir: Path, quick: bool) -> dict[str, object]:
    fake, upstream = start_fake_engine()
    router, router_url = start_router([upstream], run_dir)
    streams = 300 if quick else 1000
    body = {"model": "fake-model", "prompt": "x", "max_tokens": 20, "stream": True,
            "fake_chunk_delay_s": 0.25}
    samples: list[float] = [rss_mib(router.pid)]
    waves: list[dict[str, object]] = []
    try:
        for wave in range(2):
            print(f"(c) wave {wave + 1}: {streams} concurrent streams of 20 chunks, 5 s each",
                  flush=True)

            async def run_wave() -> Phase:
                phase = Phase("held", "router")
                task = asyncio.create_task(drive(phase, router_url + "/v1/completions", body,
                                                 streams, streams,
                                                 {"authorization": f"Bearer {KEY}"}, None))
                while not task.done():
                    samples.append(rss_mib(router.pid))
                    await asyncio.sleep(0.5)
                return await task

            phase = asyncio.run(run_wave())
            waves.append({"completed": phase.requests, "errors": phase.errors,
                          "wall_s": phase.wall_s, "rss_after_mib": rss_mib(router.pid)})
        return {"streams": streams, "waves": waves, "rss_start_mib": samples[0],
                "rss_peak_mib": max(samples), "rss_samples_mib": samples}
    finally:
        for proc in (router, fake):
            proc.terminate()
            proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument("--skip-vllm", action="store_true", help="skip part (b)")
    parser.add_argument("--out", type=Path, default=Path(".run/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "python": sys.version}}
    results["a_fake_upstream"] = part_a(args.out, args.quick)
    if not args.skip_vllm:
        results["b_real_vllm"] = part_b(args.out, args.quick)
    results["c_held_streams"] = part_c(args.out, args.quick)
    (args.out / "router.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2, default=str))
    from benchmarks.plots import plot_router

    print(f"plot: {plot_router(results, args.out / 'router.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
