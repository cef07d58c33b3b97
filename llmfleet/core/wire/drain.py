"""The router's `/drain` body: what `POST /drain` and `GET /drain` answer (`server/drain.py`)
and what the agent and `llmfleet up` read while they wait for a router to drain
(`llmfleet/core/drain.py`).

`POST /drain` also needs the `DRAIN_HEADER` request header. A web page cannot add a custom
header to a cross-origin request without the browser asking the router first (a CORS
preflight), which the router refuses for this header; without it, a page open in a browser
on the machine running `llmfleet up` could drain the local router with a plain form post.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DRAIN_HEADER = "x-llmfleet-drain"
DRAIN_HEADER_VALUE = "begin"


class DrainStatus(BaseModel):
    """Whether the router drains, for how long, and what it still holds."""

    model_config = ConfigDict(frozen=True)

    draining: bool
    draining_for_s: float | None = None  # null until draining begins
    in_flight: int = Field(ge=0)  # completion requests admitted and not yet answered in full
    # Archive records (server/archiving.py) not yet in a segment sealed for sending; 0 when
    # the archive is off.
    archive_unsealed_bytes: int = Field(default=0, ge=0)
