"""How far the timing model is from public measurements, and the fit of its factors.

Two tables, each row with its source. `planner/data/validation.csv` (built by
`benchmarks/planner_sources.py`) holds NVIDIA's published TensorRT-LLM measurements: NIM
serving runs and static batches; a fixed, hash-chosen 30% of them fits each GPU's
efficiency factors. `planner/data/validation_vllm.csv` (built by
`benchmarks/vllm_sources.py`) holds vLLM serving and offline runs from other publishers,
with the engine settings they ran with; 30% of its dense single-GPU runs fit the costs each
vLLM generation adds. The hash picks whole sweeps, so no neighbour of a fitting point checks.
The error is reported on every row that fitted nothing, per GPU, per source and per engine,
a row the model refuses counting as a 100% error: no row both tunes and judges the model.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import TypeVar

from planner import catalog, engines
from planner.efficiency import Row
from planner.memory import Precision, Settings
from planner.timing import (
    Deployment,
    Efficiency,
    EngineCosts,
    Prediction,
    Workload,
    predict,
    predict_static,
)

FIT_SHARE = 30  # percent of rows, chosen by a hash of the row's id
METRICS = ("output_tok_s", "tpot_ms", "ttft_ms")


@dataclass(frozen=True)
class Measurement:
    id: str
    engine: str
    mode: str  # "serving" (closed loop at a concurrency), "offline" (N prompts at once,
    # continuously batched) or "static" (one batch)
    gpu: str
    num_gpus: int
    model: str
    precision: Precision
    kv_precision: Precision
    workload: Workload
    measured: dict[str, float]
    source: str
    settings: Settings = field(default_factory=Settings)  # as far as the source says

    @property
    def sweep(self) -> str:
        """The run this row is a point of: France-Travail's rows (`ft-...-<parallel>`) are one
        sweep per report and prompt/output pair; NVIDIA's, one per configuration and lengths
        at its several concurrencies or batch sizes; a curated sweep's points (`...-c<N>`, N
        clients) one sweep; every other row is a run of its own."""
        if self.id.startswith("ft-"):
            return self.id.rsplit("-", 1)[0]
        if self.trtllm:
            w = self.workload
            return (f"{self.engine}/{self.mode}/{self.gpu}x{self.num_gpus}/{self.model}/"
                    f"{self.precision}/{w.input_len}/{w.output_len}")
        return re.sub(r"-c\d+$", "", self.id)

    @property
    def fits_something(self) -> bool:
        """A TensorRT-LLM row could fit its GPU's factors, a dense single-GPU vLLM row its
        engine's costs where its GPU's factors were fitted on the same chip; other rows
        (mixtures, tensor parallel vLLM, GPUs whose factors another chip lends) only ever
        check: fitted there, an engine's costs would absorb the borrowed factors' error."""
        if self.trtllm:
            return True
        return (self.num_gpus == 1 and not catalog.model(self.model).num_experts
                and self.gpu not in OTHER_CHIP)

    @property
    def for_fitting(self) -> bool:
        """In the share a hash of its sweep picks, and of a kind that fits something. Whole
        sweeps fall on one side: neighbouring points of one sweep must not fit and judge."""
        return self.fits_something and zlib.crc32(self.sweep.encode()) % 100 < FIT_SHARE

    @property
    def trtllm(self) -> bool:
        return self.engine.startswith("trtllm")

    @property
    def source_name(self) -> str:
        """The publisher: the source's repository (or page), without commit or path."""
        return self.source.split()[0].split("@")[0]


TABLES = ("data/validation.csv", "data/validation_vllm.csv")


def load(text: str | None = None) -> list[Measurement]:
    """Both tables' rows (or those of one table's `text`)."""
    texts = [text] if text is not None else [
        resources.files("planner").joinpath(name).read_text() for name in TABLES]
    return [_measurement(raw) for body in texts for raw in csv.DictReader(io.StringIO(body))]


def _optional(raw: dict[str, str], key: str) -> str:
    return (raw.get(key) or "").strip()


