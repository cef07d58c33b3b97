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


def run_level(router: str, users: int, seconds: int, out: Path,
              per_write: int = 1) -> dict[str, float]:
    prefix = out / f"locust-{users}-{per_write}"
    before = router_ttft(router)
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "--host", router, "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
           "--stop-timeout", "30", "--workload", f"fixed:16:{TOKENS}",
           "--extra-body", json.dumps({"fake_chunk_delay_s": TOKEN_GAP_S,
                                       "fake_events_per_write": per_write}),
           "--summary-json", f"{prefix}.json", "--csv", str(prefix), "StreamingCompletionUser"]
    started = time.monotonic()
    proc = spawn(cmd, LOCUST_CORE, {"LOCUST_API_KEY": KEY}, Path(f"{prefix}.log"))
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        try:
            samples.append((time.monotonic() - started, cpu_seconds(proc.pid)))
        except (OSError, IndexError):
            break
        time.sleep(0.5)
    if proc.returncode not in (0, None):
        raise RuntimeError(f"locust exited {proc.returncode}; see {prefix}.log")
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
        "users": users, "events_per_write": per_write, "locust_cpu_pct": cpu_pct,
        "streams": summary["requests"],
        "failures": summary["failures"], "streams_per_s": summary["requests_per_s"],
        "tokens_per_s": summary["output_tokens_per_s"],
        "router_streams": counted, "locust_ttft_mean_ms": locust_mean,
        "router_ttft_mean_ms": server_mean, "gap_ms": locust_mean - server_mean,
        "locust_ttft_p50_ms": summary["latency_ms"]["ttft"][0],
        "locust_ttft_p99_ms": summary["latency_ms"]["ttft"][2],
        "locust_tpot_p50_ms": summary["latency_ms"]["tpot"][0],
        "locust_loop_lag_p99_ms": summary["client_lag_p99_ms"],
    }


SERIES = {  # events per write -> what the series shows
    1: "one token per write, 10 ms apart (a GPU decoding at 10 ms/token)",
    8: "8 tokens per write, 10 ms apart (cheap for the server: loads Locust to its limit)",
}


def plot(levels: list[dict[str, float]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (gap, cpu) = plt.subplots(1, 2, figsize=(12, 4.8))
    for per_write, marker in zip(SERIES, "os", strict=False):
        series = [lv for lv in levels if lv["events_per_write"] == per_write]
        if not series:
            continue
        tokens = [lv["tokens_per_s"] for lv in series]
        gap.plot(tokens, [lv["gap_ms"] for lv in series], marker + "-",
                 label=f"{per_write} token(s)/write")
        for lv, x in zip(series, tokens, strict=True):
            gap.annotate(f"{lv['users']:.0f}", (x, lv["gap_ms"]), textcoords="offset points",
                         xytext=(3, 4), fontsize=8)
        cpu.plot(tokens, [lv["locust_cpu_pct"] for lv in series], marker + "-",
                 label=f"{per_write} token(s)/write")
    gap.set_xlabel("tokens/s received by one Locust worker (labels: users)")
    gap.set_ylabel("Locust mean TTFT - router's mean TTFT (ms)")
    gap.set_title("what the client adds to TTFT")
    gap.grid(alpha=0.3)
    gap.legend()
    cpu.axhline(100, color="grey", ls=":")
    cpu.set_xlabel("tokens/s received by one Locust worker")
    cpu.set_ylabel("Locust process CPU (% of its core)")
    cpu.set_title("the Locust worker's core")
    cpu.grid(alpha=0.3)
    cpu.legend()
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
    plan = ([(1, 8), (8, 32)] if args.quick else
            [(1, u) for u in (8, 32, 64, 128, 256)] + [(8, u) for u in (8, 16, 32, 64, 128)])
    seconds = 8 if args.quick else 20
    fake, fake_url = start_fake_engine()  # pinned to SERVER_CORE (core 0)
    router, router_url = start_router([fake_url], args.out, core=SERVER_CORE)
    levels = []
    try:
        for per_write, users in plan:
            level = run_level(router_url, users, seconds, args.out, per_write)
            levels.append(level)
            print(f"{per_write} tok/write {users:>4} users: Locust CPU "
                  f"{level['locust_cpu_pct']:5.1f}%, {level['tokens_per_s']:8.0f} tokens/s, "
                  f"TTFT Locust {level['locust_ttft_mean_ms']:6.1f} ms vs router "
                  f"{level['router_ttft_mean_ms']:6.1f} ms (gap {level['gap_ms']:+.1f} ms), "
                  f"Locust loop lag p99 {level['locust_loop_lag_p99_ms']:.1f} ms",
                  flush=True)
    finally:
        for proc in (router, fake):
            proc.terminate()
            proc.wait(10)
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version},
               "tokens_per_stream": TOKENS, "token_gap_s": TOKEN_GAP_S,
               "seconds_per_level": seconds, "series": SERIES, "levels": levels}
    (args.out / "locust.json").write_text(json.dumps(results, indent=2))
    print(f"results: {args.out / 'locust.json'}; plot: {plot(levels, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
