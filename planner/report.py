"""What `llmfleet plan` shows: the ranked table, the recommendation, a tfvars snippet,
JSON for machines, and cost against latency with the feasible frontier; for several pools
(`llmfleet plan pools`), a line per pool and the tfvars' `pools` and `routing`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from llmfleet.core.instances import Market
from llmfleet.core.routing import LengthRule, ordered
from llmfleet.core.wire.sizing import SizedCandidate, SizingAnswer
from planner.catalog import BF16_ONLY
from planner.memory import Precision
from planner.pools import PoolSizing
from planner.sizing import CLOSE_COST, Candidate, Question, asg_capacity

HEADER = (f"{'instance':<14}{'prec':<6}{'TP':>3}{'x':>3}{'conc':>6}{'mem/GPU':>9}{'offload':>8}"
          f"{'TTFT ms':>9}{'TPOT ms':>9}{'tok/s':>9}{'$/hr':>8}{'$/Mtok':>8}{'tok/s/$':>9}"
          f"{'count':>6}  verdict")


def _num(value: float, width: int, digits: int = 0) -> str:
    if not math.isfinite(value) or value == 0:
        return f"{'-':>{width}}"
    return f"{value:>{width}.{digits}f}"


def row(c: Candidate) -> str:
    p = c.prediction
    verdict = "ok" if c.feasible else c.why_not
    price = c.price_usd_hr or 0.0
    offload = f"{p.kv_offload_fraction:.0%}" if c.feasible else "-"
    return (f"{c.instance.name:<14}{c.precision.value:<6}{c.tensor_parallel:>3}"
            f"{c.replicas_per_instance:>3}{c.concurrency or '-':>6}"
            f"{c.memory_per_gpu_gib:>8.1f}G{offload:>8}{_num(p.ttft_s * 1000, 9)}"
            f"{_num(p.tpot_s * 1000, 9, 1)}{_num(c.output_tok_s, 9)}{_num(price, 8, 2)}"
            f"{_num(c.usd_per_million_output, 8, 3)}{_num(c.tok_s_per_usd_hr, 9)}"
            f"{c.instances_needed if c.feasible else '-':>6}  {verdict}")


def table(ranked: Sequence[Candidate], limit: int | None = 25) -> str:
    shown = list(ranked if limit is None else ranked[:limit])
    lines = [HEADER, *(row(c) for c in shown)]
    if limit is not None and len(ranked) > limit:
        lines.append(f"... {len(ranked) - limit} more (--all shows them)")
    return "\n".join(lines)


def recommendation(q: Question, ranked: Sequence[Candidate]) -> str:
    """The recommended candidate (`ranked[0]`), what it predicts and costs, and why it."""
    best = ranked[0] if ranked and ranked[0].feasible else None
    if best is None:
        return "No candidate meets the SLO; the table says why for each."
    p, cap = best.prediction, asg_capacity(best)
    load = best.at_load or p
    return (f"Recommended: {best.instance.name} ({best.instance.gpu_count}x {best.instance.gpu}),"
            f" {best.precision.value}, tensor parallel {best.tensor_parallel} x "
            f"{best.replicas_per_instance} replica(s), up to {best.concurrency} concurrent "
            f"requests per replica.\n  At {q.rate:g} requests/s on {best.instances_needed} "
            f"instance(s): TTFT {load.ttft_s * 1000:.0f} ms, TPOT {load.tpot_s * 1000:.1f} ms; "
            f"${best.fleet_usd_hr:.2f}/hr {q.market}.\n  Flat out: TTFT {p.ttft_s * 1000:.0f} ms,"
            f" TPOT {p.tpot_s * 1000:.1f} ms, {best.output_tok_s:.0f} output tokens/s per "
            f"instance, ${best.usd_per_million_output:.3f} per million output tokens.\n"
            f"  Auto Scaling group: min {cap.min}, desired {cap.desired}, max {cap.max} (its "
            f"scaling policy moves it between them).\n  Why: {why(q, ranked)}"
            + (MIXTURE_CAUTION if q.arch.num_experts else ""))


# What the validation found (BENCHMARKS.md): said wherever a mixture is sized, until fixed.
MIXTURE_CAUTION = (
    "\n  Caution: this is a mixture of experts, which the planner over-predicts: vLLM's "
    "Qwen3-235B-A22B runs at tensor parallel 4 and 8 with fixed lengths measured 12% to 55% "
    "less throughput than predicted (a half to a third in bursts of mixed lengths). Measure "
    "one instance (llmfleet bench) before sizing a fleet on these figures.")


def why(q: Question, ranked: Sequence[Candidate]) -> str:
    """Why the first candidate: the load it is sized for, and any cheaper one it beat."""
    best = ranked[0]
    load = f"{q.rate:g} requests/s"
    assumed = ("" if q.request_rate is not None else
               f" No request rate was given, so the fleet is sized for {q.rate:g} requests/s "
               f"({q.rate * q.output_len:.0f} output tokens/s); give yours (--rate) to size "
               "it for your load.")
    cheaper = min((c for c in ranked if c.feasible), key=lambda c: c.fleet_usd_hr)
    if cheaper.fleet_usd_hr >= best.fleet_usd_hr:
        return f"the cheapest fleet that meets the SLO at {load}.{assumed}"
    saving = 1 - cheaper.fleet_usd_hr / best.fleet_usd_hr
    return (f"the cheapest fleets at {load} are within {CLOSE_COST:.0%} of each other; "
            f"{cheaper.instance.name} ({cheaper.instance.gpu_count}x {cheaper.instance.gpu}, "
            f"{cheaper.precision.value}) would save {saving:.1%} "
            f"but {_tie_reason(best, cheaper)}.{assumed}")


def _tie_reason(best: Candidate, other: Candidate) -> str:
    if (best.price_usd_hr or 0) < (other.price_usd_hr or 0):
        return (f"on a ${other.price_usd_hr:.2f}/hr instance against ${best.price_usd_hr:.2f}: "
                "the smaller instance costs less while the load is low and scales in finer steps")
    return (f"at {other.precision.value} it needs a checkpoint quantised to it, which "
            f"{best.precision.value} does not")


VLLM_PRECISION_ARGS = {
    Precision.FP32: "--dtype float32", Precision.FP16: "--dtype float16",
    Precision.BF16: "--dtype bfloat16", Precision.FP8: "--quantization fp8",
    Precision.INT8: "", Precision.INT4: ""}


def vllm_args(q: Question, c: Candidate) -> str:
    dtype = VLLM_PRECISION_ARGS[c.precision]
    if q.arch.family in BF16_ONLY and c.precision in (Precision.FP16, Precision.BF16):
        dtype = "--dtype bfloat16"  # vLLM refuses float16 for these (the same two bytes)
    parts = [dtype, f"--tensor-parallel-size {c.tensor_parallel}"]
    if c.replicas_per_instance > 1:
        parts.append(f"--data-parallel-size {c.replicas_per_instance}")
    parts.append(f"--max-num-seqs {c.concurrency}")
    return " ".join(p for p in parts if p)


def _deployment_notes(q: Question, c: Candidate) -> list[str]:
    """The tfvars lines a candidate needs beyond its type and size: spot, and a quantised
    checkpoint's reminder."""
    lines = []
    if q.market is Market.SPOT:
        lines.append("spot          = { on_demand_base = 0, spot_percentage = 100 }")
    if c.precision in (Precision.INT8, Precision.INT4):
        lines.append(f"# {c.precision.value} needs a checkpoint quantised to it (GPTQ or AWQ):"
                     " point model.id at one")
    return lines


