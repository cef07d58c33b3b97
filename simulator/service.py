"""How long one engine step takes: the service model a simulated replica runs on.

A vLLM step runs one forward pass over every token scheduled in it: one token for
each decoding sequence and a chunk of each prompt being prefilled, together within
the step's token budget. Its time is modelled here; which tokens a step holds is
the replica's business (`simulator.replica`).

`RooflineService` is the planner's roofline (`planner.timing`) applied to a mixed step:
the matrix arithmetic of all its tokens at the GPU's tensor throughput (at the prefill
and decode efficiencies that the planner fits per GPU) overlapped in part with the
weights streamed once, then the decoding sequences' KV cache read at the GPU's
bandwidth, plus the tensor-parallel all-reduces and the fixed per-step cost; a mixture
reads the experts its step's tokens reach, sliding-window layers their window. It agrees
with `planner.timing.decode_step_s` on a step without prefill and with
`planner.timing.prefill_s` on a step without decode (tested).

`decode_ends` times a run of pure-decode steps (`simulator.replica.DecodeRun`): the
end of each, added up in order. Any model does it through `step_s`; the roofline has its
own loop over the same arithmetic, float for float (tested), because building a
`StepLoad` and calling `step_s` cost 4.5 us a step, and an hour of traffic on four
instances is 1.4 million steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from planner import catalog, efficiency, engines
from planner.memory import (
    Precision,
    Settings,
    attended_tokens,
    kv_bytes_per_token,
    kv_replication,
)
from planner.timing import (
    Deployment,
    Efficiency,
    allreduce_s,
    matmul_parameters,
    overlapped,
    streamed_weight_bytes,
)


@dataclass(frozen=True, slots=True)
class StepLoad:
    """The tokens one step computes."""

    decode_seqs: int = 0  # sequences producing their next token
    decode_context: float = 0.0  # their mean context, tokens
    prefill_tokens: int = 0  # prompt tokens computed in this step, all sequences together
    prefill_context: float = 0.0  # mean position of those tokens in their prompts

    @property
    def tokens(self) -> int:
        return self.decode_seqs + self.prefill_tokens


class ServiceModel(Protocol):
    """A replica's engine: how many tokens of KV cache it holds and how long a step takes."""

    @property
    def kv_tokens(self) -> int: ...

    def step_s(self, load: StepLoad) -> float: ...


@dataclass(frozen=True)
class RooflineService:
    """The planner's roofline for one deployment (model, GPU, precision, tensor parallel)."""

    deployment: Deployment
    eff: Efficiency

    @classmethod
    def for_names(cls, model: str, gpu: str, precision: str = "bf16", tensor_parallel: int = 1,
                  settings: Settings | None = None) -> RooflineService:
        """Raises CatalogError for a model or GPU the planner does not know."""
        dep = Deployment(catalog.model(model), catalog.gpu(gpu), Precision(precision),
                         tensor_parallel, settings=settings or Settings(),
                         engine=engines.serving())
        return cls(dep, efficiency.for_gpu(dep.gpu.name))

    @property
    def kv_tokens(self) -> int:
        return self.deployment.memory().kv_tokens

    @cached_property
    def _constants(self) -> tuple[float, float, float, float, float, float]:
        """What every step uses: FLOPs per token and per token of prompt before it, the
        divisors of each phase's FLOPs, the seconds to read one token of KV cache (at the
        engine's attention's share of the bandwidth) and to stream the weights."""
        dep, eff = self.deployment, self.eff
        arch, t = dep.arch, dep.tensor_parallel
        attention = 4 * arch.num_layers * arch.num_attention_heads * arch.head_dim
        peak = dep.gpu.peak_flops(dep.precision) * t * dep.engine.compute
        bandwidth = dep.gpu.bandwidth_bytes_s * eff.bandwidth
        return (2 * matmul_parameters(arch), attention, peak * eff.decode_mfu,
                peak * eff.prefill_mfu,
                kv_bytes_per_token(arch, dep.kv_precision) * kv_replication(arch, t) / t
                / (bandwidth * dep.engine.attention),
                streamed_weight_bytes(dep) / bandwidth)

    def _weights_s(self, tokens: int) -> float:
        """Streaming the weights a step of `tokens` reads: all of a dense model's, the
        experts its tokens reach of a mixture's (`planner.timing.streamed_weight_bytes`)."""
        if not self.deployment.arch.num_experts:
            return self._constants[5]
        bandwidth = self.deployment.gpu.bandwidth_bytes_s * self.eff.bandwidth
        return streamed_weight_bytes(self.deployment, tokens) / bandwidth

    def _attended(self, context: float) -> float:
        """Tokens of KV cache a decode reads, sliding-window layers keeping their window."""
        arch = self.deployment.arch
        return attended_tokens(arch, context) if arch.sliding_window else context

    def step_s(self, load: StepLoad) -> float:
        dep, eff = self.deployment, self.eff
        per_token, attention, decode_rate, prefill_rate, kv_s, _ = self._constants
        compute = (load.decode_seqs * per_token / decode_rate
                   + load.prefill_tokens * (per_token + attention * load.prefill_context)
                   / prefill_rate)
        kv = load.decode_seqs * self._attended(load.decode_context) * kv_s
        return (overlapped(compute, self._weights_s(load.tokens)) + kv
                + allreduce_s(dep, eff, load.tokens)
                + (eff.step_overhead_s + dep.engine.step_s)
                + dep.engine.per_sequence_s * load.decode_seqs)

    def decode_ends(self, seqs: int, context: int, start_s: float, count: int,
                    horizon_s: float = math.inf) -> list[float]:
        """`decode_ends` for this model: `step_s`'s arithmetic for a step without prefill,
        in the same order (x + 0.0 is x: the prefill terms drop out exactly)."""
        dep, eff = self.deployment, self.eff
        per_token, _, decode_rate, _, kv_s, _ = self._constants
        fixed, overhead = allreduce_s(dep, eff, seqs), eff.step_overhead_s + dep.engine.step_s
        per_sequences = dep.engine.per_sequence_s * seqs
        gemm = math.hypot(seqs * per_token / decode_rate, self._weights_s(seqs))  # `overlapped`
        attended = self._attended
        ends: list[float] = []
        end = start_s
        for _ in range(count):
            end += gemm + seqs * attended(context / seqs) * kv_s + fixed + overhead + per_sequences
            ends.append(end)
            if end >= horizon_s:
                break
            context += seqs
        return ends


def decode_ends(service: ServiceModel, seqs: int, context: int, start_s: float, count: int,
                horizon_s: float = math.inf) -> list[float]:
    """When each of up to `count` pure-decode steps from `start_s` ends, stopping after the
    first that ends at or after `horizon_s`. Every step decodes `seqs` sequences, each a
    token further on than in the step before: `context` is their caches' total in the
    first, and each step's mean context is that total over `seqs`, as `simulator.replica`
    computes a step's, so that each end is the very float stepping one at a time reaches."""
    if isinstance(service, RooflineService):
        return service.decode_ends(seqs, context, start_s, count, horizon_s)
    ends: list[float] = []
    end = start_s
    for _ in range(count):
        end += service.step_s(StepLoad(decode_seqs=seqs, decode_context=context / seqs))
        ends.append(end)
        if end >= horizon_s:
            break
        context += seqs
    return ends
