"""Asking the router on this host to drain, and waiting until it has (`server/drain.py` is
the router's side): the agent does this on a lifecycle or spot notice, `llmfleet up` on
Ctrl-C, so both leave through one path.

Blocking calls on a pool of their own (urllib3, `timeout_s` to connect and for each read,
no retries: the wait asks again on its next poll). A router that cannot be reached while
the wait polls is taken as gone: whatever it held is lost already, and waiting longer keeps
nothing; the outcome says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from pydantic import ValidationError

from llmfleet.core.net import blocking_pool
from llmfleet.core.wire.drain import DRAIN_HEADER, DRAIN_HEADER_VALUE, DrainStatus

log = logging.getLogger(__name__)


class DrainError(Exception):
    """The router did not answer `/drain` with its status."""


@dataclass(frozen=True)
class DrainOutcome:
    """How a wait for the router to drain ended."""

    drained: bool  # nothing left in flight (or the router is gone)
    waited_s: float
    in_flight: int | None  # what the router held at the end; None when it did not answer
    router_gone: bool = False


class RouterDrain:
    """The `/drain` endpoints of one router (on this host: the router refuses others), and
    its `/ready`."""

    def __init__(self, router_url: str, *, timeout_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._url = router_url.rstrip("/") + "/drain"
        self._ready_url = router_url.rstrip("/") + "/ready"
        self._timeout_s = timeout_s
        self._clock, self._sleep = clock, sleep

    def begin(self) -> DrainStatus:
        """Tell the router to drain (again is harmless); its status once it has begun.

        Raises:
            DrainError: unreachable, refused, or not a drain status.
        """
        return self._call("POST", {DRAIN_HEADER: DRAIN_HEADER_VALUE})

    def status(self) -> DrainStatus:
        """What the router holds now.

        Raises:
            DrainError: unreachable, refused, or not a drain status.
        """
        return self._call("GET", {})

    def ready(self) -> bool:
        """Whether the router says it serves (`/ready` answers 200): the agent completes a
        warm pool's launch action on it. False when it cannot be reached."""
        try:
            return self._send("GET", self._ready_url, {}).status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def wait(self, bound_s: float, *, poll_s: float = 1.0,
             on_poll: Callable[[DrainStatus], None] | None = None) -> DrainOutcome:
        """Poll until nothing is in flight (and the archive's records are sealed for
        sending), the router is gone, or `bound_s` has passed."""
        started = self._clock()
        deadline = started + bound_s
        while (outcome := self.settled(started, deadline, on_poll)) is None:
            self._sleep(max(0.0, min(poll_s, deadline - self._clock())))
        return outcome

    def settled(self, started: float, deadline: float,
                on_poll: Callable[[DrainStatus], None] | None = None) -> DrainOutcome | None:
        """One look at a drain begun at `started` (this object's clock): how it ended, once
        nothing is in flight, the router is gone or `deadline` has passed; None while it
        goes on. `wait` polls it; the agent's watcher calls it once a poll."""
        try:
            status = self.status()
        except DrainError as exc:
            log.warning("the router stopped answering while it drained (%s); "
                        "taking it as gone", exc)
            return DrainOutcome(True, self._clock() - started, None, router_gone=True)
        if on_poll is not None:
            on_poll(status)
        now = self._clock()
        if status.in_flight == 0 and status.archive_unsealed_bytes == 0:
            return DrainOutcome(True, now - started, 0)
        if now >= deadline:
            return DrainOutcome(False, now - started, status.in_flight)
        return None

    def _call(self, method: str, headers: dict[str, str]) -> DrainStatus:
        try:
            resp = self._send(method, self._url, headers)
        except urllib3.exceptions.HTTPError as exc:
            raise DrainError(f"{method} {self._url}: {exc}") from exc
        if resp.status != 200:
            raise DrainError(f"{method} {self._url}: HTTP {resp.status}")
        try:
            return DrainStatus.model_validate_json(resp.data)
        except ValidationError as exc:
            raise DrainError(f"{method} {self._url}: not a drain status") from exc

    def _send(self, method: str, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        """One request on a pool of its own, read whole, the pool closed after.

        Raises:
            urllib3.exceptions.HTTPError: unreachable, or no answer within the timeout.
        """
        http = blocking_pool(self._timeout_s)
        try:
            return http.request(method, url, headers=headers, preload_content=True)
        finally:
            http.clear()
