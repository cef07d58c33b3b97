"""Time: prefill and decode steps on a GPU's roofline, and what they add up to when serving.

A step's weight multiplies take their matrix arithmetic at the GPU's tensor throughput
against the weights streamed at the GPU's bandwidth, which overlap in part (`overlapped`),
each scaled by what real kernels reach (the `Efficiency` factors, per GPU and phase); a
decode step's attention then reads the KV cache at the bandwidth; on top come the
tensor-parallel all-reduces, the offloaded KV cache crossing PCIe, and a fixed per-step
cost for scheduling, launches and sampling. Decode streams every weight once per step
however many sequences share it, which is why batching pays; prefill is bound by
arithmetic. A mixture of experts computes only the experts each token is routed to, and a
step reads only the experts its tokens reach (few at batch 1, all of them in a large
batch); sliding-window layers attend to, and keep, only their window.

Serving is continuous batching as vLLM does it, in a closed loop of `concurrency`
clients: up to what memory holds run at once, the rest wait. In steady state the running
sequences each prefill once and decode `output_len` steps per life, so their lives take
`cycle = running * prefill + output_len * decode_step`; latencies follow from Little's
law. With chunked prefill a started sequence decodes a token on every step,
so TPOT is the mean step while it decodes and the rest of its time is TTFT. Benchmark
clients that start together stay in step and run in waves, each prompt waiting for those
ahead of it. Memory holds sequences at their mean length while serving, not their final one:
vLLM allocates KV blocks as tokens arrive, and with lives staggered the running
sequences are on average half-way through their output. A static batch (all start
together, as offline benchmarks run) must hold every sequence at its final length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from planner.catalog import Gpu, ModelArch
from planner.memory import (
    GIB,
    Budget,
    Precision,
    Settings,
    attended_tokens,
    attention_pairs,
    budget,
    kv_bytes_per_token,
    kv_replication,
    weight_bytes,
)

ACTIVATION_BYTES = 2  # the residual stream all-reduced across tensor-parallel GPUs is 16-bit


@dataclass(frozen=True)
class Efficiency:
    """What real kernels reach of a GPU's peaks; fitted per GPU from measurements."""

    prefill_mfu: float = 0.4  # share of peak tensor FLOP/s in prefill
    decode_mfu: float = 0.4  # the same for decode's skinny GEMMs
    bandwidth: float = 0.65  # share of peak memory bandwidth decode streams at
    step_overhead_s: float = 0.002  # per engine step: scheduling, launches, sampling
    link: float = 0.7  # share of the peer link's bandwidth an all-reduce reaches
    allreduce_latency_s: float = 20e-6  # one all-reduce's fixed cost (NCCL, one node)


@dataclass(frozen=True)
class EngineCosts:
    """What a serving engine adds to the GPU's own work, per engine generation
    (`planner/data/engines.csv`, fitted by `llmfleet plan validate --fit`). The GPU factors
    are fitted on TensorRT-LLM, whose costs are the zero point. vLLM's V0 attention kernels
    read the KV cache at 57-78% of the bandwidth TensorRT-LLM's reach (a cost per sequence
    in its place over-predicted short prompts' TPOT by 11-20% to fit long ones'), and a
    server streaming from the engine's loop (happy_vllm) costs a little per running
    sequence a step."""

    compute: float = 1.0  # share of the GPU's fitted tensor throughput its kernels reach
    step_s: float = 0.0  # per step beyond TensorRT-LLM's: scheduling, launches
    per_sequence_s: float = 0.0  # per decoding sequence a step, for a server in the loop
    attention: float = 1.0  # share of the GPU's fitted bandwidth its attention reads KV at


@dataclass(frozen=True)
class Deployment:
    """A model at a precision on `tensor_parallel` GPUs of one kind."""

    arch: ModelArch
    gpu: Gpu
    precision: Precision
    tensor_parallel: int = 1
    kv_precision: Precision = Precision.FP16
    settings: Settings = field(default_factory=Settings)
    engine: EngineCosts = field(default_factory=EngineCosts)

    def memory(self) -> Budget:
        return budget(self.arch, self.gpu, self.precision, self.tensor_parallel,
                      self.kv_precision, self.settings)

    @property
    def max_num_seqs(self) -> int:
        return self.settings.limits(self.gpu)[0]

    @property
    def max_num_batched_tokens(self) -> int:
        return self.settings.limits(self.gpu)[1]


@dataclass(frozen=True)
class Workload:
    input_len: int
    output_len: int
    concurrency: int
    # Clients that start together with fixed lengths (benchmarks) stay in step: their
    # requests arrive, prefill and finish as a wave. Real traffic arrives staggered.
    waves: bool = False


