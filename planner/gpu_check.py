"""`make gpu-check`: what a lent GPU really does, against what the planner assumes of it.

    python -m planner.gpu_check [--model Llama-3.1-8B] [--out .run/gpu-check/gpu-check.json]

Made for the machines lent to some sessions (an H100 or H200 with PyTorch and nvidia-ml-py,
no vLLM, no network), in well under ten minutes:

1. The agent's NVML collector (`llmfleet.core.gpu`) for one round: every field it publishes,
   read twice a second apart, so the energy counter's difference shows too.
2. A Llama-shaped decoder at the catalogued model's full size, random bf16 weights, run by
   plain PyTorch: a prefill of `--prompt` tokens for each batch size, and a decode step
   at `--context` tokens, captured in a CUDA graph and replayed (vLLM replays graphs too,
   so Python's launch costs are not measured). RoPE and sampling are left out: elementwise
   work the roofline does not count either.

Each time is set beside the planner's prediction (its fitted factors for that GPU, the
per-step scheduling overhead left out, since a replayed graph has none) and beside the bare
roofline, and turned into the share of peak bandwidth (decode) and of peak tensor FLOP/s
(prefill) the GPU reached: the figures `planner/data/efficiency.csv` holds for it.
The same code runs on a CPU with a tiny model, which is how the tests check it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from llmfleet.core.gpu import GpuCollector
from planner import catalog, efficiency
from planner.catalog import Gpu, ModelArch
from planner.memory import Precision, Settings, kv_bytes_per_token
from planner.timing import Deployment, Efficiency, decode_step_s, prefill_s, streamed_weight_bytes

ROOFLINE = Efficiency(prefill_mfu=1.0, decode_mfu=1.0, bandwidth=1.0, step_overhead_s=0.0)
GPU_NAMES = (("H200", "H200"), ("H100", "H100-80G"), ("A100", "A100-80G"), ("L40S", "L40S"),
             ("A10G", "A10G"), ("L4", "L4"), ("T4", "T4"), ("A40", "A40"))


def catalog_gpu(device_name: str) -> str | None:
    """The catalogue's name for a GPU as the driver names it (`NVIDIA H100 80GB HBM3`)."""
    upper = device_name.upper()
    return next((ours for theirs, ours in GPU_NAMES if theirs in upper), None)


def nvml_round(pause_s: float = 1.0) -> dict[str, Any]:
    """The agent's collector, read twice `pause_s` apart (its energy counts from the first)."""
    collector = GpuCollector()
    collector.start()
    if not collector.available:
        return {"available": False}
    try:
        collector.read()
        time.sleep(pause_s)
        return {"available": True, "readings": [asdict(r) for r in collector.read()]}
    finally:
        collector.stop()


@dataclass(frozen=True)
class Timing:
    batch: int
    tokens: int  # prompt tokens per sequence (prefill) or context (decode)
    measured_ms: float
    predicted_ms: float  # the planner, fitted factors, no per-step overhead
    roofline_ms: float  # the planner at 100% of every peak
    reached: float  # share of peak bandwidth (decode) or tensor FLOP/s (prefill)
    fitted: float  # the factor the planner holds for it


