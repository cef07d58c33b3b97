"""Turn public vLLM measurements into the planner's second validation table.

    python -m benchmarks.vllm_sources FT_DIR FT_COMMIT benchmarks/data/vllm_curated.csv \\
        > planner/data/validation_vllm.csv

Two kinds of source; 30% of the dense single-GPU runs (whole sweeps, by a hash) fit the
costs each vLLM generation adds (`planner.validation.fit_engines`), the rest check them:

- github.com/France-Travail/results_benchmark_llm_serving (a checkout of it at FT_DIR, at
  FT_COMMIT): vLLM 0.4.3 to 0.6.3 behind happy_vllm, each report a closed loop of 1 to 38
  parallel requests for 9 prompt/output pairs (prompts "roughly" 32, 1,024 and 4,096
  tokens, outputs fixed at 16, 128 and 1,024), 1,000 requests or a time budget each. Their
  engine is named with its server (`vllm-0.4.3+happy_vllm`): happy_vllm streams each token
  from the engine's own loop, which costs a little per sequence and step.
  Throughput is the report's total generation speed (tokens over the run's time); TTFT,
  TPOT and the end-to-end time are per-request medians, and the prompt length the mean the
  server counted (the "32-token" prompts are 46 to 57), from the raw results beside each
  report (`raw_results.zip`; the checkout needs its large files). The engine's settings come
  from each report's parameters.json. Only reports of catalogued 16-bit models on
  catalogued GPUs are kept: its H100 folders are left out (the KV cache
  their reports state, ~525k tokens for an 8B model, needs an H100 NVL's 94 GB, which the
  catalogue does not hold), as are AWQ checkpoints and models of other architectures.
  Fine-tunes and code models are sized as the architecture they share (said in each row).
- benchmarks/data/vllm_curated.csv: published runs and sweeps (vLLM's benchmark scripts'
  results, READMEs, result tables, a web page's table), each row copied from the line or
  table cell its `source` names, with what the source leaves uncertain, passed through; a
  sweep's points are named `...-c<clients>` and held out together.

vLLM before 0.8 (its V0 engine) batched a whole prompt at once: `max_num_batched_tokens`
was max(max_model_len, 2048), or 512 where chunked prefill was on (by default from a
32,768-token context on). Rows that leave the limits empty (V1's, and single runs whose
source gives none) get vLLM's V1 defaults for the GPU (`planner.memory.Settings.limits`).
"""

from __future__ import annotations

import csv
import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from planner import catalog

REPO = "github.com/France-Travail/results_benchmark_llm_serving"
GPUS = {"A100-40g": "A100-40G", "A100-80g": "A100-80G"}
# Their checkpoint -> the catalogued architecture it has, what to say about the mapping,
# and its own context where it differs from the catalogued one's (the V0 engine's batch).
MODELS = {
    "Meta-Llama-3-8B-Instruct": ("Llama-3-8B", "", None),
    "Meta-Llama-3.1-8B-Instruct": ("Llama-3.1-8B", "", None),
    "Phi-3-mini-128k-instruct": ("Phi-3-mini-4k-instruct",
                                 "the 128k release: the 4k one's shape, longer RoPE", 131072),
    "CodeLlama-7b-Instruct-hf": ("Llama-2-7B", "CodeLlama-7B: Llama-2-7B's shape, vocab 32016",
                                 16384),
    "CodeLlama-13b-Instruct-hf": ("Llama-2-13B",
                                  "CodeLlama-13B: Llama-2-13B's shape, vocab 32016", 16384),
    "Qwen2-7B-Instruct": ("Qwen2.5-7B-Instruct", "Qwen2-7B: Qwen2.5-7B's shape", None),
    "vigostral-7b-chat": ("Mistral-7B-v0.1", "a Mistral-7B-v0.1 fine-tune", None),
}
FIELDS = ["id", "engine", "mode", "gpu", "num_gpus", "model", "precision", "kv_precision",
          "input_len", "output_len", "concurrency", "ttft_ms", "tpot_ms", "e2e_ms",
          "output_tok_s", "max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization",
          "source"]


def v0_batched_tokens(params: dict[str, Any], context: int) -> int | str:
    """What vLLM's V0 engine batched a step to; empty for V1 (0.8 on), whose default the
    planner knows per GPU."""
    version = tuple(int(p) for p in str(params["vllm_version"]).split(".")[:2])
    if params.get("max_num_batched_tokens"):
        return int(params["max_num_batched_tokens"])
    if version >= (0, 8):
        return ""
    max_model_len = int(params.get("max_model_len") or context)
    chunked = params.get("enable_chunked_prefill")
    if chunked or (chunked is None and max_model_len > 32768):
        return 512
    return max(max_model_len, 2048)