def _measurement(raw: dict[str, str]) -> Measurement:
    measured = {m: float(raw[m]) for m in (*METRICS, "e2e_ms") if raw[m].strip()}
    seqs, batched = _optional(raw, "max_num_seqs"), _optional(raw, "max_num_batched_tokens")
    utilization = _optional(raw, "gpu_memory_utilization")
    settings = Settings(max_num_seqs=int(seqs) if seqs else None,
                        max_num_batched_tokens=int(batched) if batched else None,
                        gpu_memory_utilization=float(utilization) if utilization else 0.9,
                        offline=raw["mode"] != "serving",
                        # V0 chunked its prefills only where its batch was cut to 512 tokens
                        chunked_prefill=engines.generation(raw["engine"]) == engines.SERVING
                        or batched == "512")
    return Measurement(
        id=raw["id"], engine=raw["engine"], mode=raw["mode"], gpu=raw["gpu"],
        num_gpus=int(raw["num_gpus"]), model=raw["model"],
        precision=Precision(raw["precision"]), kv_precision=Precision(raw["kv_precision"]),
        measured=measured, source=raw["source"], settings=settings,
        # Every source's clients start together (fixed lengths, or all requests at once):
        # they run in waves.
        workload=Workload(int(raw["input_len"]), int(raw["output_len"]),
                          int(raw["concurrency"]), waves=True))


# TensorRT-LLM gives the KV cache 90% of the memory free after the weights and activations
# (`kv_cache_free_gpu_mem_fraction`), and its rows keep the batch limits the model assumed
# when they were first fitted; vLLM's rows run at the settings their source gives, and
# vLLM's defaults for their GPU (its LLM class's offline) where it gives none.
TRTLLM_SETTINGS = Settings(max_num_seqs=256, max_num_batched_tokens=8192,
                           gpu_memory_utilization=1.0, safety_factor=1 / 0.9,
                           chunked_prefill=False)


def settings_for(row: Measurement) -> Settings:
    return TRTLLM_SETTINGS if row.trtllm else row.settings


def predicted(row: Measurement, eff: Efficiency,
              engine: EngineCosts | None = None) -> Prediction:
    """The model's prediction of a row: its GPU's factors, its engine's costs (or `engine`'s,
    as the row's server pays them)."""
    costs = engines.for_engine(row.engine) if engine is None else engines.adapt(engine,
                                                                               row.engine)
    dep = Deployment(catalog.model(row.model), catalog.gpu(row.gpu), row.precision, row.num_gpus,
                     row.kv_precision, settings_for(row), costs)
    model = predict_static if row.mode == "static" else predict
    return model(dep, row.workload, eff)


def values_of(p: Prediction) -> dict[str, float]:
    return {"output_tok_s": p.output_tok_s, "tpot_ms": p.tpot_s * 1000, "ttft_ms": p.ttft_s * 1000}


def comparable(row: Measurement) -> bool:
    """False for runs past the model's context, which fake-weight benchmarks allow."""
    limit = catalog.model(row.model).max_position_embeddings
    return row.workload.input_len + row.workload.output_len <= limit


def errors(rows: Iterable[Measurement], eff_for: Callable[[str], Efficiency]
           ) -> dict[str, list[float]]:
    """Absolute percentage errors per metric. A row the model refuses (it says the work does
    not fit, where it ran) counts as a 100% error on every metric it measured, and is listed
    under "refused"."""
    return _gathered(_row_errors(row, eff_for(row.gpu)) for row in rows)


def _row_errors(row: Measurement, eff: Efficiency) -> dict[str, float]:
    """One row's absolute percentage errors by metric (`errors`)."""
    p = predicted(row, eff)
    if not p.feasible:
        return {"refused": 1.0, **{m: 100.0 for m in METRICS if m in row.measured}}
    values = values_of(p)
    return {metric: abs(values[metric] - truth) / truth * 100
            for metric, truth in row.measured.items() if metric in values and truth > 0}


