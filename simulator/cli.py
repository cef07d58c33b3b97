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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llmfleet.core.instances import Instance, Market, instances
from planner import catalog
from planner.catalog import CatalogError
from planner.memory import GIB, Settings
from simulator import policies, traffic
from simulator.fleet import LaunchDelay
from simulator.policy_config import Environment, load_environment
from simulator.replica import Replica
from simulator.report import Slo, Summary, summarise, table
from simulator.service import RooflineService
from simulator.sim import GroupLimits, SimConfig, Simulation
from simulator.tfvars import TfvarsError

POLICIES = ("gpu-70-30", "inflight-target", "fixed")


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
    sim.add_argument("--model-load-s", type=float, default=LaunchDelay().model_load_s,
                     help="seconds vLLM takes to load the model (default %(default)s)")
    sim.add_argument("--lengths", default="300:150", type=_lengths,
                     help="PROMPT:OUTPUT tokens the in-flight target is sized for (default "
                          "%(default)s): an assumption set beforehand, not read from the trace")
    sim.add_argument("--policy", action="append", choices=POLICIES,
                     help="only these (repeatable)")
    sim.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    sim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        env = _environment(args)
        arrivals = _arrivals(args)
        instance = _instance(env.instance_type)
        service = RooflineService.for_names(env.model.id, instance.gpu, args.precision,
                                            tensor_parallel=instance.gpu_count,
                                            settings=engine_settings(instance.gpu))
        price = instance.price_usd_hr(Market(args.market))
        if price is None:
            raise ValueError(f"no {args.market} price for {env.instance_type} in the catalogue")
    except (TfvarsError, traffic.TraceError, traffic.SpecError, CatalogError, ValueError) as exc:
        print(f"llmfleet simulate: {exc}", file=sys.stderr)
        return 2
    if env.capacity.min == env.capacity.max:
        print(f"llmfleet simulate: capacity is fixed at {env.capacity.min} in {args.env}: no "
              "policy can scale (try --max-size)", file=sys.stderr)
    slo = Slo(args.ttft_slo, args.tpot_slo)
    summaries = compare(Fleet(env, service, price, args.model_load_s), arrivals, slo,
                        args.lengths, args.policy)
    if args.json:
        print(json.dumps(_as_json(env, slo, arrivals, summaries), indent=2))
    else:
        print(table(summaries))
    return 0


@dataclass(frozen=True)
class Fleet:
    """What every policy's run shares: the environment, the engine, the price."""

    env: Environment
    service: RooflineService
    usd_per_hour: float
    model_load_s: float


def engine_settings(gpu: str) -> Settings:
    """vLLM's serving defaults for the GPU: 2,048 batched tokens and 256 sequences below
    70 GiB of memory, 8,192 and 1,024 from there (vLLM's usage-context defaults)."""
    large = catalog.gpu(gpu).memory_bytes >= 70 * GIB
    return Settings(max_num_batched_tokens=8192 if large else 2048,
                    max_num_seqs=1024 if large else 256)


def compare(fleet: Fleet, arrivals: list[traffic.Arrival], slo: Slo, lengths: tuple[int, int],
            only: list[str] | None = None) -> list[Summary]:
    """Run every chosen policy on the same trace and fleet; a summary each."""
    env, service = fleet.env, fleet.service
    shape = policies.GroupShape(env.capacity.min, env.capacity.max, env.capacity.desired,
                                env.model.model_load_seconds)
    target = policies.slo_concurrency(service.deployment, service.eff, *lengths, slo)
    chosen = policies.builtin(shape, env.scaling, target)
    engine = service.deployment.settings
    config = SimConfig(
        new_replica=lambda: Replica(service, engine.max_num_seqs, engine.max_num_batched_tokens,
                                    max_model_len=env.model.max_model_len),
        limits=GroupLimits(shape.min_size, shape.max_size, shape.desired),
        launch=replace(LaunchDelay(), model_load_s=fleet.model_load_s))
    price = fleet.usd_per_hour
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


def _lengths(text: str) -> tuple[int, int]:
    prompt, _, output = text.partition(":")
    try:
        lengths = int(prompt), int(output)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not PROMPT:OUTPUT tokens") from None
    if min(lengths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: both lengths must be at least 1")
    return lengths


def _instance(name: str) -> Instance:
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