def tfvars(q: Question, c: Candidate, model_id: str) -> str:
    cap = asg_capacity(c)
    lines = [f"# llmfleet plan: {q.input_len} in / {q.output_len} out tokens, "
             f"{c.prediction.output_tok_s * c.replicas_per_instance:.0f} output tokens/s per "
             "instance predicted",
             f'instance_type = "{c.instance.name}"',
             f"capacity      = {{ min = {cap.min}, max = {cap.max}, "
             f"desired = {cap.desired} }}", *_deployment_notes(q, c)]
    lines += ["model = {", f'  id            = "{model_id}"',
              f'  vllm_args     = "{vllm_args(q, c)}"',
              f"  max_model_len = {q.input_len + q.output_len}", "}"]
    return "\n".join(lines)


def as_wire(q: Question, c: Candidate, on_frontier: bool) -> SizedCandidate:
    p = c.prediction
    return SizedCandidate(
        instance_type=c.instance.name, gpu=c.instance.gpu, gpus=c.instance.gpu_count,
        precision=c.precision.value, tensor_parallel=c.tensor_parallel,
        replicas_per_instance=c.replicas_per_instance, concurrency=c.concurrency,
        feasible=c.feasible, why_not=c.why_not, ttft_ms=_finite(p.ttft_s * 1000),
        tpot_ms=_finite(p.tpot_s * 1000), e2e_ms=_finite(p.e2e_s * 1000),
        ttft_ms_at_rate=_finite(c.at_load.ttft_s * 1000) if c.at_load else None,
        tpot_ms_at_rate=_finite(c.at_load.tpot_s * 1000) if c.at_load else None,
        output_tok_s=c.output_tok_s, kv_offload_fraction=p.kv_offload_fraction,
        usd_hr=c.price_usd_hr, usd_per_million_output_tokens=_finite(c.usd_per_million_output),
        instances=c.instances_needed, asg=asg_capacity(c) if c.feasible else None,
        cost=_finite(cost(q, c)), on_frontier=on_frontier)


