"""An instance leaving the fleet: the router stops taking work and lets what it holds finish.

Draining starts once (`POST /drain` from the instance itself: its agent, on a lifecycle or
spot notice, or `llmfleet up` on Ctrl-C) and never ends while the process runs. From then on
`/ready` answers 503, so the load balancer's health check takes the instance out of rotation;
a completion request that still arrives is refused at once with 503, `Retry-After` and
`Connection: close` before its body is read, never half-served; and every request admitted
before runs to its end, a stream to its last event. `in_flight` counts those; `GET /drain`
reports it, with the archive's records not yet sealed for sending, and whoever began the
drain (`llmfleet.core.drain`) waits for both to reach 0 or for its bound, then lets the
instance go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge

from llmfleet.core.wire.drain import DrainStatus
from server.errors import APIError

log = logging.getLogger(__name__)

# What a refused client is told to wait: the load balancer has other instances, so the
# next try goes to one of them; a second is the shortest Retry-After can say.
RETRY_AFTER_S = 1.0


class Draining(APIError):
    """This instance takes no new work: it is leaving the fleet."""

    status = 503
    type = "server_error"
    code = "instance_draining"

    def __init__(self) -> None:
        super().__init__("this instance is leaving the fleet and takes no new requests; "
                         "retry, and another instance will answer",
                         retry_after=RETRY_AFTER_S)

    def headers(self) -> dict[str, str]:
        # Close the connection too: the load balancer's next request opens one to a target
        # that is still in rotation instead of reusing this one.
        return {**super().headers(), "connection": "close"}


class Drain:
    """The router's drain state and the requests it still holds."""

    def __init__(self, gauge: Gauge, refused: Counter,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`gauge` reads 1 once draining begins; `refused` counts the requests refused."""
        self._gauge, self._refused, self._clock = gauge, refused, clock
        self.since: float | None = None  # when draining began (the clock's time)
        self.in_flight = 0  # completion requests admitted and not yet answered in full
        # Archive records not yet in a sealed segment (server.archiving): the drain waits
        # for them too, since the instance's disk leaves with it.
        self.unsealed: Callable[[], int] = lambda: 0

    @property
    def draining(self) -> bool:
        return self.since is not None

    def begin(self) -> bool:
        """Stop admitting requests; False if draining had already begun."""
        if self.since is not None:
            return False
        self.since = self._clock()
        self._gauge.set(1)
        log.info("draining: no new requests; %d in flight", self.in_flight)
        return True

    def admit(self) -> None:
        """Count one more request in flight.

        Raises:
            Draining: draining has begun.
        """
        if self.since is not None:
            self._refused.inc()
            raise Draining()
        self.in_flight += 1

    def done(self) -> None:
        """One admitted request was answered in full (or its client left)."""
        self.in_flight -= 1

    def status(self) -> DrainStatus:
        """What `GET /drain` answers."""
        since = None if self.since is None else round(self._clock() - self.since, 3)
        return DrainStatus(draining=self.draining, draining_for_s=since,
                           in_flight=self.in_flight, archive_unsealed_bytes=self.unsealed())