def _gathered(per_row: Iterable[dict[str, float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for errs in per_row:
        for metric, value in errs.items():
            out[metric].append(value)
    return out


def _loss(rows: Sequence[Measurement], eff: Efficiency | Callable[[str], Efficiency],
          engine: EngineCosts | None = None) -> float:
    """Absolute log errors of throughput and TPOT, TTFT at a quarter weight: robust to
    outliers.
    `eff` is one GPU's factors, or the factors by GPU."""
    total = 0.0
    for row in rows:
        p = predicted(row, eff if isinstance(eff, Efficiency) else eff(row.gpu), engine)
        if not p.feasible:
            total += 10.0
            continue
        values = values_of(p)
        for metric, weight in (("output_tok_s", 1.0), ("tpot_ms", 1.0), ("ttft_ms", 0.25)):
            truth = row.measured.get(metric, 0.0)
            if truth > 0 and values[metric] > 0:
                total += weight * abs(math.log(values[metric] / truth))
    return total


BOUNDS = {"prefill_mfu": (0.05, 0.95), "decode_mfu": (0.05, 0.95), "bandwidth": (0.2, 0.98),
          "step_overhead_s": (0.0, 0.02), "allreduce_latency_s": (0.0, 200e-6)}


Fitted = TypeVar("Fitted", Efficiency, EngineCosts)


def _descend(start: Fitted, bounds: dict[str, tuple[float, float]],
             loss: Callable[[Fitted], float], rounds: int,
             fixed: frozenset[str] = frozenset()) -> Fitted:
    """Coordinate descent over the fields `bounds` names (but those in `fixed`), each on a
    grid of nine points that halves every round; deterministic."""
    now = start
    for spread in (0.5 ** r for r in range(rounds)):
        for name, (low, high) in bounds.items():
            if name in fixed:
                continue
            at = getattr(now, name)
            step = (high - low) * spread / 4
            grid = sorted({min(high, max(low, at + k * step)) for k in range(-4, 5)})
            now = min((replace(now, **{name: v}) for v in grid), key=loss)
    return now


def fit(rows: Sequence[Measurement], start: Efficiency | None = None,
        rounds: int = 6) -> Efficiency:
    """One GPU's factors, by coordinate descent from `start` (the defaults unless given)."""
    return _descend(start or Efficiency(), BOUNDS, lambda e: _loss(rows, e), rounds)


@dataclass(frozen=True)
class Score:
    group: str
    rows: int
    median: dict[str, float]
    worst: dict[str, float]
    refused: int = 0  # rows the model said could not run (each a 100% error above)


def scores(rows: Sequence[Measurement], eff_for: Callable[[str], Efficiency],
           by: Callable[[Measurement], str] = lambda r: r.gpu) -> list[Score]:
    """Median and worst absolute percentage error per group (`by`: the GPU unless said) and
    over all, on checking rows."""
    check = [(row, _row_errors(row, eff_for(row.gpu))) for row in rows
             if not row.for_fitting and comparable(row)]  # each row predicted once
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    for row, row_errors in check:
        groups[by(row)].append(row_errors)
    groups["all"] = [row_errors for _, row_errors in check]
    out = []
    for group, members in groups.items():
        errs = _gathered(members)
        out.append(Score(group=group, rows=len(members),
                         median={m: statistics.median(errs[m]) for m in METRICS if errs[m]},
                         worst={m: max(errs[m]) for m in METRICS if errs[m]},
                         refused=len(errs["refused"])))
    return out


ENGINE_BOUNDS = {"compute": (0.3, 1.3), "step_s": (0.0, 0.02), "per_sequence_s": (0.0, 1e-3),
                 "attention": (0.2, 1.3)}


# V1's rows come through vLLM's own server, off the engine's loop: no cost per sequence to
# fit there (fitting one to V1's few rows made its TPOT grow with concurrency where the
# measurements' does not). Its fitting share is three rows from one publisher, too few for
# more than its kernels' share: fitted on them, a cost per step came out at 18.75 ms, and
# its attention (FlashAttention, as TensorRT-LLM's fused kernels) at 0.52, which checked
# no better than 1.0.
APART = {"per_sequence_s", "attention", "step_s"}


def fit_engine(rows: Sequence[Measurement], eff_for: Callable[[str], Efficiency],
               rounds: int = 5, fixed: frozenset[str] = frozenset()) -> EngineCosts:
    """An engine generation's costs over rows on several GPUs, their factors held fixed;
    coordinate descent, as `fit`; the costs in `fixed` stay at TensorRT-LLM's: zero, and
    attention at 1.0."""
    return _descend(EngineCosts(), ENGINE_BOUNDS, lambda c: _loss(rows, eff_for, c), rounds,
                    fixed)


def fit_engines(rows: Sequence[Measurement],
                eff_for: Callable[[str], Efficiency]) -> list[engines.Row]:
    """TensorRT-LLM at zero; each vLLM generation fitted to its rows' fitting share."""
    out = [engines.Row("trtllm", EngineCosts(), "the zero point: the GPU factors are fitted "
                                                "on TensorRT-LLM's measurements")]
    for name in engines.GENERATIONS:
        chosen = [r for r in rows if not r.trtllm and engines.generation(r.engine) == name
                  and r.for_fitting and comparable(r)]
        sources = len({r.source_name for r in chosen})
        fixed = frozenset(APART) if name == engines.SERVING else frozenset()
        out.append(engines.Row(name, fit_engine(chosen, eff_for, fixed=fixed),
                               f"fitted to {len(chosen)} rows "
                               f"of validation_vllm.csv from {sources} source(s) (the "
                               f"{FIT_SHARE}% fitting share)"))
    return out


# GPUs without TensorRT-LLM measurements to fit borrow the fitted factors of the nearest GPU:
# the A100 40GB those of its own chip with more memory, the others another chip's.
BORROWED = {"A100-40G": "A100-80G", "A10G": "L40S", "L4": "L40S", "A40": "L40S", "T4": "L40S"}
OTHER_CHIP = frozenset(set(BORROWED) - {"A100-40G"})


def fit_table(rows: Sequence[Measurement]) -> list[Row]:
    """Factors per catalogued GPU: fitted where there are rows, else borrowed and said so."""
    fitted: dict[str, Row] = {}
    for name in sorted({r.gpu for r in rows if r.for_fitting and r.trtllm}):
        chosen = [r for r in rows if r.gpu == name and r.for_fitting and r.trtllm
                  and comparable(r)]
        fitted[name] = Row(name, fit(chosen), f"fitted to {len(chosen)} rows of validation.csv "
                                            f"(the {FIT_SHARE}% fitting share)")
    out = list(fitted.values())
    for gpu in catalog.gpus().values():
        if gpu.name not in fitted and gpu.name in BORROWED:
            donor = BORROWED[gpu.name]
            out.append(Row(gpu.name, fitted[donor].efficiency,
                           f"borrowed from {donor} (no TensorRT-LLM measurements to fit)"))
    return out


def render(found: Sequence[Score], rows: Sequence[Measurement], title: str = "GPU") -> str:
    """One error table (per GPU unless `title` says otherwise), as BENCHMARKS.md shows it."""
    lines = [f"| {title} | rows checked | refused | output tok/s median / worst "
             "| TPOT median / worst | TTFT median / worst |", "|---|---:|---:|---:|---:|---:|"]
    for s in sorted(found, key=lambda s: (s.group == "all", s.group)):
        cells = [f"{s.median[m]:.1f}% / {s.worst[m]:.0f}%" if m in s.median else "-"
                 for m in METRICS]
        lines.append(f"| {s.group} | {s.rows} | {s.refused} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: Sequence[Measurement]) -> str:
    fitting = sum(r.for_fitting and r.trtllm for r in rows)
    costs = sum(r.for_fitting and not r.trtllm for r in rows)
    checking = [r for r in rows if not r.for_fitting]
    skipped = sum(not comparable(r) for r in checking)
    vllm = sum(not r.trtllm for r in checking)
    return (f"{len(rows)} measurements: {fitting} of TensorRT-LLM fit the GPU factors, "
            f"{costs} of vLLM fit its engines' costs, the other {len(checking)} check them, "
            f"{vllm} of those from vLLM ({skipped} ran past the model's context and are left "
            "out).")


def report(rows: Sequence[Measurement], eff_for: Callable[[str], Efficiency]) -> str:
    """`llmfleet plan validate`: the error per GPU, per source and per engine, and on the
    vLLM rows alone."""
    vllm = [r for r in rows if not r.engine.startswith("trtllm")]
    sections = [
        ("Per GPU", render(scores(rows, eff_for), rows)),
        ("Per source", render(scores(rows, eff_for, lambda r: r.source_name), rows, "source")),
        ("Per engine", render(scores(rows, eff_for, lambda r: r.engine), rows, "engine")),
        ("vLLM rows alone, per GPU", render(scores(vllm, eff_for), vllm))]
    return "\n\n".join([summary(rows), *(f"{name}:\n\n{table}" for name, table in sections)])
