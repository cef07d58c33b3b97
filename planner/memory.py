"""GPU memory: weights, KV cache, activations and overhead, and what fits.

The budget follows how vLLM spends a GPU: of each GPU's memory it takes a fraction
(`gpu_memory_utilization`, 0.9 by default), loads the weights (split across
tensor-parallel GPUs), reserves what a profiling forward pass of
`max_num_batched_tokens` needed (activations) plus the runtime's own overhead
(CUDA context, cuBLAS workspaces, CUDA graphs), and gives the rest to the KV cache.
A safety factor may hold back part of that rest for what the estimate misses; by default
none, as vLLM holds none back: with it at 1.1 the planner gave the KV cache 9% less than
vLLM does, and under-predicted the throughput of workloads whose KV cache fills memory.

Quantised checkpoints (int8, fp8, int4) quantise the linear layers only; the
embeddings, the LM head and the norms stay at 16 bits, and int4 carries one
16-bit scale and zero point per group of 128 weights, as AWQ and GPTQ do.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from planner.catalog import Gpu, ModelArch

GIB = 1024**3
INT4_GROUP = 128


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"

    @property
    def bytes(self) -> float:
        """Bytes per weight, including int4's per-group scale and zero point."""
        return {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0,
                "int4": 0.5 + 2 * 2 / INT4_GROUP}[self.value]


def unquantised_parameters(arch: ModelArch) -> int:
    """Parameters kept at 16 bits in quantised checkpoints: embeddings, LM head, norms."""
    h = arch.hidden_size
    head = 0 if arch.tie_word_embeddings else arch.vocab_size * h
    return arch.vocab_size * h + head + (2 * arch.num_layers + 1) * h


def weight_bytes(arch: ModelArch, precision: Precision) -> float:
    if precision in (Precision.FP32, Precision.FP16, Precision.BF16):
        return arch.parameters * precision.bytes
    kept = unquantised_parameters(arch)
    return (arch.parameters - kept) * precision.bytes + kept * 2.0


def kv_bytes_per_token(arch: ModelArch, kv_precision: Precision = Precision.FP16) -> float:
    """K and V for every layer; grouped-query attention stores only the KV heads."""
    return 2 * arch.num_layers * arch.num_key_value_heads * arch.head_dim * kv_precision.bytes


def kv_replication(arch: ModelArch, tensor_parallel: int) -> float:
    """How many GPUs of a tensor-parallel group hold each KV head: with more GPUs than KV
    heads (Qwen3-235B's 4 on 8 GPUs) each head is copied, and the group holds fewer tokens."""
    return tensor_parallel / min(tensor_parallel, arch.num_key_value_heads)


def window_share(arch: ModelArch) -> float:
    """The share of layers that attend to, and keep, only the last `sliding_window` tokens."""
    return arch.sliding_layers / arch.num_layers if arch.sliding_window else 0.0


def attended_tokens(arch: ModelArch, context: float) -> float:
    """Tokens a new token attends to (and the KV cache keeps for a sequence of `context`),
    averaged over the layers: all of them in full-attention layers, at most the window in
    sliding-window ones (vLLM's hybrid KV cache frees blocks that fall out of the window)."""
    share = window_share(arch)
    return context * (1 - share) + min(context, arch.sliding_window) * share


def attention_pairs(arch: ModelArch, prompt: int) -> float:
    """(query, key) pairs a causal prefill of `prompt` tokens scores, per layer on average."""
    full = prompt * prompt / 2
    w = arch.sliding_window
    windowed = full if prompt <= w else w * w / 2 + (prompt - w) * w
    share = window_share(arch)
    return full * (1 - share) + windowed * share


def activation_bytes(arch: ModelArch, batched_tokens: int, max_num_seqs: int,
                     tensor_parallel: int = 1) -> float:
    """Peak activations of one forward pass over `batched_tokens`, per GPU.

    The widest live tensors: the MLP's gate and up projections, the residual stream
    with the attention input and output, at 16 bits; plus the sampler's fp32 logits
    for every running sequence.
    """
    per_token = (2 * arch.mlp_width / tensor_parallel + 4 * arch.hidden_size) * 2
    logits = max_num_seqs * arch.vocab_size * 4
    return batched_tokens * per_token + logits


