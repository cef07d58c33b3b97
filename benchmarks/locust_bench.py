"""How many concurrent streams one Locust worker measures faithfully on this machine.

    python -m benchmarks.locust_bench [--quick] [--out DIR]

A load generator that runs out of CPU still reports numbers: they are its own
queueing, not the server's latency. To find where that starts, one Locust
process (the `StreamingCompletionUser` of loadtest/locustfile.py) is pinned to
one core and the server side to the other: the router, whose TTFT histogram
(`llmfleet_time_to_first_token_seconds`) is the server's own view, in front of
the fake engine, which streams 64 tokens 10 ms apart for almost no CPU (the
tiny vLLM model on one core cannot produce tokens fast enough to load Locust).
Each level runs N users for a fixed time; the same requests are timed on both
sides in one run, so the gap between Locust's mean TTFT and the router's is
what the client adds. While Locust has CPU to spare the gap is flat (network
and parsing); once its core saturates, it grows.

Results go to stdout, <out>/locust.json and the figure <out>/locust.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.procs import cpu_seconds, spawn
from benchmarks.router_bench import KEY, start_fake_engine, start_router

LOCUST_CORE, SERVER_CORE = 1, 0
LOCUSTFILE = Path(__file__).resolve().parents[1] / "loadtest" / "locustfile.py"
TOKENS, TOKEN_GAP_S = 64, 0.01


def router_ttft(url: str) -> tuple[float, float]:
    """(sum of seconds, count) of the router's TTFT histogram, over all models."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    total, count = 0.0, 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "llmfleet_time_to_first_token_seconds_sum":
                total += sample.value
            elif sample.name == "llmfleet_time_to_first_token_seconds_count":
                count += sample.value
    return total, count


def run_level(router: str, users: int, seconds: int, out: Path) -> dict[str, float]:
    prefix = out / f"locust-{users}"
    before = router_ttft(router)
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "--host", router, "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
           "--stop-timeout", "30", "--workload", f"fixed:16:{TOKENS}",
           "--extra-body", json.dumps({"fake_chunk_delay_s": TOKEN_GAP_S}),
           "--summary-json", f"{prefix}.json", "--csv", str(prefix), "StreamingCompletionUser"]
    started = time.monotonic()
    proc = spawn(cmd, LOCUST_CORE, {"LOCUST_API_KEY": KEY}, out / f"locust-{users}.log")
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        try:
            samples.append((time.monotonic() - started, cpu_seconds(proc.pid)))
        except (OSError, IndexError):
            break
        time.sleep(0.5)
    if proc.returncode not in (0, None):
        raise RuntimeError(f"locust exited {proc.returncode}; see {out}/locust-{users}.log")
    after = router_ttft(router)
    # Locust's CPU over the steady part: from 3 s in (imports, spawning) to its last sample.
    steady = [s for s in samples if s[0] >= 3.0]
    cpu_pct = ((steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0]) * 100
               if len(steady) > 1 else float("nan"))
    summary = json.loads(Path(f"{prefix}.json").read_text())
    with Path(f"{prefix}_stats.csv").open() as handle:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(handle)}
    locust_mean = float(rows[("TTFT", "completions stream")]["Average Response Time"])
    counted = after[1] - before[1]
    server_mean = (after[0] - before[0]) / counted * 1000 if counted else float("nan")
    return {
        "users": users, "locust_cpu_pct": cpu_pct, "streams": summary["requests"],
        "failures": summary["failures"], "streams_per_s": summary["requests_per_s"],
        "tokens_per_s": summary["output_tokens_per_s"],
        "router_streams": counted, "locust_ttft_mean_ms": locust_mean,
        "router_ttft_mean_ms": server_mean, "gap_ms": locust_mean - server_mean,
        "locust_ttft_p50_ms": summary["latency_ms"]["ttft"][0],
        "locust_ttft_p99_ms": summary["latency_ms"]["ttft"][2],
        "locust_tpot_p50_ms": summary["latency_ms"]["tpot"][0],
    }


def plot(levels: list[dict[str, float]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [lv["users"] for lv in levels]
    fig, (gap, cpu) = plt.subplots(1, 2, figsize=(12, 4.5))
    gap.plot(users, [lv["locust_ttft_mean_ms"] for lv in levels], "o-", label="Locust TTFT")
    gap.plot(users, [lv["router_ttft_mean_ms"] for lv in levels], "s-",
             label="router's own TTFT (histogram)")
    gap.set_xscale("log", base=2)
    gap.set_xlabel("concurrent streams (Locust users)")
    gap.set_ylabel("mean TTFT (ms)")
    gap.set_title("same requests, timed by client and server")
    gap.legend()
    gap.grid(alpha=0.3)
    cpu.plot(users, [lv["locust_cpu_pct"] for lv in levels], "o-", color="#c0392b",
             label="Locust process CPU (%)")
    cpu.axhline(100, color="grey", ls=":")
    cpu.set_xscale("log", base=2)
    cpu.set_xlabel("concurrent streams (Locust users)")
    cpu.set_ylabel("CPU (% of one core)")
    twin = cpu.twinx()
    twin.plot(users, [lv["tokens_per_s"] for lv in levels], "s--", color="#4878a8",
              label="tokens/s received")
    twin.set_ylabel("tokens/s")
    cpu.set_title("one Locust worker's core, and what it received")
    cpu.legend(loc="upper left")
    twin.legend(loc="lower right")
    fig.tight_layout()
    path = out / "locust.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two short levels, a smoke run")
    parser.add_argument("--out", type=Path, default=Path(".run/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    user_levels = [8, 32] if args.quick else [8, 32, 64, 128, 256]
    seconds = 8 if args.quick else 20
    fake, fake_url = start_fake_engine()  # pinned to SERVER_CORE (core 0)
    router, router_url = start_router([fake_url], args.out, core=SERVER_CORE)
    levels = []
    try:
        for users in user_levels:
            level = run_level(router_url, users, seconds, args.out)
            levels.append(level)
            print(f"{users:>4} users: Locust CPU {level['locust_cpu_pct']:5.1f}%, "
                  f"{level['tokens_per_s']:8.0f} tokens/s, TTFT Locust "
                  f"{level['locust_ttft_mean_ms']:6.1f} ms vs router "
                  f"{level['router_ttft_mean_ms']:6.1f} ms (gap {level['gap_ms']:+.1f} ms)",
                  flush=True)
    finally:
        for proc in (router, fake):
            proc.terminate()
            proc.wait(10)
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version},
               "tokens_per_stream": TOKENS, "token_gap_s": TOKEN_GAP_S,
               "seconds_per_level": seconds, "levels": levels}
    (args.out / "locust.json").write_text(json.dumps(results, indent=2))
    print(f"results: {args.out / 'locust.json'}; plot: {plot(levels, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
