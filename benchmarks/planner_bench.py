"""How fast the planner answers, and how far its timing model is from measurements.

    python -m benchmarks.planner_bench    (make bench-planner)

Times the whole sizing search (every catalogued instance x precision x tensor-parallel
size x concurrency) for representative questions, median and worst of repeated runs,
and one `plan predict`; then the validation report on the checking share. Writes
docs/benchmarks/planner.json and docs/benchmarks/planner-validation.png (predicted
against measured output throughput and TPOT, TensorRT-LLM and vLLM rows apart).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from planner import catalog, efficiency, engines, validation
from planner.memory import Precision
from planner.sizing import Question, Slo, search
from planner.timing import Deployment, Workload, predict

OUT = Path("docs/benchmarks")
QUESTIONS = {
    "8B, 512/256, TTFT<=1s TPOT<=50ms, 20 req/s": Question(
        catalog.model("Llama-3.1-8B"), 512, 256, Slo(ttft_ms=1000, tpot_ms=50),
        request_rate=20),
    "70B, 2048/512, TPOT<=60ms": Question(catalog.model("Llama-3.1-70B"), 2048, 512,
                                          Slo(tpot_ms=60)),
    "7B, 128/128, fixed batch 32, fp16 only": Question(
        catalog.model("Mistral-7B-v0.1"), 128, 128, concurrency=32,
        precisions=(Precision.FP16,)),
}


def _timed(fn: Any, runs: int) -> tuple[float, float, Any]:
    samples, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), max(samples), result


def speed(runs: int = 20) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, q in QUESTIONS.items():
        median, worst, ranked = _timed(lambda q=q: search(q), runs)
        out[name] = {"candidates": len(ranked), "median_ms": median * 1000,
                     "worst_ms": worst * 1000}
        print(f"search  {name:<45} {len(ranked):>4} candidates  median {median * 1000:6.1f} ms"
              f"  worst {worst * 1000:6.1f} ms", flush=True)
    dep = Deployment(catalog.model("Llama-3.1-8B"), catalog.gpu("A10G"), Precision.FP16,
                     engine=engines.serving())
    eff = efficiency.for_gpu("A10G")
    median, worst, _ = _timed(lambda: predict(dep, Workload(512, 256, 32), eff), 1000)
    out["predict"] = {"median_us": median * 1e6, "worst_us": worst * 1e6}
    print(f"predict one workload: median {median * 1e6:.0f} us", flush=True)
    return out


def accuracy() -> dict[str, Any]:
    """The error on checking rows per GPU, source and engine, and on vLLM's rows alone."""
    rows = validation.load()
    print(validation.report(rows, efficiency.for_gpu), flush=True)
    vllm = [r for r in rows if not r.trtllm]
    groupings = {"gpu": (rows, lambda r: r.gpu), "source": (rows, lambda r: r.source_name),
                 "engine": (rows, lambda r: r.engine), "vllm_gpu": (vllm, lambda r: r.gpu)}
    return {name: {s.group: {"rows": s.rows, "median_ape": s.median, "worst_ape": s.worst}
                   for s in validation.scores(members, efficiency.for_gpu, by)}
            for name, (members, by) in groupings.items()}


def plot(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in validation.load() if not r.for_fitting and validation.comparable(r)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax, metric, label in ((axes[0], "output_tok_s", "output tokens/s"),
                              (axes[1], "tpot_ms", "TPOT (ms)")):
        for engine in ("TensorRT-LLM", "vLLM"):
            pairs = []
            for r in rows:
                p = validation.predicted(r, efficiency.for_gpu(r.gpu))
                if r.trtllm == (engine == "TensorRT-LLM") and p.feasible \
                        and metric in r.measured:
                    pairs.append((r.measured[metric], validation.values_of(p)[metric]))
            ax.scatter([a for a, _ in pairs], [b for _, b in pairs], s=6, alpha=0.4,
                       label=f"{engine} ({len(pairs)})")
        low, high = ax.get_xlim()
        ax.plot([low, high], [low, high], "k-", lw=0.8)
        ax.plot([low, high], [low * 1.15, high * 1.15], "k:", lw=0.8, label="±15%")
        ax.plot([low, high], [low / 1.15, high / 1.15], "k:", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.set_title(f"{label}: {len(rows)} held-out measurements")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"speed": speed(), "accuracy": accuracy()}
    (OUT / "planner.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(OUT / "planner-validation.png")
    print(f"wrote {OUT / 'planner.json'} and {OUT / 'planner-validation.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