@dataclass(frozen=True)
class Prediction:
    """Seconds and tokens per second; `why_not` says what makes it infeasible."""

    feasible: bool
    why_not: str = ""
    ttft_s: float = math.inf
    tpot_s: float = math.inf
    e2e_s: float = math.inf
    output_tok_s: float = 0.0
    total_tok_s: float = 0.0
    requests_s: float = 0.0
    max_concurrency_fits: int = 0
    running: int = 0  # sequences that run at once; the rest of the concurrency waits
    kv_offload_fraction: float = 0.0  # of the running sequences' KV cache, in host memory
    decode_step_s: float = math.inf
    prefill_s: float = math.inf  # one request's prompt
    decode_bound: str = ""  # "memory" or "compute"


def matmul_parameters(arch: ModelArch) -> int:
    """Weights each token multiplies: all but the embedding table, which is only indexed, and,
    in a mixture of experts, only the experts the router chose for it."""
    embeddings = 0 if arch.tie_word_embeddings else arch.vocab_size * arch.hidden_size
    return arch.active_parameters - embeddings


def experts_touched(arch: ModelArch, tokens: float) -> float:
    """The share of a layer's experts that `tokens` tokens route to, if each picks
    `experts_per_token` of them uniformly: 1 - (1 - k/E)^tokens (1 for a dense model)."""
    if not arch.num_experts:
        return 1.0
    return 1.0 - float((1.0 - arch.experts_per_token / arch.num_experts) ** tokens)


def streamed_weight_bytes(dep: Deployment, tokens: float | None = None) -> float:
    """Weight bytes one GPU reads in a forward pass over `tokens` tokens (the embedding rows
    read are negligible); a mixture of experts reads only the experts they route to
    (`tokens` None: every weight)."""
    arch = dep.arch
    total = weight_bytes(arch, dep.precision)
    if not arch.tie_word_embeddings:
        kept = 2.0 if dep.precision.bytes < 2 else dep.precision.bytes
        total -= arch.vocab_size * arch.hidden_size * kept
    if tokens is not None and arch.num_experts:
        experts = arch.num_experts * arch.expert_parameters * dep.precision.bytes
        total -= experts * (1.0 - experts_touched(arch, tokens))
    return total / dep.tensor_parallel


def _attention_width(arch: ModelArch) -> int:
    return arch.num_attention_heads * arch.head_dim


def allreduce_s(dep: Deployment, eff: Efficiency, tokens: int) -> float:
    """Two ring all-reduces of the residual stream per layer (after attention and the MLP)."""
    t = dep.tensor_parallel
    if t == 1:
        return 0.0
    payload = tokens * dep.arch.hidden_size * ACTIVATION_BYTES
    one = 2 * (t - 1) / t * payload / (dep.gpu.peer_bytes_s * eff.link) + eff.allreduce_latency_s
    return 2 * dep.arch.num_layers * one


def _per_sequence_s(dep: Deployment) -> float:
    """Streaming each new token to its client from the engine's own loop (happy_vllm's
    server) costs a little per sequence and step; offline it costs none."""
    return 0.0 if dep.settings.offline else dep.engine.per_sequence_s


def overlapped(compute_s: float, memory_s: float) -> float:
    """A matrix multiply's arithmetic and its weight streaming, which overlap only in part:
    their root sum of squares, which is the larger alone far from the ridge point and up to
    1.41x it at the ridge. The bare maximum fitted worse, under-predicting large batches
    by 14% at the median (`llmfleet plan validate`)."""
    return math.hypot(compute_s, memory_s)


def decode_step_s(dep: Deployment, eff: Efficiency, batch: int, context: float,
                  offload_fraction: float = 0.0, prompt_tokens: float = 0.0,
                  prompt: int = 0) -> tuple[float, str]:
    """One decode step for `batch` sequences at mean `context` tokens, and what bounds it;
    with `prompt_tokens` of prompts `prompt` tokens long computed in the same step (chunked
    prefill), which read the weights with the decodes.

    The weight multiplies (arithmetic against weights streamed, `overlapped`), then
    attention, which reads each sequence's KV cache and does too little arithmetic per byte
    to be anything but bound by bandwidth (4 FLOPs a byte with 4:1 grouped-query heads), in
    kernels of its own, so its time adds rather than hides under the multiplies'.
    """
    arch, t, engine = dep.arch, dep.tensor_parallel, dep.engine
    peak = dep.gpu.peak_flops(dep.precision) * engine.compute
    compute = batch * 2 * matmul_parameters(arch) / t / (peak * eff.decode_mfu)
    if prompt_tokens:
        per_token = 2 * matmul_parameters(arch) + 4 * arch.num_layers * _attention_width(
            arch) * attention_pairs(arch, prompt) / max(prompt, 1)
        compute += prompt_tokens * per_token / t / (peak * eff.prefill_mfu)
    bandwidth = dep.gpu.bandwidth_bytes_s * eff.bandwidth
    weights = streamed_weight_bytes(dep, batch + prompt_tokens) / bandwidth
    kv = (batch * attended_tokens(arch, context) * kv_bytes_per_token(arch, dep.kv_precision)
          * kv_replication(arch, t) / t)
    attention = kv * (1 - offload_fraction) / (bandwidth * engine.attention)
    offload = kv * offload_fraction / dep.gpu.pcie_bytes_s
    step = (overlapped(compute, weights) + attention
            + allreduce_s(dep, eff, math.ceil(batch + prompt_tokens)) + offload
            + eff.step_overhead_s + engine.step_s + _per_sequence_s(dep) * batch)
    return step, "compute" if compute > weights + attention else "memory"


