"""`llmfleet simulate`: a trace through the fleet under each scaling policy, compared.

The fleet's shape comes from an environment's tfvars (`--env dev`: instance type,
model, capacity, scaling thresholds, the model's load time), read the way OpenTofu
reads them (`simulator.policy_config`); flags change any of it. The traffic is a
trace file (CSV or the router's access log; `simulator.traffic`) or a synthetic
shape, by default the shipped example: an hour with a daily rise and fall and a burst.
Each instance's engine runs on the planner's roofline for its GPU and the model, or, with
`--profile`, on a real engine's measured step times (`llmfleet profile`,
`simulator.profile`). An environment of several pools runs whole (`simulator.pools`): a
table per pool and one for the deployment; `--pool NAME` runs one pool alone on its share.

Besides the table (or `--json`), a run draws every policy over time into one PNG
(`simulator.plot`; by default `.run/simulate/timeline.png` under `--root`, skipped with a
note when matplotlib is not installed) and, with `--csv`, writes the per-minute series
(`simulator.timeline`). A policy whose run takes more than a few seconds reports its
progress through the trace on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from llmfleet.core.instances import Instance, Market, instances
from planner.catalog import CatalogError
from simulator import group_policy, oracle, plot, pools, traffic
from simulator.compare import Fleet, compare, prepare
from simulator.fleet import LaunchDelay, SpotInterruptions
from simulator.policy_config import (
    Environment,
    PolicyFileError,
    load_environment,
    pool_names,
    served_name,
)
from simulator.profile import MeasuredService, read_profile
from simulator.report import Slo, Summary, table
from simulator.service import RooflineService
from simulator.sim import Outcome
from simulator.tfvars import TfvarsError
from simulator.timeline import timeline, write_timeline_csv

POLICIES = ("gpu-70-30", "inflight-target", "fixed", "queue-guard", "inflight-guard",
            "slo-sizing", "oracle")
DEFAULT_PLOT = Path(".run", "simulate", "timeline.png")  # under --root; .run/ is git-ignored


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
    sim.add_argument("--pool", help="with an environment of several pools: simulate this one "
                                    "alone, on its share of the traffic (the routing's length "
                                    "rules); without it, every pool together")
    sim.add_argument("--root", type=Path, default=Path("."), help="the repository's root")
    sim.add_argument("--instance-type")
    sim.add_argument("--model", help="the planner's name or Hugging Face id")
    sim.add_argument("--precision", default="bf16")
    sim.add_argument("--profile", type=Path, metavar="FILE",
                     help="run the engines on a measured profile (llmfleet profile) instead "
                          "of the roofline for the instance's GPU and the model; the "
                          "instance type still sets the price")
    sim.add_argument("--min-size", type=int)
    sim.add_argument("--max-size", type=int)
    sim.add_argument("--desired", type=int)
    sim.add_argument("--market", choices=[m.value for m in Market], default="on-demand")
    sim.add_argument("--spot-interruptions", type=float, default=0.0, metavar="PER_HOUR",
                     help="every instance spot, interrupted this often per instance-hour on "
                          "average (2 minutes' notice, then a replacement; with --seed); "
                          "price them with --market spot (default: none)")
    sim.add_argument("--ttft-slo", type=float, default=2.0,
                     help="seconds (default 2), for the SLO attainment reported; queue-guard's "
                          "guardrail comes from the environment's scaling.queue_guard.ttft_slo_s, "
                          "as the module applies it")
    sim.add_argument("--tpot-slo", type=float, default=0.1, help="seconds (default 0.1)")
    sim.add_argument("--model-load-s", type=float, default=LaunchDelay().model_load_s,
                     help="seconds vLLM takes to load the model (default %(default)s)")
    sim.add_argument("--lengths", default="300:150", type=_lengths,
                     help="PROMPT:OUTPUT tokens the in-flight target is sized for (default "
                          "%(default)s): an assumption set beforehand, not read from the trace")
    sim.add_argument("--policy", action="append", choices=POLICIES,
                     help="only these (repeatable)")
    sim.add_argument("--oracle-target", type=float, default=oracle.DEFAULT_TARGET,
                     help="SLO attainment the oracle's cheapest schedule must reach (default "
                          "%(default)s), lowered to the best any other policy reached")
    sim.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    drawn = sim.add_mutually_exclusive_group()
    drawn.add_argument("--plot", type=Path, metavar="PATH",
                       help=f"PNG of every policy over time (default: {DEFAULT_PLOT} under "
                            "--root, when matplotlib is installed)")
    drawn.add_argument("--no-plot", action="store_true", help="draw no plot")
    sim.add_argument("--csv", type=Path, metavar="PATH",
                     help="the per-minute series of every policy, one row per policy and minute")
    sim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.plot and not plot.available():
        print("llmfleet simulate: --plot needs matplotlib: pip install 'llmfleet[loadtest]'",
              file=sys.stderr)
        return 2
    try:
        names = [] if args.pool else pool_names(args.root, args.env)
        if names:
            return run_pools(args, names)
        env, arrivals, fleet = _setup(args)
    except (TfvarsError, traffic.TraceError, traffic.SpecError, CatalogError, ValueError) as exc:
        print(f"llmfleet simulate: {exc}", file=sys.stderr)
        return 2
    _notes(args.env, env)
    slo = Slo(args.ttft_slo, args.tpot_slo)
    try:
        runs = compare(fleet, arrivals, slo, args.lengths, args.policy, args.oracle_target,
                       progress=Progress)
    except (group_policy.SizingError, PolicyFileError) as exc:
        print(f"llmfleet simulate: {exc}", file=sys.stderr)
        return 2
    code, files = 0, Files()
    try:
        files = write_files(args, [(r.policy, r.outcome, arrivals) for r in runs], slo)
    except (OSError, plot.PlotError) as exc:  # the table is still worth printing
        print(f"llmfleet simulate: {exc}", file=sys.stderr)
        code = 1
    summaries = [r.summary for r in runs]
    if args.json:
        print(json.dumps(_as_json(env, slo, arrivals, summaries, files), indent=2))
    else:
        print(table(summaries))
    return code


def _notes(name: str, env: Environment) -> None:
    """What the run leaves out of the environment `name`, on stderr."""
    if env.capacity.min == env.capacity.max:
        print(f"llmfleet simulate: capacity is fixed at {env.capacity.min} in {name}: no "
              "policy can scale (try --max-size)", file=sys.stderr)
    if env.warm_pool is not None:
        print(f"llmfleet simulate: {name}'s warm pool is not simulated: every launch is a "
              "cold start, with model.model_load_seconds as its warm-up", file=sys.stderr)
    if env.scaling.scheduled_minimums:
        print(f"llmfleet simulate: {name}'s scheduled minimums are not simulated (a trace "
              "has no time of day): the group's minimum stays capacity.min", file=sys.stderr)


def _setup(args: argparse.Namespace) -> tuple[Environment, list[traffic.Arrival], Fleet]:
    """The environment, the trace and the fleet the flags describe.

    Raises:
        TfvarsError, traffic.TraceError, traffic.SpecError, CatalogError, ValueError: bad
            flags, or files that do not read.
    """
    env = _environment(args, args.pool)
    arrivals = [a for a in _arrivals(args) if env.share(a.prompt_tokens)]
    if not arrivals:
        raise ValueError(f"no request of the traffic reaches pool {env.pool}")
    return env, arrivals, _fleet(args, env)


def _fleet(args: argparse.Namespace, env: Environment, seed: int | None = None) -> Fleet:
    """The group, engine and price of `env` with the flags' changes (`seed`: the spot
    interruptions' draws, `--seed` by default).

    Raises:
        CatalogError, ValueError: an instance type, model or price the catalogue lacks; a
            profile that does not read.
    """
    instance = _instance(env.instance_type)
    service: RooflineService | MeasuredService
    if args.profile:
        service = MeasuredService.from_profile(read_profile(args.profile))
    else:
        service = RooflineService.for_names(env.model.id, instance.gpu, args.precision,
                                            tensor_parallel=instance.gpu_count)
    price = instance.price_usd_hr(Market(args.market))
    if price is None:
        raise ValueError(f"no {args.market} price for {env.instance_type} in the catalogue")
    spot = (SpotInterruptions(args.spot_interruptions, seed=args.seed if seed is None else seed)
            if args.spot_interruptions else None)
    return Fleet(env, service, price, args.model_load_s, spot)


ONE_POOL_FLAGS = ("instance_type", "model", "profile")  # meaningless for every pool at once


def run_pools(args: argparse.Namespace, names: list[str]) -> int:
    """Every pool of the environment together on the whole trace (`simulator.pools`): a
    table per pool and one for the deployment.

    Raises:
        TfvarsError, traffic.TraceError, traffic.SpecError, CatalogError, ValueError: as
            `_setup`, and the flags that name one pool's instance, model or profile.
    """
    given = [f"--{f.replace('_', '-')}" for f in ONE_POOL_FLAGS if getattr(args, f)]
    if given:
        raise ValueError(f"{' and '.join(given)} change one pool: add --pool NAME "
                         f"({', '.join(names)})")
    envs = {name: _environment(args, name) for name in names}
    for env in envs.values():
        _notes(env.name, env)
    arrivals = _arrivals(args)
    rules = envs[names[0]].length_rules
    shares = pools.split(arrivals, rules, {n: served_name(e.model) for n, e in envs.items()})
    for name, share in shares.items():
        if not share:
            raise ValueError(f"no request of the traffic reaches pool {name}")
    slo = Slo(args.ttft_slo, args.tpot_slo)
    ready = []
    try:
        for i, name in enumerate(names):  # each pool's interruptions its own draws
            print(f"pool {name}: {len(shares[name])} of {len(arrivals)} requests on "
                  f"{envs[name].instance_type}", file=sys.stderr)
            prep = prepare(_fleet(args, envs[name], args.seed + i), shares[name], slo, args.lengths)
            ready.append(pools.Pool(name, served_name(envs[name].model), prep))
        runs = pools.simulate(ready, shares, rules, slo, args.policy, args.oracle_target,
                              progress=Progress)
    except (group_policy.SizingError, PolicyFileError) as exc:
        print(f"llmfleet simulate: {exc}", file=sys.stderr)
        return 2
    code, files = 0, {}
    try:
        for i, name in enumerate(names):
            files[name] = write_files(args, [(r.policy, r.pools[i].run.outcome,
                                              r.pools[i].arrivals) for r in runs], slo, name)
    except (OSError, plot.PlotError) as exc:  # the tables are still worth printing
        print(f"llmfleet simulate: {exc}", file=sys.stderr)
        code = 1
    if args.json:
        print(json.dumps(_pools_json(envs, slo, shares, runs, files), indent=2))
    else:
        print(pools_tables(envs, shares, runs))
    return code


def pools_tables(envs: dict[str, Environment], shares: dict[str, list[traffic.Arrival]],
                 runs: list[pools.DeploymentRun]) -> str:
    """A table per pool, what `auto` moved between them, and the deployment's table."""
    parts = []
    for i, (name, env) in enumerate(envs.items()):
        parts.append(f"pool {name}: {served_name(env.model)} on {env.instance_type}, "
                     f"{len(shares[name])} requests routed to it\n\n"
                     + table([r.pools[i].run.summary for r in runs]))
        moves = [f"  {r.policy}: {r.pools[i].moved_in} moved in, {r.pools[i].moved_out} "
                 "moved out" for r in runs if r.pools[i].moved_in or r.pools[i].moved_out]
        if moves:
            parts.append("auto moved requests while a pool had no serving instance:\n"
                         + "\n".join(moves))
    total = sum(len(s) for s in shares.values())
    parts.append(f"the deployment: {len(envs)} pools, {total} requests\n\n"
                 + table([r.summary for r in runs]))
    return "\n\n".join(parts)


