"""The sizing planner's answer: what `llmfleet plan --json` prints and `POST /console/plan`
returns (the console's sizing explorer, `server/web/sizing.js`, reads it).

The planner builds these; the command line and the console only serialise them with
`model_dump(mode="json")`. Field order is the JSON's key order, and a field that may be
absent in meaning is present as null (never left out), so the page can read every key
of every candidate. Latencies and costs the model cannot bound (an infeasible
candidate's) are null, never Infinity, which JSON cannot carry.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AsgCapacity(_Wire):
    """Auto Scaling bounds for a candidate: the steady-state count and burst headroom."""

    min: int
    max: int
    desired: int


class SizedCandidate(_Wire):
    """One instance type, precision, tensor-parallel size and concurrency, as predicted."""

    instance_type: str
    gpu: str
    gpus: int
    precision: str  # planner.memory.Precision's value: fp16, fp8, ...
    tensor_parallel: int
    replicas_per_instance: int
    concurrency: int  # per replica; 0 when none meets the SLO
    feasible: bool
    why_not: str  # empty when feasible
    ttft_ms: float | None
    tpot_ms: float | None
    e2e_ms: float | None
    # At the question's rate spread over the fleet (the figures above are flat out).
    ttft_ms_at_rate: float | None
    tpot_ms_at_rate: float | None
    output_tok_s: float  # per instance
    kv_offload_fraction: float
    usd_hr: float | None  # None: no price for the market in the catalogue
    usd_per_million_output_tokens: float | None
    instances: int
    asg: AsgCapacity | None  # only for a feasible candidate
    cost: float | None  # what the ranking minimises; `SizingAnswer.cost_unit` says which
    on_frontier: bool  # no other feasible candidate beats it on both cost and latency


class SizingAnswer(_Wire):
    """The whole ranking for one question, cheapest feasible candidate first."""

    model: str
    searched: int
    search_s: float
    cost_unit: str
    recommended: SizedCandidate | None  # candidates[0] when it is feasible
    recommendation: str  # a paragraph for people
    tfvars: str | None  # the recommended candidate's environments/<env>.tfvars lines
    candidates: tuple[SizedCandidate, ...]

    def first(self, limit: int) -> SizingAnswer:
        """The same answer with at most `limit` candidates (the recommendation first)."""
        return self.model_copy(update={"candidates": self.candidates[:limit]})
