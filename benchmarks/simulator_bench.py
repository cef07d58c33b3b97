"""How fast the fleet simulator runs: an hour and a day of traffic, on one core.

    python -m benchmarks.simulator_bench [--quick] [--out DIR]    (make bench-simulator)

The fleet is the dev environment's (`environments/dev.tfvars`: a g5.xlarge serving
Qwen2.5-1.5B) built as `llmfleet simulate` builds it, with the group's maximum raised
from 1 to 4 (`--max-size 4`) so that the policies have room to scale. The hour is the
example trace's shape (a day's rise and fall compressed into the hour, and a burst) at
5 requests/s, about 19,500 requests; every built-in policy runs it once, the oracle at
the planner's capacity (factor 1, one run rather than `oracle.cheapest`'s search). The
design's policy (gpu-70-30) runs it again stepping the engines one step at a time
(`SimConfig.coalesce=False`): the slower way, which must give the very same outcome
(checked here too). The day is `diurnal:3` over 24 hours at 5 requests/s, about 432,000
requests, under gpu-70-30.

Each run's wall and CPU seconds, requests, events, engine steps and events per second go
to docs/benchmarks/simulator.json (a `--quick` run's to .run/bench). The process is
pinned to one core; the CPU seconds are the figure to read on a machine that other work
shares. Targets: an hour within 10 s under each policy, a day within 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llmfleet.core.instances import instances
from simulator import group_policy, policies, traffic
from simulator.fleet import LaunchDelay
from simulator.policy_config import Scaling, load_environment
from simulator.replica import Replica
from simulator.report import Slo
from simulator.service import RooflineService
from simulator.sim import GroupLimits, Outcome, ScalingPolicy, SimConfig, Simulation

OUT = Path("docs/benchmarks")
RATE_PER_S = 5.0
MAX_SIZE = 4
DEFAULT_POLICY = "gpu-70-30"
HOUR_TARGET_S, DAY_TARGET_S = 10.0, 120.0
LENGTHS = (300, 150)  # what the in-flight target is sized for: the CLI's default


@dataclass(frozen=True)
class Bench:
    """The dev fleet as `llmfleet simulate --env dev --max-size 4` configures it."""

    config: SimConfig
    shape: group_policy.GroupShape
    scaling: Scaling
    sized: group_policy.Sizing

    def chosen(self, arrivals: list[traffic.Arrival]) -> dict[str, policies.PolicyFactory]:
        return policies.builtin(self.shape, self.scaling, self.sized, arrivals)


def dev_fleet(root: Path) -> Bench:
    env = load_environment(root, "dev")
    instance = instances()[env.instance_type]
    service = RooflineService.for_names(env.model.id, instance.gpu, "bf16",
                                        tensor_parallel=instance.gpu_count)
    shape = group_policy.GroupShape(env.capacity.min, MAX_SIZE, env.capacity.desired,
                                env.model.model_load_seconds)
    launch = LaunchDelay()
    sized = group_policy.sizing(service.deployment, service.eff, LENGTHS, Slo(), launch.total_s)
    engine = service.deployment
    config = SimConfig(
        new_replica=lambda: Replica(service, engine.max_num_seqs, engine.max_num_batched_tokens,
                                    max_model_len=env.model.max_model_len),
        limits=GroupLimits(shape.min_size, shape.max_size, shape.desired), launch=launch)
    return Bench(config, shape, env.scaling, sized)


def timed(label: str, config: SimConfig, policy: ScalingPolicy,
          arrivals: list[traffic.Arrival], target_s: float) -> tuple[dict[str, Any], Outcome]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = Simulation(config, policy).run(arrivals)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    row = {"run": label, "coalesce": config.coalesce, "requests": len(arrivals),
           "completed": len(out.finished), "instances": len(out.instances),
           "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "events": out.events,
           "steps": out.steps, "events_per_s": round(out.events / cpu),
           "steps_per_s": round(out.steps / cpu), "target_s": target_s,
           "met": cpu <= target_s}
    print(f"{label:<34} {len(arrivals):>7} requests  wall {wall:6.1f} s  cpu {cpu:6.1f} s  "
          f"{out.events:>9} events  {out.steps:>10} steps  {row['events_per_s']:>7} events/s",
          flush=True)
    return row, out


def same(one: Outcome, other: Outcome) -> bool:
    return (one.finished == other.finished and one.samples == other.samples
            and one.actions == other.actions and one.cut_off == other.cut_off
            and one.refused == other.refused and one.end_s == other.end_s
            and one.steps == other.steps)


def hour(bench: Bench, duration_s: float) -> dict[str, Any]:
    arrivals = traffic.synthetic(traffic.EXAMPLE_SHAPE, duration_s=duration_s,
                                 rate_per_s=RATE_PER_S, workload=traffic.EXAMPLE_WORKLOAD,
                                 seed=traffic.EXAMPLE_SEED)
    rows, default = [], None
    for name, build in bench.chosen(arrivals).items():
        row, out = timed(name, bench.config, build(), arrivals, HOUR_TARGET_S)
        rows.append(row)
        default = out if name == DEFAULT_POLICY else default
    build = bench.chosen(arrivals)[DEFAULT_POLICY]
    row, single = timed(f"{DEFAULT_POLICY}, one step at a time",
                        replace(bench.config, coalesce=False), build(), arrivals, HOUR_TARGET_S)
    assert default is not None
    row["same_outcome_as_coalesced"] = same(default, single)
    rows.append(row)
    print(f"  one step at a time gives the same outcome: {row['same_outcome_as_coalesced']}",
          flush=True)
    return {"shape": traffic.EXAMPLE_SHAPE, "workload": traffic.EXAMPLE_WORKLOAD,
            "duration_s": duration_s, "rate_per_s": RATE_PER_S, "runs": rows}


def day(bench: Bench, duration_s: float) -> dict[str, Any]:
    arrivals = traffic.synthetic("diurnal:3", duration_s=duration_s, rate_per_s=RATE_PER_S,
                                 workload=traffic.EXAMPLE_WORKLOAD, seed=1)
    build = bench.chosen(arrivals)[DEFAULT_POLICY]
    row, _ = timed(DEFAULT_POLICY, bench.config, build(), arrivals, DAY_TARGET_S)
    return {"shape": "diurnal:3", "workload": traffic.EXAMPLE_WORKLOAD,
            "duration_s": duration_s, "rate_per_s": RATE_PER_S, "runs": [row]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="10 minutes and 2 hours of traffic, for a smoke run")
    parser.add_argument("--core", type=int, default=min(os.sched_getaffinity(0)),
                        help="the core to pin to (default: the first this process may use)")
    parser.add_argument("--out", type=Path,
                        help=f"where simulator.json goes (default {OUT}, .run/bench with --quick)")
    args = parser.parse_args()
    out_dir = args.out or (Path(".run/bench") if args.quick else OUT)
    os.sched_setaffinity(0, {args.core})
    bench = dev_fleet(Path("."))
    hour_s, day_s = (600.0, 7200.0) if args.quick else (3600.0, 86400.0)
    print(f"an hour (here {hour_s:.0f} s) of the example shape at {RATE_PER_S:g} requests/s, "
          f"dev fleet up to {MAX_SIZE} instances, core {args.core}", flush=True)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "core": args.core, "python": sys.version.split()[0],
                    "processor": platform.processor() or platform.machine()},
        "fleet": {"env": "dev", "max_size": MAX_SIZE, "policy_for_the_day": DEFAULT_POLICY},
        "quick": args.quick, "hour": hour(bench, hour_s)}
    print(f"a day (here {day_s:.0f} s) of diurnal:3 at {RATE_PER_S:g} requests/s", flush=True)
    results["day"] = day(bench, day_s)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "simulator.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