def _pools_json(envs: dict[str, Environment], slo: Slo,
                shares: dict[str, list[traffic.Arrival]], runs: list[pools.DeploymentRun],
                files: dict[str, Files]) -> dict[str, object]:
    return {
        "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s},
        "requests": sum(len(s) for s in shares.values()),
        "pools": {name: {"instance_type": env.instance_type, "model": env.model.id,
                         "capacity": env.capacity.model_dump(), "requests": len(shares[name]),
                         "policies": [{**r.pools[i].run.summary.as_json(),
                                       "moved_in": r.pools[i].moved_in,
                                       "moved_out": r.pools[i].moved_out} for r in runs],
                         "files": {"plot": _path(files[name].plot) if name in files else None,
                                   "csv": _path(files[name].csv) if name in files else None}}
                  for i, (name, env) in enumerate(envs.items())},
        "deployment": {"policies": [{**r.summary.as_json(), "rounds": r.rounds,
                                     "settled": r.settled} for r in runs]}}


@dataclass(frozen=True)
class Files:
    """What a run wrote besides its table; None for what it did not write."""

    plot: Path | None = None
    csv: Path | None = None


Sent = tuple[str, Outcome, list[traffic.Arrival]]  # a policy, its run, what it was sent


def write_files(args: argparse.Namespace, runs: list[Sent], slo: Slo,
                pool: str | None = None) -> Files:
    """The CSV and the plot the flags ask for, each announced on stderr (`pool`: one of
    several pools', its name added to each file's: timeline-small.png).

    Raises:
        OSError: a file cannot be written.
        plot.PlotError: matplotlib is not installed after all.
    """
    csv_path, plot_path = args.csv, _plot_path(args)
    if pool is not None:
        csv_path, plot_path = (None if p is None else p.with_stem(f"{p.stem}-{pool}")
                               for p in (csv_path, plot_path))
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        write_timeline_csv(csv_path, [timeline(policy, out, sent, slo)
                                      for policy, out, sent in runs])
        print(f"  per-minute series: {csv_path}", file=sys.stderr)
    if plot_path is not None:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot.write_plot_each(plot_path, runs, slo)
        print(f"  plot: {plot_path}", file=sys.stderr)
    return Files(plot_path, csv_path)