def _medians(raw: zipfile.ZipFile, name: str, parallel: int) -> dict[str, float]:
    """One run's per-request medians from the raw results beside its report: TTFT, the
    end-to-end time, TPOT (the median time from the first token to the last over the
    tokens after the first) and the mean prompt length the server counted. The report's
    own per-request "speed generation" is output tokens over the whole request, TTFT
    included, so 1 / it is not a TPOT (taken as one, it put 25 ms of a 4,096-token
    prompt's TTFT into each of 16 tokens)."""
    run = json.loads(raw.read(f"generation_speed_{name}_nb_requests_{parallel}.json"))
    stats = run["aggregated_metrics"]
    tokens = stats["response_length"]["median"]
    return {"ttft_ms": stats["time_to_first_token"]["median"] * 1000,
            "e2e_ms": stats["total_query_time"]["median"] * 1000,
            "tpot_ms": (stats["completion_time_from_first_token"]["median"] * 1000
                        / (tokens - 1) if tokens > 1 else 0.0),
            "prompt": stats["prompt_length"]["mean"]}


def _report_rows(report: Path, root: Path, commit: str) -> Iterator[dict[str, object]]:
    params = json.loads((report / "parameters.json").read_text())
    gpu = GPUS.get(report.relative_to(root).parts[0])
    mapped = MODELS.get(str(params["model"]))
    if gpu is None or mapped is None or params.get("quantization") \
            or int(params.get("tensor_parallel_size") or 1) != 1 \
            or "vision" in report.as_posix():  # a vision model's folder, whatever it says
        return
    model, note, context = mapped
    context = context or catalog.model(model).max_position_embeddings
    precision = "fp16" if params.get("dtype") == "float16" else "bf16"
    totals = json.loads((report / "data/total_speed_generation_graph_data.json").read_text())
    where = report.relative_to(root).as_posix()
    raw_path = report.parent / "raw_results.zip"
    try:
        raw = zipfile.ZipFile(raw_path)
    except (FileNotFoundError, zipfile.BadZipFile) as exc:
        raise SystemExit(f"{raw_path}: no raw results to read (a large file the checkout "
                         "left out, or a Git LFS pointer: fetch it)") from exc
    with raw:
        for scenario in totals.values():
            prompt, output = int(scenario["input_length"]), int(scenario["output_length"])
            name = f"input_{prompt}_output_{output}"
            for point in scenario["data"]:
                parallel = int(point["nb_parallel_requests"])
                medians = _medians(raw, name, parallel)
                yield {
                    "id": f"ft-{where.replace('/', '-')}-{name}-{parallel}",
                    "engine": f"vllm-{params['vllm_version']}+happy_vllm", "mode": "serving",
                    "gpu": gpu, "num_gpus": 1, "model": model, "precision": precision,
                    "kv_precision": "fp16",
                    # "roughly" the nominal length: the tokens the server counted
                    "input_len": round(medians["prompt"]), "output_len": output,
                    "concurrency": parallel,
                    "ttft_ms": round(medians["ttft_ms"], 3),
                    "tpot_ms": round(medians["tpot_ms"], 3) if medians["tpot_ms"] else "",
                    "e2e_ms": round(medians["e2e_ms"], 3),
                    "output_tok_s": round(float(point["speed"]), 2),
                    "max_num_seqs": params.get("max_num_seqs") or "",
                    "max_num_batched_tokens": v0_batched_tokens(params, context),
                    "gpu_memory_utilization": params.get("gpu_memory_utilization") or "",
                    "source": (f"{REPO}@{commit} {where}/data/total_speed_generation_graph_data"
                               f".json ({name}, {parallel} parallel requests); TTFT, TPOT, "
                               f"end-to-end and prompt length: the per-request medians (the "
                               f"mean prompt) in {raw_path.relative_to(root).as_posix()} "
                               f"generation_speed_{name}_nb_requests_{parallel}.json; "
                               f"{params['model']}" + (f" ({note})" if note else ""))}


def france_travail_rows(root: Path, commit: str) -> Iterator[dict[str, object]]:
    for params in sorted(root.glob("*/**/report/parameters.json")):
        yield from _report_rows(params.parent, root, commit)


def curated_rows(path: Path) -> Iterator[dict[str, object]]:
    """The hand-copied rows, checked for the table's columns and catalogued names."""
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if set(row) != set(FIELDS):
                raise SystemExit(f"{path}: columns {sorted(row)} are not {FIELDS}")
            catalog.gpu(row["gpu"])
            catalog.model(row["model"])
            yield dict(row)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in (*france_travail_rows(Path(argv[0]), argv[1]), *curated_rows(Path(argv[2]))):
        writer.writerow(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