def prefill_s(dep: Deployment, eff: Efficiency, prompt: int, sequences: int = 1) -> float:
    """Prefill `sequences` prompts of `prompt` tokens, in chunks of `max_num_batched_tokens`."""
    arch, t = dep.arch, dep.tensor_parallel
    tokens = prompt * sequences
    flops = (2 * matmul_parameters(arch) * tokens
             + 4 * arch.num_layers * _attention_width(arch) * attention_pairs(arch, prompt)
             * sequences) / t
    chunks = math.ceil(tokens / dep.max_num_batched_tokens)
    compute = flops / (dep.gpu.peak_flops(dep.precision) * eff.prefill_mfu * dep.engine.compute)
    per_chunk = streamed_weight_bytes(dep, min(tokens, dep.max_num_batched_tokens))
    memory = chunks * per_chunk / (dep.gpu.bandwidth_bytes_s * eff.bandwidth)
    return (overlapped(compute, memory) + allreduce_s(dep, eff, tokens)
            + chunks * (eff.step_overhead_s + dep.engine.step_s))


def _infeasible(dep: Deployment, work: Workload, mem: Budget) -> str:
    if not mem.fits:
        return mem.why_not()
    limit = dep.arch.max_position_embeddings
    if limit and work.input_len + work.output_len > limit:
        return (f"{work.input_len + work.output_len} tokens per sequence exceed the model's "
                f"context of {limit}")
    return ""


