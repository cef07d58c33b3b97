"""The agent's `/status` body (its `/health` body is the `health` part): what the agent
serves and the router's fleet view (`server/fleet.py`) polls for the console.

The agent builds these and serialises them with `model_dump(mode="json")` through
`json.dumps`, so the bytes are those the agent sent before the body had a model. Field
order is the JSON's key order. A figure that was not measured, or was NaN or infinite
(JSON has no such numbers, and browsers refuse them), is present as null, never left
out; `serving` holds only the figures that have a value, by `ServingStats` field name.
Unknown fields are ignored rather than refused: a router and an agent on one instance
are upgraded one after the other, and a newer agent's extra figure must not make the
older router call it unreadable.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True)


class GpuStatus(_Wire):
    """One GPU as the latest round read it."""

    index: int
    utilization_pct: float | None = None
    power_w: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    temperature_c: float | None = None


class LatestRound(_Wire):
    """The latest round's figures."""

    at: float  # wall clock, seconds since the epoch
    instance_type: str | None = None
    model: str | None = None
    serving: dict[str, float] = {}  # ServingStats field -> value, only those measured
    gpus: tuple[GpuStatus, ...] = ()
    cost_usd_per_hour: float | None = None
    cost_usd_per_million_output_tokens: float | None = None
    joules_per_output_token: float | None = None


class DatapointCounts(_Wire):
    """What happened to the datapoints the agent produced."""

    buffered: int
    sent: int
    dropped: int
    rejected: int
    lost: int


class AgentHealth(_Wire):
    """The agent's own state: `/health`'s body (503 when `status` is "stalled")."""

    # Words, not enums: a newer agent's new word must not make an older router call it
    # unreadable. Today's agent sends the values named in each comment.
    status: str  # "ok" or "stalled"
    interval_s: float
    rounds: int
    last_round_age_s: float | None
    failing_sources: tuple[str, ...]
    gpu: bool
    round_errors: int
    buffer: str  # "disk" or "memory"
    datapoints: DatapointCounts
    cloudwatch: str  # "ok" or "backing off"


class AgentStatus(_Wire):
    """`/status`: the agent's health and its latest round (null before the first)."""

    health: AgentHealth
    latest: LatestRound | None
