"""How far the timing model is from public measurements, and the fit of its factors.

The table (`planner/data/validation.csv`, built by `benchmarks/planner_sources.py`)
holds NVIDIA's published serving and static-batch measurements, each row with its
source. A fixed, hash-chosen 30% of the rows fits each GPU's efficiency factors; the
error is reported on the other 70% only, so no row both tunes and judges the model.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import resources

from planner import catalog
from planner.efficiency import Row
from planner.memory import Precision, Settings
from planner.timing import Deployment, Efficiency, Prediction, Workload, predict, predict_static

FIT_SHARE = 30  # percent of rows, chosen by a hash of the row's id
METRICS = ("output_tok_s", "tpot_ms", "ttft_ms")


@dataclass(frozen=True)
class Measurement:
    id: str
    engine: str
    mode: str  # "serving" (closed loop at a concurrency) or "static" (one batch)
    gpu: str
    num_gpus: int
    model: str
    precision: Precision
    kv_precision: Precision
    workload: Workload
    measured: dict[str, float]
    source: str

    @property
    def for_fitting(self) -> bool:
        return zlib.crc32(self.id.encode()) % 100 < FIT_SHARE


def load(text: str | None = None) -> list[Measurement]:
    text = text or resources.files("planner").joinpath("data/validation.csv").read_text()
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        measured = {m: float(raw[m]) for m in (*METRICS, "e2e_ms") if raw[m].strip()}
        rows.append(Measurement(
            id=raw["id"], engine=raw["engine"], mode=raw["mode"], gpu=raw["gpu"],
            num_gpus=int(raw["num_gpus"]), model=raw["model"],
            precision=Precision(raw["precision"]), kv_precision=Precision(raw["kv_precision"]),
            measured=measured, source=raw["source"],
            workload=Workload(int(raw["input_len"]), int(raw["output_len"]),
                              int(raw["concurrency"]))))
    return rows


# TensorRT-LLM gives the KV cache 90% of the memory free after the weights and activations
# (`kv_cache_free_gpu_mem_fraction`), and its rows keep the batch limits the model assumed
# when they were first fitted; vLLM's rows run at vLLM's defaults for their GPU, its
# offline ones at the LLM class's.
TRTLLM_SETTINGS = Settings(max_num_seqs=256, max_num_batched_tokens=8192,
                           gpu_memory_utilization=1.0, safety_factor=1 / 0.9)


def settings_for(row: Measurement) -> Settings:
    if row.engine.startswith("trtllm"):
        return TRTLLM_SETTINGS
    return Settings(offline=row.mode != "serving")


def predicted(row: Measurement, eff: Efficiency) -> Prediction:
    dep = Deployment(catalog.model(row.model), catalog.gpu(row.gpu), row.precision, row.num_gpus,
                     row.kv_precision, settings_for(row))
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
    """Absolute percentage errors per metric; "infeasible" lists rows the model rejects."""
    out: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        p = predicted(row, eff_for(row.gpu))
        if not p.feasible:
            out["infeasible"].append(1.0)
            continue
        values = values_of(p)
        for metric, truth in row.measured.items():
            if metric in values and truth > 0:
                out[metric].append(abs(values[metric] - truth) / truth * 100)
    return out


def _loss(rows: Sequence[Measurement], eff: Efficiency) -> float:
    """Absolute log errors of throughput and TPOT, TTFT at half weight: robust to outliers."""
    total = 0.0
    for row in rows:
        p = predicted(row, eff)
        if not p.feasible:
            total += 10.0
            continue
        values = values_of(p)
        for metric, weight in (("output_tok_s", 1.0), ("tpot_ms", 1.0), ("ttft_ms", 0.5)):
            truth = row.measured.get(metric, 0.0)
            if truth > 0 and values[metric] > 0:
                total += weight * abs(math.log(values[metric] / truth))
    return total


BOUNDS = {"prefill_mfu": (0.05, 0.95), "decode_mfu": (0.05, 0.95), "bandwidth": (0.2, 0.98),
          "step_overhead_s": (0.0, 0.02), "allreduce_latency_s": (0.0, 200e-6)}


def fit(rows: Sequence[Measurement], start: Efficiency | None = None,
        rounds: int = 6) -> Efficiency:
    """Coordinate descent over the factors, each on a shrinking grid; deterministic."""
    eff = start or Efficiency()
    for spread in (0.5 ** r for r in range(rounds)):
        for name, (low, high) in BOUNDS.items():
            now = getattr(eff, name)
            step = (high - low) * spread / 4
            grid = sorted({min(high, max(low, now + k * step)) for k in range(-4, 5)})
            eff = min((replace(eff, **{name: v}) for v in grid), key=lambda e: _loss(rows, e))
    return eff


@dataclass(frozen=True)
class Score:
    gpu: str
    rows: int
    median: dict[str, float]
    worst: dict[str, float]


def scores(rows: Sequence[Measurement], eff_for: Callable[[str], Efficiency]) -> list[Score]:
    """Median and worst absolute percentage error per GPU and over all, on checking rows."""
    check = [r for r in rows if not r.for_fitting and comparable(r)]
    groups: dict[str, list[Measurement]] = defaultdict(list)
    for row in check:
        groups[row.gpu].append(row)
    groups["all"] = check
    out = []
    for gpu, members in groups.items():
        errs = errors(members, eff_for)
        out.append(Score(gpu=gpu, rows=len(members),
                         median={m: statistics.median(errs[m]) for m in METRICS if errs[m]},
                         worst={m: max(errs[m]) for m in METRICS if errs[m]}))
    return out


# GPUs without public measurements borrow the fitted factors of the nearest GPU.
BORROWED = {"A100-40G": "A100-80G", "A10G": "L40S", "L4": "L40S", "A40": "L40S", "T4": "L40S"}


def fit_table(rows: Sequence[Measurement]) -> list[Row]:
    """Factors per catalogued GPU: fitted where there are rows, else borrowed and said so."""
    fitted: dict[str, Row] = {}
    for name in sorted({r.gpu for r in rows}):
        chosen = [r for r in rows if r.gpu == name and r.for_fitting and comparable(r)]
        fitted[name] = Row(name, fit(chosen), f"fitted to {len(chosen)} rows of validation.csv "
                                            f"(the {FIT_SHARE}% fitting share)")
    out = list(fitted.values())
    for gpu in catalog.gpus().values():
        if gpu.name not in fitted and gpu.name in BORROWED:
            donor = BORROWED[gpu.name]
            out.append(Row(gpu.name, fitted[donor].efficiency,
                           f"borrowed from {donor} (no public measurements; not validated)"))
    return out


def render(found: Sequence[Score], rows: Sequence[Measurement]) -> str:
    """The per-GPU error table, as BENCHMARKS.md shows it."""
    fitting = sum(r.for_fitting for r in rows)
    skipped = sum(not comparable(r) for r in rows if not r.for_fitting)
    lines = [f"{len(rows)} measurements: {fitting} fit the factors, the other "
             f"{len(rows) - fitting} check them ({skipped} of those ran past the model's "
             "context and are left out)"
             ".", "",
             "| GPU | rows checked | output tok/s median / worst | TPOT median / worst "
             "| TTFT median / worst |", "|---|---:|---:|---:|---:|"]
    for s in sorted(found, key=lambda s: (s.gpu == "all", s.gpu)):
        cells = [f"{s.median[m]:.1f}% / {s.worst[m]:.0f}%" if m in s.median else "-"
                 for m in METRICS]
        lines.append(f"| {s.gpu} | {s.rows} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
