"""Between the routers of a deployment's pools: the pool header and the `/ready` answer.

A deployment may serve several models, each in a pool of its own (its own instances and
Auto Scaling group). Every router takes any request, serves the models of its own pool
from its engines, and sends the others to the pool that serves them: to a peer URL (in the
cloud, an internal load balancer) with `POOL_HEADER` naming that pool, which is what the
load balancer's listener rules route on (infrastructure/modules/pools). A router that
receives a request carrying the header serves it from its own engines or not at all, so a
request crosses at most one hop whatever the routers' settings say.

A router learns what a peer pool serves from `GET /ready` there: ready while its own
engines serve, with their models and context lengths (`ReadyStatus`). It needs no key,
as the load balancer's health check does not send one.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

POOL_HEADER = "x-llmfleet-pool"
# A pool's name: a tfvars map key, an Auto Scaling group's suffix and a header value.
POOL_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def pool_name(name: str, what: str = "pool") -> str:
    """`name`, when it is a pool's name.

    Raises:
        ValueError: it is not (the message says what one is).
    """
    if not POOL_NAME.match(name):
        raise ValueError(f"{what} {name!r} must be 1-20 lower-case letters, digits and "
                         "dashes, starting with a letter")
    return name


class ReadyStatus(BaseModel):
    """What a router's `/ready` answers while its own engines serve."""

    model_config = ConfigDict(frozen=True)

    status: str = "ready"
    healthy_backends: int = Field(ge=0)
    models: list[str] = Field(max_length=1024)
    # Each model's context length where its engine says it (vLLM's max_model_len).
    context: dict[str, int] = Field(default_factory=dict, max_length=1024)
