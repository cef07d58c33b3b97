"""Per-API-key request and token limits over a sliding 60-second window.

"60 requests per minute" means at most 60 in any 60 seconds. A token bucket
does not keep that promise: it starts full and refills while it drains, so a
key took 60 at once and 59 more within the same minute (119 in 60 s). Each key
here keeps a log of what it was admitted, and a request is admitted only if
the last 60 seconds' total plus the request stays within the limit. Entries
that land within a 600th of the window are merged, so a key's log holds at
most ~600 entries however fast it sends, and the window's edges are exact to
0.1 s (0.17% of a minute).

A request reserves one request and its worst-case tokens (prompt estimate
plus max_tokens, times the choices it asks for) up front, atomically across
both limits. When the engine reports real usage the reservation is settled:
unused tokens go back into the window, extra ones are added. The clock is
injected so tests run on a fake one.

The log lives in this process: N routers give a key N times its limit. The
fleet-wide quota is API Gateway's usage plan (see docs/security.md).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from server.errors import RateLimited

Clock = Callable[[], float]
WINDOW_S = 60.0
SLOTS = 600  # entries closer than WINDOW_S / SLOTS apart are merged


class Entry:
    """What was admitted at `at`; settled later, so it is mutable."""

    __slots__ = ("amount", "at")

    def __init__(self, at: float, amount: float) -> None:
        self.at = at
        self.amount = amount


class SlidingWindow:
    """At most `limit` units admitted in any `window_s` seconds."""

    __slots__ = ("_clock", "_entries", "_used", "limit", "window_s")

    def __init__(self, limit: float, window_s: float = WINDOW_S,
                 clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._entries: deque[Entry] = deque()
        self._used = 0.0

    def used(self) -> float:
        """Units admitted within the last `window_s`."""
        horizon = self._clock() - self.window_s
        entries = self._entries
        while entries and entries[0].at <= horizon:
            self._used -= entries.popleft().amount
        if not entries:
            self._used = 0.0  # no float drift left over from a long run
        return self._used

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` more fits in the window (0 when it does now)."""
        excess = self.used() + amount - self.limit
        if excess <= 0:
            return 0.0
        now = self._clock()
        for entry in self._entries:
            excess -= entry.amount
            if excess <= 0:
                return entry.at + self.window_s - now
        return self.window_s  # more than the whole limit: never, in practice

    def take(self, amount: float) -> Entry:
        """Admit `amount` now; the entry settles the amount later."""
        now = self._clock()
        entries = self._entries
        if entries and now - entries[-1].at < self.window_s / SLOTS:
            entry = entries[-1]
            entry.amount += amount
        else:
            entry = Entry(now, amount)
            entries.append(entry)
        self._used += amount
        return entry

    def settle(self, entry: Entry, delta: float) -> None:
        """Change what `entry` admitted by `delta`: a refund (< 0) comes off the entry
        while it is in the window; a charge (> 0) is taken now, when it is known, so that
        it stays in the window a whole minute."""
        if delta > 0:
            self.take(delta)
        # Entries leave the log only once older than the window, so a younger one is in it.
        elif entry.at > self._clock() - self.window_s:
            entry.amount += delta
            self._used += delta


@dataclass(frozen=True, slots=True)
class Reservation:
    key_id: str
    tokens: int
    entry: Entry | None = None  # the token window's entry, when tokens are limited


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits for each key id.

    A limit of 0 disables that window.
    """

    def __init__(self, rpm: float, tpm: float, clock: Clock = time.monotonic) -> None:
        self._rpm = rpm
        self._tpm = tpm
        self._clock = clock
        self._windows: dict[str, tuple[SlidingWindow | None, SlidingWindow | None]] = {}

    def _pair(self, key_id: str) -> tuple[SlidingWindow | None, SlidingWindow | None]:
        pair = self._windows.get(key_id)
        if pair is None:
            requests = SlidingWindow(self._rpm, clock=self._clock) if self._rpm else None
            tokens = SlidingWindow(self._tpm, clock=self._clock) if self._tpm else None
            pair = self._windows[key_id] = (requests, tokens)
        return pair

    def reserve(self, key_id: str, tokens: int, generates: bool = True) -> Reservation:
        """Admit one request and `tokens` tokens for the key, or neither (`generates`: the
        tokens include what it may generate, else only what it sends).

        Raises:
            RateLimited: a window is full now; `retry_after` says when it will not be.
        """
        requests, token_window = self._pair(key_id)
        if token_window is not None and tokens > token_window.limit:
            limit = int(token_window.limit)
            if not generates:
                raise RateLimited(f"this request's input is about {tokens} tokens, more than "
                                  f"the key's limit of {limit} tokens per minute; send less "
                                  "at once", param="input")
            raise RateLimited(
                f"this request may use up to {tokens} tokens, more than the key's limit of "
                f"{limit} tokens per minute; lower max_tokens (or n)",
                param="max_tokens",
            )
        request_wait = requests.wait_for(1) if requests is not None else 0.0
        token_wait = token_window.wait_for(tokens) if token_window is not None else 0.0
        if request_wait > 0 or token_wait > 0:
            kind = "requests" if request_wait >= token_wait else "tokens"
            wait = max(request_wait, token_wait)
            raise RateLimited(f"rate limit reached for {kind} per minute; retry in {wait:.1f} s",
                              retry_after=wait)
        if requests is not None:
            requests.take(1)
        entry = token_window.take(tokens) if token_window is not None else None
        return Reservation(key_id, tokens, entry)

    def reconcile(self, reservation: Reservation, used_tokens: int) -> None:
        """Settle a reservation against the tokens the request really used."""
        token_window = self._pair(reservation.key_id)[1]
        if token_window is not None and reservation.entry is not None:
            token_window.settle(reservation.entry, used_tokens - reservation.tokens)
