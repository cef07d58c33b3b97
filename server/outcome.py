"""How a request ended: the one value its end is recorded from.

Where a request ends is decided in several places: the proxy when an engine's
answer is whole or a stream breaks, the service when a typed error or a
client's disconnect cuts it short, admission when it is refused. Each hands an
`Outcome` to `Accounting` (`finish` for admitted requests, `refused` for the
rest), and only `Accounting` turns it into the `status` metric label and the
access log's `status` field. `Accounting.finish` records the first outcome it
is given for an exchange and ignores any later one, so that a failure path
which also passes through a generic handler cannot count a request twice or
refund its tokens twice.

Tokens are not part of an outcome: they arrive piece by piece on the
`Exchange` while an answer streams, after its end may already be known.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.errors import APIError

CANCELLED = "cancelled"  # the status label of a request whose client went away
CLIENT_CLOSED = 499  # nginx's code for a client that hung up before its answer


def status_class_of(code: int) -> str:
    """The bounded metric label of an HTTP status: '2xx' to '5xx'."""
    return f"{code // 100}xx"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request ended, as its metrics and access-log line report it."""

    status: int | None  # the HTTP status recorded; None when the client left mid-answer
    status_class: str  # the `status` metric label: '2xx' to '5xx', or CANCELLED
    error: str | None = None  # OpenAI's error code (else type) when a typed error ended it

    @classmethod
    def answered(cls, status: int) -> Outcome:
        """The request got (or is logged as having got) `status`."""
        return cls(status, status_class_of(status))

    @classmethod
    def failed(cls, exc: APIError) -> Outcome:
        """A typed error ended the request; the client got its status."""
        return cls(exc.status, status_class_of(exc.status), exc.code or exc.type)

    @classmethod
    def client_left(cls, status: int | None = None) -> Outcome:
        """The client went away: before its answer (`status` CLIENT_CLOSED), or mid-answer
        (None: the head is sent already, and the body never ended)."""
        return cls(status, CANCELLED)

    @property
    def client_disconnected(self) -> bool:
        return self.status_class == CANCELLED

    @property
    def logged_status(self) -> int | str:
        """The access log's `status`: the HTTP status, else the label ('cancelled')."""
        return self.status if self.status is not None else self.status_class


# The client had the head of an answer and gets a body that stops short (a broken stream ends with
# an SSE error event, a relayed JSON answer is cut); logged as the 502 it stands for.
BROKEN_MIDWAY = Outcome.answered(502)