@dataclass(frozen=True)
class Settings:
    """The engine settings the budget and the schedule depend on. The batch limits left
    None are vLLM's defaults for the GPU (`limits`)."""

    gpu_memory_utilization: float = 0.9
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    runtime_overhead_bytes: float = 1.5 * GIB  # per GPU: CUDA context, workspaces, graphs
    safety_factor: float = 1.0  # the KV cache may use 1/F of what is left
    offline: bool = False  # vLLM's LLM class (offline batches), not its OpenAI server
    chunked_prefill: bool = True  # prompts computed in decode steps' spare budget (vLLM V1)

    def limits(self, gpu: Gpu) -> tuple[int, int]:
        """(max_num_seqs, max_num_batched_tokens): as set, else what vLLM (V1) picks for the
        GPU. It gives GPUs of 70 GiB or more, A100s excepted, 1,024 sequences and 8,192
        batched tokens (16,384 offline); the others 256 and 2,048 (8,192 offline).
        A planner that assumed 256 everywhere under-predicted an H100's maximum throughput."""
        large = gpu.memory_bytes >= 70 * GIB and "A100" not in gpu.name.upper()
        seqs = self.max_num_seqs or (1024 if large else 256)
        tokens = (16384 if large else 8192) if self.offline else (8192 if large else 2048)
        # vLLM refuses a step budget below the sequences it may run: raise it as one must.
        return seqs, max(self.max_num_batched_tokens or tokens, seqs)


@dataclass(frozen=True)
class Budget:
    """Bytes per GPU, and the KV cache all the GPUs hold together."""

    usable: float
    weights: float
    activations: float
    overhead: float
    kv_cache_total: float
    kv_per_token: float  # every layer's K and V for one token
    arch: ModelArch | None = None  # for its sliding-window layers, which keep fewer tokens

    @property
    def fits(self) -> bool:
        return self.kv_cache_total > 0

    @property
    def kv_tokens(self) -> int:
        """KV-cache slots, in tokens kept by every layer, across the tensor-parallel group."""
        return int(self.kv_cache_total // self.kv_per_token) if self.fits else 0

    def sequence_bytes(self, tokens: float) -> float:
        """KV cache one sequence of `tokens` holds (sliding-window layers keep the window)."""
        kept = attended_tokens(self.arch, tokens) if self.arch else tokens
        return kept * self.kv_per_token

    def max_sequences(self, tokens_per_sequence: int) -> int:
        """Sequences of this length that fit at once."""
        if not self.fits:
            return 0
        return int(self.kv_cache_total // self.sequence_bytes(max(tokens_per_sequence, 1)))

    def offload_fraction(self, sequences: int, tokens_per_sequence: int) -> float:
        """Share of the KV cache that must live in host memory to hold `sequences` at once."""
        needed = sequences * self.sequence_bytes(tokens_per_sequence)
        if needed <= 0:
            return 0.0
        return max(0.0, 1.0 - self.kv_cache_total / needed)

    def why_not(self) -> str:
        """Why nothing fits, for a person; empty when it does."""
        if self.fits:
            return ""
        return (f"weights {self.weights / GIB:.1f} GiB + activations "
                f"{self.activations / GIB:.1f} GiB + overhead {self.overhead / GIB:.1f} GiB "
                f"per GPU exceed the {self.usable / GIB:.1f} GiB usable")


def budget(arch: ModelArch, gpu: Gpu, precision: Precision, tensor_parallel: int = 1,
           kv_precision: Precision = Precision.FP16, settings: Settings | None = None) -> Budget:
    settings = settings or Settings()
    usable = gpu.memory_bytes * settings.gpu_memory_utilization
    weights = weight_bytes(arch, precision) / tensor_parallel
    seqs, batched = settings.limits(gpu)
    activations = activation_bytes(arch, batched, seqs, tensor_parallel)
    free = usable - weights - activations - settings.runtime_overhead_bytes
    kv_total = max(free, 0.0) / settings.safety_factor * tensor_parallel if free > 0 else -1.0
    return Budget(usable=usable, weights=weights, activations=activations,
                  overhead=settings.runtime_overhead_bytes, kv_cache_total=kv_total,
                  kv_per_token=kv_bytes_per_token(arch, kv_precision)
                  * kv_replication(arch, tensor_parallel), arch=arch)