class Decoder:
    """The weights and one forward pass of a Llama-shaped decoder (GQA, SwiGLU, RMSNorm)."""

    def __init__(self, arch: ModelArch, device: str, dtype: Any) -> None:
        import torch

        self.arch, self.torch = arch, torch
        h, q, kv = arch.hidden_size, arch.num_attention_heads * arch.head_dim, \
            arch.num_key_value_heads * arch.head_dim

        def weight(*shape: int) -> Any:
            return torch.randn(*shape, device=device, dtype=dtype) * 0.02

        self.layers = [(weight(h, q + 2 * kv), weight(q, h), weight(h, 2 * arch.intermediate_size),
                        weight(arch.intermediate_size, h)) for _ in range(arch.num_layers)]
        self.head = weight(h, arch.vocab_size)
        self.device, self.dtype = device, dtype

    def _norm(self, x: Any) -> Any:
        return x * self.torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5).to(x.dtype)

    def forward(self, x: Any, caches: list[tuple[Any, Any]] | None = None) -> Any:
        """`x` [batch, tokens, hidden]: causal self-attention over the tokens (prefill), or,
        with `caches` (per layer K and V [batch, kv heads, context, head dim]), one new token
        attending to the whole cache (decode, its K and V written at the cache's last slot)."""
        a, torch = self.arch, self.torch
        b, t, _ = x.shape
        q_width, kv_width = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
        for i, (wqkv, wo, wgu, wdown) in enumerate(self.layers):
            qkv = self._norm(x) @ wqkv
            q, k, v = qkv.split([q_width, kv_width, kv_width], dim=-1)
            q = q.view(b, t, a.num_attention_heads, a.head_dim).transpose(1, 2)
            k = k.view(b, t, a.num_key_value_heads, a.head_dim).transpose(1, 2)
            v = v.view(b, t, a.num_key_value_heads, a.head_dim).transpose(1, 2)
            if caches is not None:
                keys, values = caches[i]
                keys[:, :, -1:].copy_(k)
                values[:, :, -1:].copy_(v)
                k, v = keys, values
            out = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=caches is None, enable_gqa=True)
            x = x + out.transpose(1, 2).reshape(b, t, q_width) @ wo
            gate, up = (self._norm(x) @ wgu).chunk(2, dim=-1)
            x = x + (torch.nn.functional.silu(gate) * up) @ wdown
        return self._norm(x[:, -1:]) @ self.head

    def caches(self, batch: int, context: int) -> list[tuple[Any, Any]]:
        a = self.arch
        shape = (batch, a.num_key_value_heads, context, a.head_dim)
        return [(self.torch.randn(shape, device=self.device, dtype=self.dtype),
                 self.torch.randn(shape, device=self.device, dtype=self.dtype))
                for _ in range(a.num_layers)]

    def hidden(self, batch: int, tokens: int) -> Any:
        return self.torch.randn(batch, tokens, self.arch.hidden_size, device=self.device,
                                dtype=self.dtype)


def _time_ms(decoder: Decoder, run: Any, repeats: int) -> float:
    """Median of `repeats` runs after a warm-up; a CUDA graph replayed where there is a GPU."""
    torch = decoder.torch
    run()
    if decoder.device.startswith("cuda"):
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run()
        samples = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            samples.append(float(start.elapsed_time(end)))
        return statistics.median(samples)
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def decode(decoder: Decoder, dep: Deployment, eff: Efficiency, batch: int, context: int,
           repeats: int) -> Timing:
    caches, x = decoder.caches(batch, context), decoder.hidden(batch, 1)
    with decoder.torch.inference_mode():
        ms = _time_ms(decoder, lambda: decoder.forward(x, caches), repeats)
    no_overhead = replace(eff, step_overhead_s=0.0)
    moved = streamed_weight_bytes(dep) + batch * context * kv_bytes_per_token(dep.arch)
    return Timing(batch, context, ms, decode_step_s(dep, no_overhead, batch, context)[0] * 1000,
                  decode_step_s(dep, ROOFLINE, batch, context)[0] * 1000,
                  moved / (ms / 1000) / dep.gpu.bandwidth_bytes_s, eff.bandwidth)


def prefill(decoder: Decoder, dep: Deployment, eff: Efficiency, batch: int, prompt: int,
            repeats: int) -> Timing:
    x = decoder.hidden(batch, prompt)
    with decoder.torch.inference_mode():
        ms = _time_ms(decoder, lambda: decoder.forward(x), repeats)
    no_overhead = replace(eff, step_overhead_s=0.0)
    roofline_s = prefill_s(dep, ROOFLINE, prompt, batch)
    compute_s = prefill_s(dep, replace(ROOFLINE, bandwidth=math.inf), prompt, batch)
    return Timing(batch, prompt, ms, prefill_s(dep, no_overhead, prompt, batch) * 1000,
                  roofline_s * 1000, compute_s / (ms / 1000), eff.prefill_mfu)


