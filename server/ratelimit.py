"""Per-API-key request and token limits as token buckets.

Each key has two buckets: requests per minute and tokens per minute. A request
reserves one request and its estimated tokens (prompt estimate plus
max_tokens) up front, atomically across both buckets; when the engine reports
real usage the difference is refunded or charged, so a key that asks for
large max_tokens but gets short answers is not throttled for tokens it never
used. A bucket may go negative after a charge: the key then waits it off.
The clock is injected so tests run on a fake one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from server.errors import RateLimited

Clock = Callable[[], float]


class TokenBucket:
    """A bucket holding up to `capacity`, refilled at `rate` per second."""

    __slots__ = ("_clock", "_level", "_stamp", "capacity", "rate")

    def __init__(self, capacity: float, rate: float, clock: Clock = time.monotonic) -> None:
        self.capacity = capacity
        self.rate = rate
        self._clock = clock
        self._level = capacity
        self._stamp = clock()

    def level(self) -> float:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now
        return self._level

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is available (0 when it is now)."""
        missing = amount - self.level()
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, amount: float) -> None:
        """Remove `amount` (may leave the bucket negative); negative amounts refund."""
        self._level = min(self.capacity, self.level() - amount)


@dataclass(frozen=True, slots=True)
class Reservation:
    key_id: str
    tokens: int


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits for each key id.

    A limit of 0 disables that bucket.
    """

    def __init__(self, rpm: float, tpm: float, clock: Clock = time.monotonic) -> None:
        self._rpm = rpm
        self._tpm = tpm
        self._clock = clock
        self._buckets: dict[str, tuple[TokenBucket | None, TokenBucket | None]] = {}

    def _pair(self, key_id: str) -> tuple[TokenBucket | None, TokenBucket | None]:
        pair = self._buckets.get(key_id)
        if pair is None:
            requests = TokenBucket(self._rpm, self._rpm / 60, self._clock) if self._rpm else None
            tokens = TokenBucket(self._tpm, self._tpm / 60, self._clock) if self._tpm else None
            pair = self._buckets[key_id] = (requests, tokens)
        return pair

    def reserve(self, key_id: str, tokens: int) -> Reservation:
        """Take one request and `tokens` tokens from the key's buckets, or neither.

        Raises:
            RateLimited: a bucket lacks capacity now; `retry_after` says when it will not.
        """
        requests, token_bucket = self._pair(key_id)
        if token_bucket is not None and tokens > token_bucket.capacity:
            raise RateLimited(
                f"this request needs about {tokens} tokens, more than the key's limit of "
                f"{int(token_bucket.capacity)} tokens per minute; lower max_tokens",
                param="max_tokens",
            )
        wait = 0.0
        if requests is not None:
            wait = requests.wait_for(1)
        if token_bucket is not None:
            wait = max(wait, token_bucket.wait_for(tokens))
        if wait > 0:
            kind = "requests" if requests is not None and requests.wait_for(1) > 0 else "tokens"
            raise RateLimited(f"rate limit reached for {kind} per minute; retry in {wait:.1f} s",
                              retry_after=wait)
        if requests is not None:
            requests.take(1)
        if token_bucket is not None:
            token_bucket.take(tokens)
        return Reservation(key_id, tokens)

    def reconcile(self, reservation: Reservation, used_tokens: int) -> None:
        """Settle a reservation against the tokens the engine reports it used."""
        token_bucket = self._pair(reservation.key_id)[1]
        if token_bucket is not None:
            token_bucket.take(used_tokens - reservation.tokens)
