"""Turn public serving measurements into the planner's validation table.

The measurements are NVIDIA's: NIM (TensorRT-LLM, in-flight batching) runs measured
with genai-perf at fixed concurrency, and TensorRT-LLM 0.9.0 static-batch runs, both
as published in the NVIDIA DLI course data that github.com/wbing520/ai-performance-
engineering keeps (pinned commits below). Fetch that repository, then:

    python -m benchmarks.planner_sources NIM_CSV TRT_CSV > planner/data/validation.csv

Rows on GPUs or models the planner does not catalogue (L40, GH200, H100 NVL, GPT-J,
Falcon, Mixtral) are left out; nothing else is filtered or edited. One column is
inferred rather than copied: `kv_precision`. The FP8 engines in both sources keep the
KV cache in FP8 too (TensorRT-LLM's FP8 recipe quantises it with the weights), so an
fp8 row has an fp8 KV cache and every other row a 16-bit one.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator

REPO = "github.com/wbing520/ai-performance-engineering"
NIM_SOURCE = (f"{REPO}@0e25b2e code/ch10_inference/inference_gpu_cluster_sizing/dataset/nim.csv"
              " (NVIDIA NIM for LLMs, TensorRT-LLM backend, genai-perf)")
TRT_SOURCE = (f"{REPO}@5a4d0c3 code/ch11_inference/inference_gpu_cluster_sizing/dataset/"
              "trt_llm_0_9_0_dli.csv (TensorRT-LLM 0.9.0 static batches)")

GPUS = {"A100-SXM4-80GB": "A100-80G", "H100_80GB_HBM3": "H100-80G", "H100 80GB HBM3": "H100-80G",
        "H200 141GB HBM3": "H200", "L40S": "L40S"}
MODELS = {"meta-llama3-8b-instruct": "Llama-3-8B", "meta-llama3-70b-instruct": "Llama-3-70B",
          "LLaMA v2 7B": "Llama-2-7B", "LLaMA v2 13B": "Llama-2-13B",
          "LLaMA v2 70B": "Llama-2-70B", "Mistral 7B": "Mistral-7B-v0.1"}
PRECISIONS = {"fp16": "fp16", "bf16": "bf16", "fp8": "fp8", "FP8": "fp8", "Mixed": "fp16"}
FIELDS = ["id", "engine", "mode", "gpu", "num_gpus", "model", "precision", "kv_precision",
          "input_len", "output_len", "concurrency", "ttft_ms", "tpot_ms", "e2e_ms",
          "output_tok_s", "source"]


def nim_rows(path: str) -> Iterator[dict[str, object]]:
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            gpu, model = GPUS.get(row["task_inputs-GPU"]), MODELS.get(row["task_inputs-model"])
            if gpu is None or model is None:
                continue
            yield {"id": f"nim-{line}", "engine": "trtllm-nim", "mode": "serving", "gpu": gpu,
                   "num_gpus": int(row["task_inputs-n_gpus"]), "model": model,
                   **_precisions(row["task_inputs-precision"]),
                   "input_len": int(row["input_config-synthetic_input_tokens_mean"]),
                   "output_len": int(row["input_config-output_tokens_mean"]),
                   "concurrency": int(row["input_config-concurrency"]),
                   "ttft_ms": round(float(row["time_to_first_token-avg"]) / 1e6, 3),
                   "tpot_ms": round(float(row["inter_token_latency-avg"]) / 1e6, 3),
                   "e2e_ms": round(float(row["request_latency-avg"]) / 1e6, 3),
                   "output_tok_s": round(float(row["output_token_throughput-avg"]), 2),
                   "source": f"{NIM_SOURCE} line {line}"}


def trt_rows(path: str) -> Iterator[dict[str, object]]:
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            gpu, model = GPUS.get(row["GPU"]), MODELS.get(row["Model"])
            if gpu is None or model is None or not row["Latency (ms)"].strip():
                continue
            tokens_in, tokens_out = (int(x) for x in row["Input/Output Lengths"].split(","))
            yield {"id": f"trt-{line}", "engine": "trtllm-0.9", "mode": "static", "gpu": gpu,
                   "num_gpus": int(row["Tensor Model Parallel Size"]), "model": model,
                   **_precisions(row["Precision"]), "input_len": tokens_in,
                   "output_len": tokens_out, "concurrency": int(row["Batch Size"]),
                   "ttft_ms": _number(row["1st Token Latency (ms)"]),
                   "tpot_ms": _number(row["Token-to-token Latency (ms)"]),
                   "e2e_ms": _number(row["Latency (ms)"]),
                   "output_tok_s": _number(row["Throughput (tokens / sec)"]),
                   "source": f"{TRT_SOURCE} line {line}"}


def _precisions(name: str) -> dict[str, str]:
    precision = PRECISIONS[name]
    return {"precision": precision, "kv_precision": "fp8" if precision == "fp8" else "fp16"}


def _number(text: str) -> float | str:
    return round(float(text), 3) if text.strip() else ""


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in (*nim_rows(argv[0]), *trt_rows(argv[1])):
        writer.writerow(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