def fits(decoder: Decoder, batch: int, context: int, prompt: int) -> bool:
    """Whether a decode cache and a prefill's activations fit beside the weights."""
    if not decoder.device.startswith("cuda"):
        return True
    free, _ = decoder.torch.cuda.mem_get_info()
    a = decoder.arch
    cache = batch * context * kv_bytes_per_token(a, Precision.BF16)
    activations = batch * prompt * (2 * a.intermediate_size + 6 * a.hidden_size) * 2
    return bool(cache + activations < 0.8 * free)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    arch = catalog.model(args.model)
    if arch.num_experts or arch.family not in ("llama", "qwen2"):
        raise SystemExit(f"gpu-check: {arch.name} is not a dense Llama-shaped decoder, the "
                         "only one it builds; name one (Llama-3.1-8B by default)")
    if args.layers:
        arch = replace(arch, num_layers=args.layers)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    gpu_name = args.gpu or catalog_gpu(device_name)
    if gpu_name is None:
        raise SystemExit(f"gpu-check: {device_name!r} is not a catalogued GPU; name one (--gpu)")
    gpu: Gpu = catalog.gpu(gpu_name)
    # PyTorch runs each prefill as one pass: so does the prediction (one chunk).
    dep = Deployment(arch, gpu, Precision.BF16,
                     settings=Settings(max_num_batched_tokens=args.max_prefill_tokens))
    eff = efficiency.for_gpu(gpu.name)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    result: dict[str, Any] = {"device": device_name, "gpu": gpu.name, "model": arch.name,
                              "layers": arch.num_layers, "nvml": nvml_round(),
                              "torch": torch.__version__, "decode": [], "prefill": []}
    began = time.perf_counter()
    decoder = Decoder(arch, args.device, dtype)
    for batch in args.batches:
        if not fits(decoder, batch, args.context, args.prompt):
            print(f"batch {batch}: does not fit beside the weights, skipped", file=sys.stderr)
            continue
        _record(result, "decode", decode(decoder, dep, eff, batch, args.context, args.repeats))
        if batch * args.prompt <= args.max_prefill_tokens:
            _record(result, "prefill", prefill(decoder, dep, eff, batch, args.prompt,
                                               max(3, args.repeats // 4)))
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    result["elapsed_s"] = time.perf_counter() - began
    return result


def _record(result: dict[str, Any], kind: str, timing: Timing) -> None:
    result[kind].append(asdict(timing))
    print(f"{kind:<8} batch {timing.batch:>4}: {timing.measured_ms:9.2f} ms measured, "
          f"{timing.predicted_ms:9.2f} predicted, {timing.roofline_ms:9.2f} roofline; "
          f"reached {timing.reached:.0%} of peak (planner holds {timing.fitted:.0%})",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Llama-3.1-8B",
                        help="a catalogued model's shape, or a config.json's")
    parser.add_argument("--layers", type=int, help="fewer layers than the model has")
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")],
                        default=[1, 8, 32, 64, 128, 256])
    parser.add_argument("--context", type=int, default=1024, help="decode: tokens in the cache")
    parser.add_argument("--prompt", type=int, default=512, help="prefill: tokens per sequence")
    parser.add_argument("--max-prefill-tokens", type=int, default=16384,
                        help="prefill only batches of at most this many tokens in all")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--gpu", help="the catalogue's GPU to compare with (default: detected)")
    parser.add_argument("--out", type=Path, default=Path(".run/gpu-check/gpu-check.json"))
    args = parser.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"gpu-check: {args.out} ({result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
