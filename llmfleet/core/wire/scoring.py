"""The scored routing policy's per-model figures: what `llmfleet plan calibrate` fits
and prints, and what the router's `scored_models` setting reads.

The planner builds `ScoredModelDraft`s from measurements; an operator adds each
model's quality (a benchmark score the planner cannot measure) and gives the list to
the router, whose settings validate it as `ScoredModel`s.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LinearCost(BaseModel):
    """intercept + per_input_token * prompt tokens + per_output_token * output tokens.

    The coefficients `llmfleet plan calibrate` fits (runtime in seconds, energy in joules).
    """

    model_config = ConfigDict(extra="forbid")

    intercept: float = 0.0
    per_input_token: float = Field(default=0.0, ge=0)
    per_output_token: float = Field(ge=0)

    def __call__(self, input_tokens: int, output_tokens: int) -> float:
        return (self.intercept + self.per_input_token * input_tokens
                + self.per_output_token * output_tokens)


class ScoredModel(BaseModel):
    """One candidate of the scored policy: its fitted runtime and energy, and its quality."""

    model_config = ConfigDict(extra="forbid")

    model: str
    runtime_s: LinearCost
    energy_j: LinearCost
    quality: float = Field(ge=0, le=1, description="higher is better, e.g. a benchmark score")


class ScoredModelDraft(ScoredModel):
    """A candidate as calibration leaves it: the quality is the operator's to add."""

    quality: float | None = Field(  # type: ignore[assignment]
        default=None, ge=0, le=1, description="higher is better, e.g. a benchmark score")
