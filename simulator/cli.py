"""`llmfleet simulate`: a trace through the fleet under each scaling policy, compared.

The fleet's shape comes from an environment's tfvars (`--env dev`: instance type,
model, capacity, scaling thresholds, the model's load time), read the way OpenTofu
reads them (`simulator.policy_config`); flags change any of it. The traffic is a
trace file (CSV or the router's access log; `simulator.traffic`) or a synthetic
shape, by default the shipped example: an hour with a daily rise and fall and a burst.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from llmfleet.core.instances import Market, instances
from planner.catalog import CatalogError
from planner.memory import Settings
from simulator import policies, traffic
from simulator.fleet import LaunchDelay
from simulator.policy_config import Environment, load_environment
from simulator.replica import Replica
from simulator.report import Slo, Summary, summarise, table
from simulator.service import RooflineService
from simulator.sim import GroupLimits, SimConfig, Simulation
from simulator.tfvars import TfvarsError


def add_parser(sub: Any) -> None:
    sim = sub.add_parser("simulate", help="compare scaling policies on a traffic trace, "
                                          "in simulated time", description=__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    sim.add_argument("--trace", type=Path, help="CSV trace or router access log "
                                                "(default: the shipped example hour)")
    sim.add_argument("--shape", help="a synthetic shape instead of a trace, e.g. diurnal:3")
    sim.add_argument("--rate", type=float, default=4.0, help="synthetic mean requests/s")
    sim.add_argument("--duration", type=float, default=3600.0, help="synthetic seconds")
    sim.add_argument("--workload", default="lognormal:300:150", help="synthetic lengths")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--speed", type=float, default=1.0, help="replay k times faster")
    sim.add_argument("--rate-scale", type=float, default=1.0, help="k times the requests")
    sim.add_argument("--env", default="dev", help="environments/ENV.tfvars for the defaults")
    sim.add_argument("--root", type=Path, default=Path("."), help="the repository's root")
    sim.add_argument("--instance-type")
    sim.add_argument("--model", help="the planner's name or Hugging Face id")
    sim.add_argument("--precision", default="bf16")
    sim.add_argument("--min-size", type=int)
    sim.add_argument("--max-size", type=int)
    sim.add_argument("--desired", type=int)
    sim.add_argument("--market", choices=[m.value for m in Market], default="on-demand")
    sim.add_argument("--ttft-slo", type=float, default=2.0, help="seconds (default 2)")
    sim.add_argument("--tpot-slo", type=float, default=0.1, help="seconds (default 0.1)")
    sim.add_argument("--policy", action="append", help="only these (repeatable)")
    sim.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    sim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        env = _environment(args)
        arrivals = _arrivals(args)
        service = RooflineService.for_names(
            env.model.id, _instance(env.instance_type).gpu, args.precision,
            tensor_parallel=_instance(env.instance_type).gpu_count, settings=Settings())
    except (TfvarsError, traffic.TraceError, traffic.SpecError, CatalogError, ValueError) as exc:
        print(f"llmfleet simulate: {exc}", file=sys.stderr)
        return 2
    slo = Slo(args.ttft_slo, args.tpot_slo)
    summaries = compare(env, service, arrivals, slo, Market(args.market), args.policy)
    if args.json:
        print(json.dumps(_as_json(env, slo, arrivals, summaries), indent=2))
    else:
        print(table(summaries))
    return 0


def compare(env: Environment, service: RooflineService, arrivals: list[traffic.Arrival],
            slo: Slo, market: Market, only: list[str] | None = None) -> list[Summary]:
    """Run every chosen policy on the same trace and fleet; a summary each."""
    shape = policies.GroupShape(env.capacity.min, env.capacity.max, env.capacity.desired,
                                env.model.model_load_seconds)
    prompt, output = policies.mean_lengths([a.prompt_tokens for a in arrivals],
                                           [a.output_tokens for a in arrivals])
    target = policies.slo_concurrency(service.deployment, service.eff, prompt, output, slo)
    chosen = policies.builtin(shape, env.scaling, target)
    config = SimConfig(new_replica=lambda: Replica(service),
                       limits=GroupLimits(shape.min_size, shape.max_size, shape.desired),
                       launch=replace(LaunchDelay(), model_load_s=shape.warmup_s))
    price = _instance(env.instance_type).price_usd_hr(market)
    if price is None:
        raise ValueError(f"no {market} price for {env.instance_type} in the catalogue")
    summaries = []
    for name, build in chosen.items():
        if only and name not in only:
            continue
        started = time.perf_counter()
        out = Simulation(config, build()).run(arrivals)
        summaries.append(summarise(name, out, slo, price))
        print(f"  {name}: {len(arrivals)} requests in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    return summaries


def _instance(name: str) -> Any:
    catalogue = instances()
    if name not in catalogue:
        raise ValueError(f"unknown instance type {name!r}; known: {', '.join(catalogue)}")
    return catalogue[name]


def _environment(args: argparse.Namespace) -> Environment:
    env = load_environment(args.root, args.env)
    capacity = env.capacity.model_copy(update={
        k: v for k, v in (("min", args.min_size), ("max", args.max_size),
                          ("desired", args.desired)) if v is not None})
    model = env.model.model_copy(update={"id": args.model} if args.model else {})
    return env.model_copy(update={
        "capacity": capacity, "model": model,
        "instance_type": args.instance_type or env.instance_type})


def _arrivals(args: argparse.Namespace) -> list[traffic.Arrival]:
    if args.shape:
        found = traffic.synthetic(args.shape, duration_s=args.duration, rate_per_s=args.rate,
                                  workload=args.workload, seed=args.seed)
    else:
        found = traffic.read_trace(args.trace) if args.trace else traffic.example()
    return traffic.scaled(found, speed=args.speed, rate=args.rate_scale)


def _as_json(env: Environment, slo: Slo, arrivals: list[traffic.Arrival],
             summaries: list[Summary]) -> dict[str, object]:
    return {"instance_type": env.instance_type, "model": env.model.id,
            "capacity": env.capacity.model_dump(), "slo": {"ttft_s": slo.ttft_s,
                                                          "tpot_s": slo.tpot_s},
            "requests": len(arrivals), "policies": [s.as_json() for s in summaries]}
