"""What the agent costs the instance it watches: CPU and memory, measured.

    python -m benchmarks.agent_bench [--minutes 3] [--quick] [--out DIR]

The whole local stack runs as in production, each part its own process: a
real vLLM engine (the generated model on this CPU), the router in front of
it, moto as CloudWatch, and `llmfleet agent` scraping both and publishing
every round. A load thread keeps streamed completions going so that every
counter and histogram moves and every metric is published.

Two phases, one after the other, each with a fresh agent:
  1. interval 10 s (the default, and the target's condition) for `--minutes`:
     the agent's CPU share of one core (utime + stime from /proc over the
     steady window, the first round excluded) and its RSS, sampled each second;
  2. interval 1 s for 30 s: CPU per round, the cost that does not depend on the
     interval.

Results go to stdout and <out>/agent.json, and a figure to <out>/agent.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from benchmarks.procs import cpu_seconds, peak_rss_mib, rss_mib, spawn, wait_http
from llmfleet.core.engine import EngineProcess, engine_spec_for
from llmfleet.core.net import free_port
from llmfleet.local import UpOptions, local_agent, local_cloudwatch

KEY = "sk-bench"
TARGET_CPU_PCT, TARGET_RSS_MIB = 1.0, 80.0


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
        body: dict[str, Any] = json.loads(resp.read())
        return body


class Load(threading.Thread):
    """Streamed completions one after another until stopped (a light, steady load)."""

    def __init__(self, router: str, model: str) -> None:
        super().__init__(daemon=True)
        self.router, self.model = router, model
        self.stop = threading.Event()
        self.requests = 0

    def run(self) -> None:
        with httpx.Client(timeout=60, headers={"authorization": f"Bearer {KEY}"}) as client:
            while not self.stop.is_set():
                with client.stream("POST", self.router + "/v1/completions", json={
                        "model": self.model, "prompt": "Once upon a time", "max_tokens": 32,
                        "stream": True, "ignore_eos": True}) as resp:
                    resp.read()
                self.requests += 1
                self.stop.wait(0.2)


def run_agent(interval_s: float, seconds: float, router_port: int, engine: str, served: str,
              cw_port: int, run_dir: Path) -> dict[str, Any]:
    port = free_port()
    # The agent exactly as `llmfleet up` runs it, at this interval.
    options = UpOptions(models=("",), port=router_port, engine_port=0, vllm_args="",
                        run_dir=run_dir / f"agent-{interval_s:g}s", agent_port=port,
                        cloudwatch_port=cw_port, agent_interval_s=interval_s)
    agent = local_agent(options, [engine], served)
    agent.start()
    assert agent.pid is not None
    pid = agent.pid
    try:
        agent.wait_ready(timeout_s=60, poll_s=0.2)
        while health(port)["rounds"] < 1:  # start-up and the priming round are not steady state
            time.sleep(0.05)
        cpu0, t0, rounds0 = cpu_seconds(pid), time.monotonic(), health(port)["rounds"]
        samples: list[tuple[float, float, float]] = []  # (s, cpu s since t0, rss MiB)
        while (elapsed := time.monotonic() - t0) < seconds:
            samples.append((elapsed, cpu_seconds(pid) - cpu0, rss_mib(pid)))
            print(f"\r  interval {interval_s:g} s: {elapsed:5.0f}/{seconds:.0f} s, "
                  f"RSS {samples[-1][2]:.1f} MiB", end="", flush=True)
            time.sleep(1.0)
        cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
        end = health(port)
        rounds = end["rounds"] - rounds0
        print()
        return {
            "interval_s": interval_s, "wall_s": round(wall, 1), "rounds": rounds,
            "cpu_s": round(cpu, 3), "cpu_pct_of_core": round(100 * cpu / wall, 3),
            "cpu_ms_per_round": round(1000 * cpu / max(rounds, 1), 2),
            "rss_mib": round(rss_mib(pid), 1),
            "peak_rss_mib": round(peak_rss_mib(pid), 1),
            "datapoints_sent": end["datapoints"]["sent"],
            "datapoints_per_round": round(end["datapoints"]["sent"] / max(end["rounds"], 1), 1),
            "buffered_at_end": end["datapoints"]["buffered"],
            "samples": samples,
        }
    finally:
        agent.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="phase 1 length")
    parser.add_argument("--quick", action="store_true", help="30 s phases, for a smoke run")
    parser.add_argument("--out", type=Path, default=Path(".run/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    steady_s = 30.0 if args.quick else args.minutes * 60

    spec = engine_spec_for("", free_port())
    engine = EngineProcess(spec, args.out / "agent-bench-vllm.log")
    cw_port = free_port()
    cloudwatch = local_cloudwatch(cw_port, args.out / "agent-bench-moto.log")
    router_port = free_port()
    router = spawn([sys.executable, "-m", "llmfleet.cli", "router"], None, {
        "LLMFLEET_BACKENDS": spec.url, "LLMFLEET_API_KEYS": f"bench:{KEY}",
        "LLMFLEET_PORT": str(router_port)}, args.out / "agent-bench-router.log")
    router_url = f"http://127.0.0.1:{router_port}"
    print("starting vLLM, the router and moto ...", flush=True)
    engine.start()
    cloudwatch.start()
    load = Load(router_url, spec.served_name)
    try:
        engine.wait_ready()
        cloudwatch.wait_ready(timeout_s=60, poll_s=0.2)
        wait_http(router_url + "/ready")
        load.start()
        results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version}}
        results["interval_10s"] = run_agent(10.0, steady_s, router_port, spec.url,
                                            spec.served_name, cw_port, args.out)
        results["interval_1s"] = run_agent(1.0, 30.0, router_port, spec.url, spec.served_name,
                                           cw_port, args.out)
        results["load_requests"] = load.requests
    finally:
        load.stop.set()
        router.terminate()
        router.wait(30)
        engine.stop()
        cloudwatch.stop()
    summary = {k: {f: v for f, v in r.items() if f != "samples"}
               for k, r in results.items() if k.startswith("interval")}
    summary["targets"] = {"cpu_pct_of_core": TARGET_CPU_PCT, "rss_mib": TARGET_RSS_MIB}
    (args.out / "agent.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(summary, indent=2))
    from benchmarks.plots import plot_agent

    print(f"plot: {plot_agent(results, args.out / 'agent.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