def predict(dep: Deployment, work: Workload, eff: Efficiency, *,
            offload: bool = False) -> Prediction:
    """Steady-state serving of `work` in a closed loop, continuously batched.

    Without `offload`, sequences beyond what the KV cache holds wait, as in vLLM; with
    it, up to `max_num_seqs` run at once and the KV cache that does not fit lives in host
    memory, read across PCIe every step.
    """
    mem = dep.memory()
    reason = _infeasible(dep, work, mem)
    seq = work.input_len + work.output_len
    mean = math.ceil(work.input_len + work.output_len / 2)
    fits = min(mem.max_sequences(mean), dep.max_num_seqs)
    wanted = min(work.concurrency, dep.max_num_seqs)
    if not reason and mem.max_sequences(seq) == 0 and not offload:
        reason = (f"one sequence of {seq} tokens needs {mem.sequence_bytes(seq) / GIB:.2f} GiB of "
                  f"KV cache; {mem.kv_cache_total / GIB:.2f} GiB is left for it")
    if reason:
        return Prediction(feasible=False, why_not=reason, max_concurrency_fits=max(fits, 0))
    running = wanted if offload else min(wanted, fits)
    needed = mem.offload_fraction(wanted, mean)
    fraction = mem.offload_fraction(running, mean) if offload else 0.0
    if dep.settings.chunked_prefill:
        chunked = _chunked(dep, eff, work, running, mean, fraction)
        step, bound, cycle = chunked.pure, chunked.bound, chunked.cycle
        prefill, tpot = chunked.own, chunked.tpot
        # a wave's prompts take the step budget one after another: the median one waits
        # for half of them
        wave_first = (running + 1) / 2 * chunked.share
    else:
        step, bound = decode_step_s(dep, eff, running, mean, fraction)
        sharing = max(1, min(running, dep.max_num_batched_tokens // max(work.input_len, 1)))
        prefill = prefill_s(dep, eff, work.input_len, sharing) / sharing
        cycle = running * prefill + work.output_len * step
        tpot = step + (running - 1) * prefill / max(work.output_len, 1)
        # a wave's prompts prefill `sharing` to a step, and all of a step's prompts have
        # their first token when it ends: the median one's step and those before it
        wave_first = math.ceil((running + 1) / (2 * sharing)) * sharing * prefill
    first = max(wave_first, prefill) if work.waves else prefill
    if work.waves and not dep.settings.chunked_prefill:
        e2e = work.concurrency * cycle / running  # Little's law: the waiting clients included
        ttft = e2e - cycle + first
        tpot = (cycle - first) / max(work.output_len - 1, 1)
    else:
        e2e, ttft, tpot = _latencies(work, running, cycle, tpot, first, step)
    requests_s = work.concurrency / e2e
    return Prediction(
        feasible=True, ttft_s=ttft, tpot_s=tpot, e2e_s=e2e,
        output_tok_s=requests_s * work.output_len, total_tok_s=requests_s * seq,
        requests_s=requests_s, max_concurrency_fits=fits, running=running,
        kv_offload_fraction=fraction if offload else needed, decode_step_s=step,
        prefill_s=prefill, decode_bound=bound)


def _latencies(work: Workload, running: int, cycle: float, tpot: float, first: float,
               step: float) -> tuple[float, float, float]:
    """End-to-end time, TTFT and TPOT of continuous batching: Little's law gives the
    end-to-end time (the waiting clients included), and what its tokens after the first do
    not take is TTFT, at least `first`. Where the prompts ahead of it in its wave hold the
    first token back, the tokens after it come faster, but never faster than a decode-only
    `step`: the life then runs longer than the cycle, and the loop slower."""
    after = work.output_len - 1
    e2e = work.concurrency * cycle / running
    ttft = e2e - after * tpot
    if ttft < first:
        ttft = first
        if after > 0:
            e2e = max(e2e, first + after * step)
            tpot = (e2e - first) / after
    return e2e, ttft, tpot


@dataclass(frozen=True)
class _Chunked:
    pure: float  # a decode-only step
    bound: str  # what bounds it
    cycle: float  # every running sequence's life
    own: float  # one prompt's own steps, to its first token
    share: float  # a prompt's share of a step's budget, in seconds
    tpot: float  # the mean step while a sequence decodes


def _chunked(dep: Deployment, eff: Efficiency, work: Workload, running: int, mean: float,
             fraction: float) -> _Chunked:
    """Chunked prefill (vLLM's V1 engine): a step computes prompt chunks in the token budget
    its decodes leave, so the other sequences' decodes ride on prompt steps instead of
    reading the weights in steps of their own. A cycle (each running sequence's life) takes
    its prompts' steps, each with the decodes, and as many decode-only steps as a life needs
    beyond them. Prefill as steps apart from the decodes under-predicted prompt-heavy vLLM
    V1 runs.

    A started sequence decodes a token on every step, so its time per token is the mean
    step while it decodes: mixed steps while the others' prompts are being computed, decode
    steps after (one output token has no next: its TPOT is what the next would take). When
    the prompts need more steps than a life's tokens, the prompts wait (their TTFT) and
    every step a sequence decodes on is mixed; spreading the queue's prompt steps over each
    sequence's tokens predicted 3x the TPOT vLLM 0.6.3 measured."""
    room = max(dep.max_num_batched_tokens - running, 1)
    prompts = running * work.input_len
    carrying = math.ceil(prompts / room)
    own = math.ceil(work.input_len / room)
    steps = max(work.output_len + own - 1, carrying)
    mixed, _ = decode_step_s(dep, eff, running, mean, fraction, prompts / carrying,
                             work.input_len)
    pure, bound = decode_step_s(dep, eff, running, mean, fraction)
    mixed_share = min(1.0, max(carrying - own, 0) / max(work.output_len - 1, 1))
    return _Chunked(pure=pure, bound=bound,
                    cycle=carrying * mixed + (steps - carrying) * pure,
                    own=own * mixed, share=work.input_len / room * mixed,
                    tpot=mixed_share * mixed + (1 - mixed_share) * pure)


def predict_static(dep: Deployment, work: Workload, eff: Efficiency) -> Prediction:
    """A batch of `concurrency` requests that start together and decode in lockstep."""
    mem = dep.memory()
    reason = _infeasible(dep, work, mem)
    seq = work.input_len + work.output_len
    if not reason and mem.max_sequences(seq) < work.concurrency:
        reason = (f"a batch of {work.concurrency} sequences of {seq} tokens does not fit: "
                  f"{mem.max_sequences(seq)} do")
    if reason:
        return Prediction(feasible=False, why_not=reason,
                          max_concurrency_fits=max(mem.max_sequences(seq), 0))
    ttft = prefill_s(dep, eff, work.input_len, work.concurrency)
    step, bound = decode_step_s(dep, eff, work.concurrency,
                                work.input_len + work.output_len / 2)
    e2e = ttft + (work.output_len - 1) * step
    out = work.concurrency * work.output_len / e2e
    return Prediction(
        feasible=True, ttft_s=ttft, tpot_s=step, e2e_s=e2e, output_tok_s=out,
        total_tok_s=out * seq / work.output_len, requests_s=work.concurrency / e2e,
        max_concurrency_fits=mem.max_sequences(seq), running=work.concurrency,
        decode_step_s=step, prefill_s=ttft, decode_bound=bound)
