"""Load shapes: how many users a load test runs at each moment.

A shape is chosen at run time by a short spec, with the peak user count, the
spawn rate and the run time taken from Locust's own `-u`, `-r` and `-t`:

- `constant` — ramp to the peak at the spawn rate and hold it;
- `step:N:SECONDS` — add N users every SECONDS until the peak, then hold
  (where does latency break as load grows?);
- `spike:BASE:AT:SECONDS` — BASE users, the peak at once from AT seconds on
  for SECONDS, then BASE again (does the endpoint recover from a burst?).

`users_at(t)` is pure so it is tested without Locust; the locustfile's
`LoadTestShape` turns it into Locust ticks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ShapeError(ValueError):
    """A shape spec that cannot be used; the message lists the valid forms."""


class Shape(Protocol):
    def users_at(self, t: float) -> int:
        """Users wanted `t` seconds into the test."""
        ...

    def spawn_rate(self) -> float:
        """Users to start or stop per second while moving to `users_at(t)`."""
        ...


@dataclass(frozen=True)
class Constant:
    peak: int
    rate: float

    def users_at(self, t: float) -> int:
        return self.peak

    def spawn_rate(self) -> float:
        return self.rate


@dataclass(frozen=True)
class Step:
    peak: int
    step_users: int
    step_s: float

    def users_at(self, t: float) -> int:
        return min(self.peak, self.step_users * (int(t // self.step_s) + 1))

    def spawn_rate(self) -> float:
        return float(self.step_users)  # each step lands within a second


@dataclass(frozen=True)
class Spike:
    peak: int
    base: int
    at_s: float
    length_s: float

    def users_at(self, t: float) -> int:
        return self.peak if self.at_s <= t < self.at_s + self.length_s else self.base

    def spawn_rate(self) -> float:
        return float(max(self.peak, 1))  # a spike arrives at once


FORMS = "constant, step:N:SECONDS or spike:BASE:AT:SECONDS"


def parse(spec: str, peak: int, spawn_rate: float) -> Shape:
    """The shape a spec names, peaking at `peak` users.

    Raises:
        ShapeError: unknown form, bad numbers, or a base or step above the peak.
    """
    if peak < 1:
        raise ShapeError("the shape needs a peak of at least 1 user (-u/--users)")
    kind, *parts = spec.split(":")
    if kind == "constant" and not parts:
        return Constant(peak, spawn_rate if spawn_rate > 0 else float(peak))
    if kind == "step" and len(parts) == 2:
        users, seconds = _number(parts[0], spec, int), _number(parts[1], spec, float)
        if users < 1 or seconds <= 0 or users > peak:
            raise ShapeError(f"shape {spec!r}: N must be 1..{peak} (the peak) and SECONDS > 0")
        return Step(peak, int(users), seconds)
    if kind == "spike" and len(parts) == 3:
        base = _number(parts[0], spec, int)
        at_s, length_s = _number(parts[1], spec, float), _number(parts[2], spec, float)
        if not 0 <= base <= peak or at_s < 0 or length_s <= 0:
            raise ShapeError(f"shape {spec!r}: BASE must be 0..{peak} (the peak), AT >= 0 and "
                             "SECONDS > 0")
        return Spike(peak, int(base), at_s, length_s)
    raise ShapeError(f"unknown shape {spec!r}: use {FORMS}")


def _number(text: str, spec: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError as exc:
        raise ShapeError(f"shape {spec!r}: {text!r} is not a number") from exc