def answer(q: Question, ranked: Sequence[Candidate], search_s: float,
           model_id: str) -> SizingAnswer:
    """The whole ranking for machines: `llmfleet plan --json` and the console's explorer.

    `cost` is what the ranking minimises (`cost_unit` says which), and `on_frontier`
    marks the feasible candidates no other beats on both cost and latency.
    """
    best = ranked[0] if ranked and ranked[0].feasible else None
    feasible = [i for i, c in enumerate(ranked) if c.feasible]
    edge = {feasible[i] for i in frontier([(ranked[j].prediction.e2e_s, cost(q, ranked[j]))
                                           for j in feasible])}
    rows = tuple(as_wire(q, c, i in edge) for i, c in enumerate(ranked))
    return SizingAnswer(
        model=q.arch.name, searched=len(ranked), search_s=search_s,
        cost_unit=f"fleet $/hr for {q.rate:g} requests/s"
        + ("" if q.request_rate is not None else " (no rate given)"),
        recommended=rows[0] if best else None, recommendation=recommendation(q, ranked),
        tfvars=tfvars(q, best, model_id) if best else None, candidates=rows)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def frontier(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indexes of the Pareto-optimal points (lower latency and lower cost both better)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    best, out = math.inf, []
    for i in order:
        if points[i][1] < best:
            best = points[i][1]
            out.append(i)
    return out


MARKERS = {"fp32": "P", "fp16": "o", "bf16": "o", "fp8": "s", "int8": "x", "int4": "^"}


def cost(q: Question, c: Candidate) -> float:
    """What the ranking minimises: the fleet's $/hr at the question's rate."""
    return c.fleet_usd_hr


def plot(ranked: Sequence[Candidate], q: Question, out: Path) -> Path:
    """The ranking's cost against end-to-end latency, the feasible frontier joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(9, 5.5))
    feasible = [c for c in ranked if c.feasible]
    points = [(c.prediction.e2e_s, cost(q, c)) for c in feasible]
    for precision in sorted({c.precision for c in feasible}):
        chosen = [p for p, c in zip(points, feasible, strict=True) if c.precision is precision]
        ax.scatter([p[0] for p in chosen], [p[1] for p in chosen], s=26, alpha=0.65,
                   marker=MARKERS[precision.value], label=precision.value)
    edge = [points[i] for i in frontier(points)]
    ax.plot([p[0] for p in edge], [p[1] for p in edge], "k-", lw=1.2, label="feasible frontier")
    for i in frontier(points)[:8]:
        c = feasible[i]
        ax.annotate(f"{c.instance.name} {c.precision.value} TP{c.tensor_parallel}", points[i],
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    if feasible:
        ax.scatter([points[0][0]], [points[0][1]], s=160, facecolors="none", edgecolors="red",
                   label="recommended")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("end-to-end latency per request (s)")
    ax.set_ylabel(f"fleet $/hr for {q.rate:g} requests/s")
    ax.set_title(f"{q.arch.name}: {q.input_len} in / {q.output_len} out, {q.market}; "
                 f"{len(feasible)} of {len(ranked)} candidates meet the SLO")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


POOLS_HEADER = (f"{'pool':<12}{'share':>7}{'req/s':>8}{'in':>6}{'out':>6}  {'instance':<14}"
                f"{'prec':<6}{'TP':>3}{'conc':>6}{'TTFT ms':>9}{'TPOT ms':>9}{'count':>6}"
                f"{'$/hr':>9}")


def pools_table(sizings: Sequence[PoolSizing]) -> str:
    """One line per pool (its share of the mix, what it is sized on, what that costs),
    and the deployment's total."""
    lines = [POOLS_HEADER]
    total = 0.0
    for s in sizings:
        q, c = s.question, s.best
        head = (f"{s.share.pool.name:<12}{s.share.share:>7.1%}{q.request_rate or 0:>8.2f}"
                f"{q.input_len:>6}{q.output_len:>6}  ")
        if c is None:
            lines.append(head + f"no candidate: {s.why_not}")
            continue
        p = c.prediction
        total += c.fleet_usd_hr
        lines.append(head + f"{c.instance.name:<14}{c.precision.value:<6}{c.tensor_parallel:>3}"
                     f"{c.concurrency:>6}{_num(p.ttft_s * 1000, 9)}{_num(p.tpot_s * 1000, 9, 1)}"
                     f"{c.instances_needed:>6}{c.fleet_usd_hr:>9.2f}")
    lines.append(f"{'total':<{len(POOLS_HEADER) - 9}}{total:>9.2f}")
    return "\n".join(lines)


def pools_tfvars(sizings: Sequence[PoolSizing], rules: Sequence[LengthRule]) -> str:
    """The `pools` and `routing` blocks of an environment's tfvars for these sizings (every
    pool must have a candidate). The routing rules name each pool's model id, its served
    name when the tfvars set none."""
    ids = {s.share.pool.name: s.share.pool.model_id for s in sizings}
    lines = ["pools = {"]
    for s in sizings:
        c = s.best
        assert c is not None
        cap = asg_capacity(c)
        lines += [f"  {s.share.pool.name} = {{",
                  f"    # {s.share.share:.0%} of the requests, {s.question.input_len} in / "
                  f"{s.question.output_len} out tokens on average",
                  f'    instance_type = "{c.instance.name}"',
                  f"    capacity      = {{ min = {cap.min}, max = {cap.max}, "
                  f"desired = {cap.desired} }}",
                  f'    scaling       = {{ policy = "inflight-guard", '
                  f"inflight_per_instance = {s.inflight_target} }}",
                  *(f"    {line}" for line in _deployment_notes(s.question, c))]
        lines += [f'    model         = {{ id = "{ids[s.share.pool.name]}", vllm_args = '
                  f'"{vllm_args(s.question, c)}", max_model_len = '
                  f"{s.share.max_model_len} }}",
                  "  }"]
    lines += ["}", "routing = {", "  length_rules = ["]
    for rule in ordered(rules):
        bound = ("" if rule.max_prompt_tokens is None
                 else f", max_prompt_tokens = {rule.max_prompt_tokens}")
        lines.append(f'    {{ model = "{ids[rule.model]}"{bound} }},')
    lines += ["  ]", "}"]
    return "\n".join(lines)