def _plot_path(args: argparse.Namespace) -> Path | None:
    """Where the plot goes: `--plot`, else the default when matplotlib is installed."""
    chosen: Path | None = args.plot
    if args.no_plot or chosen is not None:
        return chosen
    if not plot.available():
        print("  no plot: matplotlib is not installed (pip install 'llmfleet[loadtest]')",
              file=sys.stderr)
        return None
    return Path(args.root) / DEFAULT_PLOT


class Progress:
    """`Simulation.run`'s progress callback: a line on stderr when at least `every_s` of
    wall time and `step` of the trace have passed since the last, so a run that ends in
    a couple of seconds says nothing and a long one says at most ten lines."""

    def __init__(self, policy: str, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, every_s: float = 2.0,
                 step: float = 0.1) -> None:
        self.policy, self.every_s, self.step = policy, every_s, step
        self._stream, self._clock = stream, clock
        self._wall_s, self._share = clock(), 0.0

    def __call__(self, now_s: float, last_arrival_s: float) -> None:
        if last_arrival_s <= 0:
            return
        share, wall_s = min(now_s / last_arrival_s, 1.0), self._clock()
        if wall_s - self._wall_s < self.every_s or share - self._share < self.step:
            return
        self._wall_s, self._share = wall_s, share
        print(progress_line(self.policy, share, last_arrival_s),
              file=self._stream or sys.stderr)


def progress_line(policy: str, share: float, last_arrival_s: float) -> str:
    """E.g. "  gpu-70-30: 41% of the trace (25 of 60 min)"."""
    scale, unit = (3600.0, "h") if last_arrival_s > plot.HOURS_FROM_S else (60.0, "min")
    done, total = share * last_arrival_s / scale, last_arrival_s / scale
    figures = "{:.1f} of {:.1f}" if unit == "h" else "{:.0f} of {:.0f}"
    return f"  {policy}: {share:.0%} of the trace ({figures.format(done, total)} {unit})"


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


def _environment(args: argparse.Namespace, pool: str | None) -> Environment:
    env = load_environment(args.root, args.env, pool)
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
             summaries: list[Summary], files: Files) -> dict[str, object]:
    return {"instance_type": env.instance_type, "model": env.model.id,
            "capacity": env.capacity.model_dump(), "slo": {"ttft_s": slo.ttft_s,
                                                          "tpot_s": slo.tpot_s},
            "requests": len(arrivals), "policies": [s.as_json() for s in summaries],
            "files": {"plot": _path(files.plot), "csv": _path(files.csv)}}


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)
