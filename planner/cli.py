"""`llmfleet plan`: sizing, one prediction, the validation report and calibration.

    llmfleet plan --model M --input-len N --output-len N [SLO, rate, market]   the search
    llmfleet plan predict --gpu G --num-gpus N --model M --dtype D ...          one prediction
    llmfleet plan validate [--fit]              the model's error on public measurements
    llmfleet plan calibrate --requests CSV ...  OLS fits of measurements, corrected factors
    llmfleet plan pools --pool NAME=MODEL[@TYPE] ... --rule NAME[:TOKENS] ... --rate R
                                                each pool of a deployment, its share of a mix

Exit codes: 0 answered, 1 nothing feasible, 2 unusable input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmfleet.core import lengths
from llmfleet.core.args import positive, positive_int
from llmfleet.core.instances import Market
from llmfleet.core.routing import LengthRule
from llmfleet.core.wire.pools import POOL_NAME
from llmfleet.core.wire.scoring import ScoredModelDraft
from planner import calibrate, catalog, efficiency, engines, pools, report, validation
from planner.calibrate import CalibrationError
from planner.catalog import CatalogError
from planner.memory import GIB, Precision, Settings
from planner.sizing import SEARCHED_PRECISIONS, Question, Slo, search
from planner.timing import Deployment, Workload, predict, predict_static


def _at_least_one(text: str) -> float:
    value = float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: the safety factor is at least 1")
    return value


PRECISIONS = [p.value for p in Precision]


def add_parser(sub: Any) -> None:
    plan = sub.add_parser("plan", help="the cheapest instance for a model, workload and SLO",
                          description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    plan.add_argument("--model", help="catalogue name, Hugging Face id or config.json path")
    plan.add_argument("--input-len", type=positive_int, default=512)
    plan.add_argument("--output-len", type=positive_int, default=256)
    plan.add_argument("--batch-size", type=positive_int,
                      help="fix the concurrency per replica instead of searching it")
    plan.add_argument("--safety-factor", type=_at_least_one, default=1.0,
                      help="the KV cache may use 1/F of the memory left (default 1.0, as vLLM)")
    plan.add_argument("--precision", choices=PRECISIONS,
                      help="only this precision (default: fp16, fp8, int8 and int4)")
    plan.add_argument("--slo-tps", type=positive, help="output tokens/s per request, at least")
    plan.add_argument("--ttft-ms", type=positive, help="time to first token, at most")
    plan.add_argument("--tpot-ms", type=positive, help="time per output token, at most")
    plan.add_argument("--rate", type=positive, help="requests per second the fleet serves")
    plan.add_argument("--market", choices=[m.value for m in Market], default="on-demand")
    plan.add_argument("--kv-offload", action="store_true",
                      help="let KV cache spill to host memory instead of queueing requests")
    plan.add_argument("--max-num-seqs", type=positive_int,
                      help="at most this many sequences a replica runs at once (default: vLLM's "
                           "for the GPU: 1024 on H100 and H200, 256 elsewhere)")
    plan.add_argument("--gpu-memory-utilization", type=positive, default=0.9)
    plan.add_argument("--json", action="store_true", help="JSON instead of the table")
    plan.add_argument("--all", action="store_true", help="every candidate in the table")
    plan.add_argument("--plot", type=Path, default=Path(".run/plan/plan.png"))
    plan.add_argument("--no-plot", action="store_true")
    plan.set_defaults(func=_plan)
    subs = plan.add_subparsers(dest="plan_command")
    _add_predict(subs)
    _add_validate(subs)
    _add_calibrate(subs)
    _add_pools(subs)


def _add_pools(subs: Any) -> None:
    p = subs.add_parser("pools", help="size each pool of a deployment for its share of a "
                                      "traffic mix, split by the alias's length rules")
    p.add_argument("--pool", action="append", required=True, dest="pools",
                   metavar="NAME=MODEL[@INSTANCE_TYPE]",
                   help="a pool: its name, its model (catalogue name, Hugging Face id or "
                        "config.json path) and, optionally, its instance type")
    p.add_argument("--rule", action="append", required=True, dest="rules",
                   metavar="NAME[:MAX_PROMPT_TOKENS]",
                   help="a length rule: prompts up to MAX_PROMPT_TOKENS to pool NAME; one "
                        "without a bound takes the rest (the routing block's length_rules)")
    p.add_argument("--lengths", default="lognormal:512:256",
                   help="the mix's lengths: fixed:IN:OUT or lognormal:IN:OUT[:SIGMA] "
                        "(default lognormal:512:256)")
    p.add_argument("--rate", type=positive, required=True, dest="pools_rate",
                   help="requests per second the deployment serves")
    p.add_argument("--ttft-ms", type=positive, dest="pools_ttft_ms")
    p.add_argument("--tpot-ms", type=positive, dest="pools_tpot_ms")
    p.add_argument("--market", choices=[m.value for m in Market], default="on-demand",
                   dest="pools_market")
    p.set_defaults(func=_pools)


def _pool_specs(texts: list[str]) -> list[pools.PoolSpec]:
    """Raises ValueError (a malformed --pool) or CatalogError (an unknown model)."""
    specs = []
    for text in texts:
        name, sep, rest = text.partition("=")
        model, _, instance_type = rest.partition("@")
        if not sep or not POOL_NAME.match(name) or not model:
            raise ValueError(f"--pool {text!r}: use NAME=MODEL[@INSTANCE_TYPE], NAME of 1-20 "
                             "lower-case letters, digits and dashes")
        arch = catalog.model(model)
        # A hub id as given (the catalogue may know it by its base model's); else the
        # catalogue's.
        model_id = model if "/" in model and not model.endswith(".json") else arch.hf_id
        specs.append(pools.PoolSpec(name, arch, model_id or model, instance_type or None))
    if len({s.name for s in specs}) != len(specs):
        raise ValueError("two --pool options share a name")
    return specs


def _rules(texts: list[str]) -> list[LengthRule]:
    """Raises ValueError: a malformed --rule."""
    rules = []
    for text in texts:
        name, _, bound = text.partition(":")
        if bound and not bound.isdigit():
            raise ValueError(f"--rule {text!r}: use NAME or NAME:MAX_PROMPT_TOKENS")
        rules.append(LengthRule(model=name, max_prompt_tokens=int(bound) if bound else None))
    return rules


def _pools(args: argparse.Namespace) -> int:
    try:
        specs, rules = _pool_specs(args.pools), _rules(args.rules)
        shares = pools.split(specs, rules, lengths.parse(args.lengths))
    except (ValueError, CatalogError) as exc:  # PoolPlanError and LengthSpecError included
        print(f"llmfleet plan pools: {exc}", file=sys.stderr)
        return 2
    base = Question(arch=specs[0].arch, input_len=1, output_len=1,
                    slo=Slo(args.pools_ttft_ms, args.pools_tpot_ms),
                    request_rate=args.pools_rate, market=Market(args.pools_market))
    sized = pools.size(shares, base)
    print(f"{args.pools_rate:g} requests/s of {args.lengths}, split by the length rules over "
          f"{pools.SAMPLES:,} drawn requests:\n")
    print(report.pools_table(sized))
    if any(s.best is None for s in sized):
        return 1
    print("\nenvironments/<env>.tfvars:\n" + report.pools_tfvars(sized, rules))
    return 0


def _add_predict(subs: Any) -> None:
    p = subs.add_parser("predict", help="one prediction as JSON")
    p.add_argument("--gpu", required=True)
    p.add_argument("--num-gpus", type=positive_int, default=1, help="tensor-parallel size")
    p.add_argument("--model", required=True, dest="predict_model")
    p.add_argument("--dtype", choices=PRECISIONS, default="fp16")
    p.add_argument("--kv-dtype", choices=["fp16", "bf16", "fp8"], default="fp16")
    p.add_argument("--input-len", type=positive_int, required=True, dest="predict_input")
    p.add_argument("--output-len", type=positive_int, required=True, dest="predict_output")
    p.add_argument("--concurrency", type=positive_int, default=1)
    p.add_argument("--kv-offload", action="store_true", dest="predict_offload")
    p.add_argument("--static", action="store_true", help="one batch that starts together")
    p.set_defaults(func=_predict)


def _add_validate(subs: Any) -> None:
    v = subs.add_parser("validate", help="the timing model's error on public measurements")
    v.add_argument("--fit", action="store_true",
                   help="refit the efficiency factors on the fitting share first")
    v.add_argument("--out", type=Path, help="write the factors here (default: the package's)")
    v.set_defaults(func=_validate)


def _add_calibrate(subs: Any) -> None:
    c = subs.add_parser("calibrate", help="fit runtime and energy to measurements and "
                                          "correct the efficiency factors")
    c.add_argument("--requests", type=Path, required=True, help="the plan search's requests.csv")
    c.add_argument("--profiles", type=Path, help="its profiles.csv (energy, where measured)")
    c.add_argument("--plan", help="only this plan's rows")
    c.add_argument("--gpu", help="with --model: correct this GPU's factors")
    c.add_argument("--model", dest="calibrate_model")
    c.add_argument("--dtype", choices=PRECISIONS, default="fp16", dest="calibrate_dtype")
    c.add_argument("--num-gpus", type=positive_int, default=1, dest="calibrate_gpus")
    c.add_argument("--quality", type=float, help="the model's quality score (0..1) for the "
                   "router's scored_models entry")
    c.set_defaults(func=_calibrate)


def _plan(args: argparse.Namespace) -> int:
    if not args.model:
        print("llmfleet plan: --model is required (or a subcommand: predict, validate, "
              "calibrate)", file=sys.stderr)
        return 2
    try:
        arch = catalog.model(args.model)
    except CatalogError as exc:
        print(f"llmfleet plan: {exc}", file=sys.stderr)
        return 2
    q = Question(
        arch=arch, input_len=args.input_len, output_len=args.output_len,
        slo=Slo(args.ttft_ms, args.tpot_ms, args.slo_tps), request_rate=args.rate,
        concurrency=args.batch_size, market=Market(args.market), offload=args.kv_offload,
        precisions=(Precision(args.precision),) if args.precision else SEARCHED_PRECISIONS,
        settings=Settings(gpu_memory_utilization=args.gpu_memory_utilization,
                          max_num_seqs=args.max_num_seqs, safety_factor=args.safety_factor))
    started = time.perf_counter()
    ranked = search(q)
    elapsed = time.perf_counter() - started
    best = ranked[0] if ranked and ranked[0].feasible else None
    if args.json:
        answer = report.answer(q, ranked, elapsed, arch.hf_id or args.model)
        print(json.dumps(answer.model_dump(mode="json"), indent=2))
    else:
        print(report.table(ranked, None if args.all else 25))
        print(f"\n{len(ranked)} candidates searched in {elapsed * 1000:.0f} ms.")
        print(report.recommendation(q, ranked))
        if best:
            print("\nenvironments/<env>.tfvars:\n" + report.tfvars(
                q, best, arch.hf_id or args.model))
    if best and not args.no_plot:
        path = report.plot(ranked, q, args.plot)
        print(f"plot: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0 if best else 1


def _predict(args: argparse.Namespace) -> int:
    try:
        gpu, arch = catalog.gpu(args.gpu), catalog.model(args.predict_model)
    except CatalogError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    dep = Deployment(arch, gpu, Precision(args.dtype), args.num_gpus, Precision(args.kv_dtype),
                     engine=engines.serving())
    work = Workload(args.predict_input, args.predict_output, args.concurrency)
    eff = efficiency.for_gpu(gpu.name)
    p = (predict_static(dep, work, eff) if args.static
         else predict(dep, work, eff, offload=args.predict_offload))
    mem = dep.memory()
    print(json.dumps({
        "ttft_ms": _ms(p.ttft_s), "tpot_ms": _ms(p.tpot_s), "e2e_ms": _ms(p.e2e_s),
        "output_throughput_tok_s": p.output_tok_s, "total_throughput_tok_s": p.total_tok_s,
        "requests_per_s": p.requests_s, "max_concurrency_fits": p.max_concurrency_fits,
        "running": p.running, "kv_offload_fraction": p.kv_offload_fraction,
        "decode_bound": p.decode_bound or None, "feasible": p.feasible,
        "why_not": p.why_not or None, "gpu": gpu.name, "model": arch.name,
        "memory_gib": {"usable_per_gpu": mem.usable / GIB, "weights_per_gpu": mem.weights / GIB,
                       "activations_per_gpu": mem.activations / GIB,
                       "kv_cache_total": max(mem.kv_cache_total, 0) / GIB,
                       "kv_per_token_mib": mem.kv_per_token / 2**20},
        "efficiency": asdict(eff)}, indent=2))
    return 0 if p.feasible else 1


def _ms(seconds: float) -> float | None:
    return seconds * 1000 if seconds != float("inf") else None


def _validate(args: argparse.Namespace) -> int:
    rows = validation.load()
    if args.fit:
        target = args.out or Path(str(efficiency.resources_path()))
        efficiency.write(validation.fit_table(rows), target)
        eff_for = efficiency.loader(target)
        engine_target = target.with_name("engines.csv") if args.out \
            else engines.resources_path()
        engines.write(validation.fit_engines(rows, eff_for), engine_target)
        print(f"factors written to {target}, engine costs to {engine_target}")
    eff_for = (efficiency.loader(args.out) if args.out else efficiency.for_gpu)
    print(validation.report(rows, eff_for))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    try:
        runtime = calibrate.runtime_samples(args.requests, args.plan)
        energy = calibrate.energy_samples(args.profiles, args.plan) if args.profiles else {}
        result: dict[str, Any] = {"runtime_s": {}, "energy_j": {}, "notes": []}
        fits: dict[tuple[str, int], calibrate.Fit] = {}
        for (plan_name, concurrency), samples in sorted(runtime.items()):
            fit = _try_fit(samples, result["notes"], f"{plan_name} @ {concurrency}")
            if fit:
                fits[(plan_name, concurrency)] = fit
                result["runtime_s"][f"{plan_name}@{concurrency}"] = fit.as_dict()
        for plan_name, samples in sorted(energy.items()):
            fit = _try_fit(samples, result["notes"], f"{plan_name} energy")
            if fit:
                result["energy_j"][plan_name] = fit.as_dict()
        if args.gpu and args.calibrate_model:
            result["corrected"] = _corrections(args, runtime, fits)
        # The router's setting, less each model's quality unless --quality gave it.
        result["scored_models"] = [entry.model_dump(mode="json", exclude_none=True)
                                   for entry in _router_entries(args, result)]
    except (CalibrationError, CatalogError) as exc:
        print(f"llmfleet plan calibrate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0 if result["runtime_s"] else 1


def _router_entries(args: argparse.Namespace,
                    result: dict[str, Any]) -> list[ScoredModelDraft]:
    """The router's `scored_models` entries: runtime at the highest measured concurrency."""
    entries = []
    for plan_name in sorted({key.split("@")[0] for key in result["runtime_s"]}):
        levels = {int(k.split("@")[1]): v for k, v in result["runtime_s"].items()
                  if k.split("@")[0] == plan_name}
        runtime = levels[max(levels)]
        energy = result["energy_j"].get(plan_name)
        if energy is None and args.gpu:
            watts = catalog.gpu(args.gpu).tdp_w * args.calibrate_gpus
            energy = {k: runtime[k] * watts for k in LINEAR}
            result["notes"].append(f"{plan_name}: no energy measured; energy_j is runtime x "
                                   f"{watts:g} W of TDP, an upper bound")
        if energy is None:
            result["notes"].append(f"{plan_name}: no energy measured and no --gpu to bound it")
            continue
        try:
            entries.append(ScoredModelDraft.model_validate({
                "model": plan_name, "runtime_s": {k: runtime[k] for k in LINEAR},
                "energy_j": {k: energy[k] for k in LINEAR}, "quality": args.quality}))
        except ValidationError:
            # Noise can fit a negative per-token cost; the router refuses one, so say it here.
            result["notes"].append(f"{plan_name}: a fitted per-token cost is negative; no "
                                   "router entry (measure more requests, or longer ones)")
    return entries


LINEAR = ("intercept", "per_input_token", "per_output_token")


def _try_fit(samples: list[tuple[float, float, float]], notes: list[str],
             what: str) -> calibrate.Fit | None:
    try:
        return calibrate.ols(samples)
    except CalibrationError as exc:
        notes.append(f"{what}: {exc}")
        return None


def _corrections(args: argparse.Namespace,
                 runtime: dict[tuple[str, int], list[tuple[float, float, float]]],
                 fits: dict[tuple[str, int], calibrate.Fit]) -> dict[str, Any]:
    gpu, arch = catalog.gpu(args.gpu), catalog.model(args.calibrate_model)
    dep = Deployment(arch, gpu, Precision(args.calibrate_dtype), args.calibrate_gpus,
                     engine=engines.serving())
    out: dict[str, Any] = {}
    for (plan_name, concurrency), fit in sorted(fits.items()):
        samples = runtime[(plan_name, concurrency)]
        fixed = calibrate.correct(dep, efficiency.for_gpu(gpu.name), fit, samples, concurrency)
        out[f"{plan_name}@{concurrency}"] = {"efficiency": asdict(fixed.efficiency),
                                             "model_fit": fixed.model_fit.as_dict(),
                                             "notes": list(fixed.notes)}
    return out

