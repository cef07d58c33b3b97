"""A measured engine profile: what `llmfleet profile` writes and `llmfleet simulate
--profile` reads.

The load tests measure an endpoint (`loadtest.probe`): each measurement is read as the
duration of engine steps of a known make-up (`StepSample`). The simulator fits a step
time model to them (`simulator.profile`) and runs its replicas on it. The file keeps the
samples beside the fit, so a fit can be redone, or checked, without the engine.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepSample(_Wire):
    """Seconds one engine step of this make-up took, as measured from the client. A
    sample that only prefills is a lone request's whole time: the step, and the request's
    way into the engine and its answer's way out (`StepFit.request_s`)."""

    decode_seqs: int = Field(ge=0)  # sequences producing their next token
    decode_context: float = Field(ge=0)  # their mean context, tokens
    prefill_tokens: int = Field(ge=0)  # prompt tokens computed in the step
    prefill_context: float = Field(ge=0)  # mean position of those tokens in their prompts
    seconds: float = Field(gt=0)
    source: str  # which probe measured it, e.g. "prefill 512" or "decode 16x32"


class EngineLimits(_Wire):
    """The engine's scheduler settings, as it was started (the client cannot see them)."""

    max_num_seqs: int = Field(ge=1)
    max_num_batched_tokens: int = Field(ge=1)
    kv_tokens: int = Field(ge=1)  # vLLM logs it at start: "KV cache size: N tokens"
    max_model_len: int | None = Field(default=None, ge=1)


class StepFit(_Wire):
    """step_s = base_s
    + per_decode_seq_s * decode_seqs + per_context_token_s * decode_seqs * decode_context
    + per_prefill_token_s * prefill_tokens
    + per_prefill_pair_s * prefill_tokens * prefill_context;
    and each request's latency outside the engine's steps, `request_s`."""

    base_s: float = Field(ge=0)
    request_s: float = Field(ge=0)
    per_decode_seq_s: float = Field(ge=0)
    per_context_token_s: float = Field(ge=0)
    per_prefill_token_s: float = Field(ge=0)
    per_prefill_pair_s: float = Field(ge=0)
    r2: float
    relative_rms: float = Field(ge=0)  # root mean square of (fitted - measured) / measured


class EngineProfile(_Wire):
    """One engine's measured step times, the fit made from them and its limits."""

    model: str
    endpoint: str
    measured_at: str  # ISO 8601, UTC
    limits: EngineLimits
    fit: StepFit
    samples: list[StepSample]
