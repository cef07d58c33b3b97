"""Cache-aware balancing against least outstanding, on two real vLLM engines, in one run.

    python -m benchmarks.prefix_bench [--quick] [--out DIR]      (make bench-prefix)

Two engines of the generated wide model (8 layers of width 512, in float32, so that a
prompt's prefill costs something on this CPU: ~1.2 s for 1,140 tokens, ~0.2 s with them
cached), each with a KV cache of `KV_TOKENS` tokens and vLLM's prefix caching (on by
default). Two routers in front of both engines, the same in all but
one setting: cache-aware balancing on (`LLMFLEET_PREFIX_ROUTING=true`, `server.prefix`) or
off (least outstanding requests).

Two workloads, each request a streamed chat completion of `MAX_TOKENS` tokens, `CONCURRENCY`
in flight at once; the time to first token is the time to the first chunk with text, seen by
the client:

- shared: `CONVERSATIONS` conversations, each with its own long system prompt (a document of
  about `CONTEXT_WORDS` words, ~1,140 tokens) and a new short question at each of `TURNS`
  turns; every round asks each conversation once, in a shuffled order. Together the system
  prompts outgrow one engine's cache (about 1.7 times) but fit in both.
- nothing shared: as many requests of the same length, each its own text.

Every phase has its own texts (no phase reads what another cached) and the phases alternate
(least outstanding, then cache-aware, `ROUNDS` times for each workload), so that drift on
this machine falls on both. Reports TTFT p50 and p95 for each policy and workload, pooled
over the rounds, and the ratio of least outstanding's to cache-aware's. The target (issue
20): TTFT p50 at least 2x lower with cache-aware balancing on the shared workload, and no
loss within noise on the other.

Results go to stdout and <out>/prefix.json, the figure to <out>/prefix.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.router_bench import KEY, start_router
from llmfleet.core.engine import EngineProcess, engine_spec_for
from llmfleet.core.net import free_port
from llmfleet.core.stats import percentile

MODEL = "llmfleet-wide"
# float32: this CPU has no bfloat16 arithmetic (no AVX-512), and the generated model's bf16
# read prompts at ~135 tokens/s per engine against ~1,000 in float32.
DTYPE = "float32"
KV_TOKENS = 8_192
KV_BYTES_PER_TOKEN = 2 * 8 * 2 * 64 * 4  # K and V, 8 layers, 2 KV heads of 64, float32
CONVERSATIONS = 12
CONTEXT_WORDS = 560  # ~1,140 tokens with the generated model's tokenizer
TURNS = 3
CONCURRENCY = 4
MAX_TOKENS = 4
ROUNDS = 2
WORDS = ("fleet", "router", "engine", "cache", "prefix", "token", "model", "scale", "queue",
         "price", "instance", "group", "alarm", "metric", "budget", "region", "latency")


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def shared_workload(seed: int, conversations: int) -> list[list[dict[str, str]]]:
    """Each conversation's system prompt asked `TURNS` questions: a round is every
    conversation once, in a shuffled order."""
    rng = random.Random(seed)
    contexts = [f"Document {seed}-{c}: {text(rng, CONTEXT_WORDS)}" for c in range(conversations)]
    requests = []
    for turn in range(TURNS):
        order = list(range(conversations))
        rng.shuffle(order)
        requests += [[{"role": "system", "content": contexts[c]},
                      {"role": "user", "content": f"Question {turn}: {text(rng, 8)}?"}]
                     for c in order]
    return requests


def unshared_workload(seed: int, count: int) -> list[list[dict[str, str]]]:
    """`count` prompts as long as the shared ones, none beginning like another."""
    rng = random.Random(seed)
    return [[{"role": "system", "content": f"Document {seed}-{i}: {text(rng, CONTEXT_WORDS)}"},
             {"role": "user", "content": f"Question: {text(rng, 8)}?"}] for i in range(count)]


async def ttft(client: httpx.AsyncClient, url: str,
               messages: list[dict[str, str]]) -> float | None:
    """Seconds to the first chunk with text; None for a failed request."""
    started = time.perf_counter()
    body = {"model": MODEL, "messages": messages, "max_tokens": MAX_TOKENS, "stream": True}
    first: float | None = None
    async with client.stream("POST", url + "/v1/chat/completions", json=body,
                             headers={"authorization": f"Bearer {KEY}"}) as resp:
        if resp.status_code != 200:
            return None
        async for line in resp.aiter_lines():  # read to the end: the request completes
            compact = line.replace(" ", "")
            if first is None and line.startswith("data: {") and '"content":"' in compact \
                    and '"content":""' not in compact:
                first = time.perf_counter() - started
    return first


async def drive(url: str, requests: list[list[dict[str, str]]]) -> tuple[list[float], int]:
    """Every request through `url`, `CONCURRENCY` at a time in order: TTFTs and failures."""
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=300) as client:
        async def one(messages: list[dict[str, str]]) -> float | None:
            async with gate:
                return await ttft(client, url, messages)
        found = await asyncio.gather(*(one(m) for m in requests))
    return [t for t in found if t is not None], sum(t is None for t in found)


def summary(ttfts: list[float], failed: int) -> dict[str, Any]:
    ordered = sorted(ttfts)
    return {"requests": len(ttfts) + failed, "failed": failed,
            "ttft_p50_s": percentile(ordered, 50), "ttft_p95_s": percentile(ordered, 95),
            "ttft_mean_s": statistics.fmean(ordered) if ordered else None}


def run(out: Path, quick: bool) -> dict[str, Any]:
    conversations = 6 if quick else CONVERSATIONS
    rounds = 1 if quick else ROUNDS
    kv = f"--dtype {DTYPE} --kv-cache-memory-bytes {KV_TOKENS * KV_BYTES_PER_TOKEN}"
    specs = [engine_spec_for(MODEL, free_port(), kv) for _ in range(2)]
    engines = [EngineProcess(s, out / f"prefix-vllm-{i}.log") for i, s in enumerate(specs)]
    started = time.perf_counter()
    for engine in engines:
        engine.start()
    routers = []
    try:
        for engine in engines:
            engine.wait_ready(timeout_s=900)
        print(f"engines ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        backends = [s.url for s in specs]
        routers = [start_router(backends, out, core=None, prefix_routing=value)
                   for value in ("false", "true")]
        urls = {"least-outstanding": routers[0][1], "cache-aware": routers[1][1]}
        measured: dict[str, dict[str, list[float]]] = {}
        per_round: list[dict[str, Any]] = []
        failures: dict[str, dict[str, int]] = {}
        seed = 0
        for workload in ("shared", "nothing-shared"):
            for round_ in range(rounds):
                for policy, url in urls.items():
                    seed += 1
                    requests = (shared_workload(seed, conversations) if workload == "shared"
                                else unshared_workload(seed, conversations * TURNS))
                    t0 = time.perf_counter()
                    ttfts, failed = asyncio.run(drive(url, requests))
                    measured.setdefault(workload, {}).setdefault(policy, []).extend(ttfts)
                    per_round.append({"workload": workload, "round": round_ + 1,
                                      "policy": policy, **summary(ttfts, failed)})
                    failures.setdefault(workload, {}).setdefault(policy, 0)
                    failures[workload][policy] += failed
                    print(f"  {workload}, round {round_ + 1}, {policy}: {len(requests)} "
                          f"requests in {time.perf_counter() - t0:.0f} s, TTFT p50 "
                          f"{percentile(sorted(ttfts), 50) or 0:.3f} s", file=sys.stderr)
    finally:
        for router, _ in routers:
            router.terminate()
            router.wait(timeout=30)
        for engine in engines:
            engine.stop()
    results: dict[str, Any] = {"model": MODEL, "kv_tokens_per_engine": KV_TOKENS,
                               "conversations": conversations, "turns": TURNS,
                               "context_words": CONTEXT_WORDS, "concurrency": CONCURRENCY,
                               "max_tokens": MAX_TOKENS, "rounds": rounds, "workloads": {},
                               "per_round": per_round}
    for workload, by_policy in measured.items():
        entry: dict[str, Any] = {p: summary(t, failures[workload][p])
                                 for p, t in by_policy.items()}
        lo, ca = entry["least-outstanding"], entry["cache-aware"]
        for stat in ("p50", "p95"):
            key = f"ttft_{stat}_s"
            entry[f"{stat}_ratio"] = lo[key] / ca[key] if lo[key] and ca[key] else None
        results["workloads"][workload] = entry
    return results


def plot(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (workload, entry) in zip(axes, results["workloads"].items(), strict=False):
        policies = ["least-outstanding", "cache-aware"]
        p50 = [entry[p]["ttft_p50_s"] * 1000 for p in policies]
        p95 = [entry[p]["ttft_p95_s"] * 1000 for p in policies]
        xs = range(len(policies))
        ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50", color="#4878a8")
        ax.bar([x + 0.2 for x in xs], p95, width=0.4, label="p95", color="#a8c4e0")
        ax.set_xticks(list(xs), policies)
        ax.set_ylabel("time to first token (ms)")
        ratio = entry["p50_ratio"]
        ax.set_title(f"{workload}: p50 {ratio:.2f}x" if ratio else workload)
        ax.legend()
    fig.suptitle(f"Two vLLM engines ({results['model']}, CPU), {results['conversations']} "
                 f"conversations x {results['turns']} turns, {results['concurrency']} in flight")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="6 conversations (they fit one engine's cache), one round")
    parser.add_argument("--out", type=Path, default=Path(".run/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = run(args.out, args.quick)
    (args.out / "prefix.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"plot: {plot(results, args.out / 'prefix.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
