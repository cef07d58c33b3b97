"""Synthetic traffic: arrivals drawn from a rate curve named by a short spec.

This module owns the shape spec language, the rate curves it names and the draws. A
shape gives a multiplier of the base rate (`rate_per_s`) at each moment:

- `constant` — the base rate throughout;
- `diurnal[:PEAK_TO_TROUGH[:PERIOD_S]]` — a day's sinusoid (default ratio 3) with its
  trough at 04:00 and its peak at 16:00, averaging exactly the base rate over a period.
  The period defaults to `duration_s`: a whole day compressed into the run, and one real
  day when `duration_s` is 86400;
- `step:T1=R1,T2=R2,...` — the base rate until T1 seconds, then R1 times it until T2,
  and so on (times ascending, multiples >= 0; multiples rather than absolute rates, so
  that one spec serves any base rate and `rate_per_s` is always the rate at the start);
- `bursts:EVERY_S:LENGTH_S:FACTOR` — the base rate, and FACTOR times it for LENGTH_S
  seconds from EVERY_S, 2 * EVERY_S, ... (the run starts calm);
- shapes joined by `*` multiply: `diurnal:3*bursts:1800:120:3` is a day with one burst
  riding on it in an hour's run.

Arrivals are a non-homogeneous Poisson process drawn by thinning (Lewis and Shedler):
candidates at the curve's peak rate, each kept with probability rate(t) / peak. Token
lengths come from a workload spec of `llmfleet.core.lengths` (`fixed:IN:OUT`,
`lognormal:IN:OUT[:SIGMA]`). Times and lengths use separate generators seeded from
`seed`, so a seed gives the same list on every run, and the same times whatever the
workload.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass
from typing import Protocol

from llmfleet.core import lengths
from simulator.traffic_trace import MAX_TRACE_ROWS, Arrival

FORMS = ("constant, diurnal[:PEAK_TO_TROUGH[:PERIOD_S]], step:T1=R1,T2=R2,... or "
         "bursts:EVERY_S:LENGTH_S:FACTOR, or several joined by *")
DEFAULT_PEAK_TO_TROUGH = 3.0
TROUGH_AT = 4 / 24  # of the day: traffic is lowest in the small hours


class SpecError(ValueError):
    """A shape or workload spec, or a size, that synthetic traffic cannot use."""


class Curve(Protocol):
    def multiplier(self, t: float) -> float:
        """The rate at `t` seconds, as a multiple of the base rate."""
        ...

    def peak(self) -> float:
        """A bound on `multiplier` over the whole run."""
        ...


@dataclass(frozen=True, slots=True)
class Constant:
    def multiplier(self, t: float) -> float:
        return 1.0

    def peak(self) -> float:
        return 1.0


@dataclass(frozen=True, slots=True)
class Diurnal:
    peak_to_trough: float
    period_s: float

    def _amplitude(self) -> float:
        return (self.peak_to_trough - 1) / (self.peak_to_trough + 1)

    def multiplier(self, t: float) -> float:
        phase = 2 * math.pi * (t / self.period_s - TROUGH_AT)
        return 1 - self._amplitude() * math.cos(phase)

    def peak(self) -> float:
        return 1 + self._amplitude()


@dataclass(frozen=True, slots=True)
class Step:
    times_s: tuple[float, ...]  # ascending
    factors: tuple[float, ...]  # factors[i] applies from times_s[i]

    def multiplier(self, t: float) -> float:
        index = bisect.bisect_right(self.times_s, t)
        return self.factors[index - 1] if index else 1.0

    def peak(self) -> float:
        return max(1.0, *self.factors)


@dataclass(frozen=True, slots=True)
class Bursts:
    every_s: float
    length_s: float
    factor: float

    def multiplier(self, t: float) -> float:
        count = math.floor(t / self.every_s)
        in_burst = count >= 1 and t - count * self.every_s < self.length_s
        return self.factor if in_burst else 1.0

    def peak(self) -> float:
        return max(1.0, self.factor)


@dataclass(frozen=True, slots=True)
class Product:
    parts: tuple[Curve, ...]

    def multiplier(self, t: float) -> float:
        return math.prod(part.multiplier(t) for part in self.parts)

    def peak(self) -> float:
        return math.prod(part.peak() for part in self.parts)


def synthetic(shape: str, *, duration_s: float, rate_per_s: float, workload: str,
              seed: int = 0) -> list[Arrival]:
    """Arrivals over `duration_s` seconds at `rate_per_s` shaped by `shape` (module docstring).

    Raises:
        SpecError: a bad shape or workload spec (a `file:` workload included), a duration
            or rate that is not a positive number, or more than MAX_TRACE_ROWS arrivals
            expected at the shape's peak rate.
    """
    _check_positive(duration_s, "duration_s")
    _check_positive(rate_per_s, "rate_per_s")
    curve = parse_shape(shape, duration_s)
    model = parse_workload(workload)
    if rate_per_s * curve.peak() * duration_s > MAX_TRACE_ROWS:
        raise SpecError(f"{shape!r} at {rate_per_s}/s for {duration_s} s could draw more than "
                        f"{MAX_TRACE_ROWS} arrivals, the limit on a trace")
    times = arrival_times(curve, duration_s, rate_per_s, random.Random(seed))
    rng = random.Random(f"lengths:{seed}")
    return [_arrival(t, model.draw(rng)) for t in times]


def _arrival(at_s: float, drawn: lengths.Lengths) -> Arrival:
    return Arrival(at_s, drawn.prompt_tokens, drawn.output_tokens)


def arrival_times(curve: Curve, duration_s: float, rate_per_s: float,
                  rng: random.Random) -> list[float]:
    """Times in [0, duration_s) of a Poisson process at `rate_per_s * curve`, by thinning."""
    peak = curve.peak()
    times: list[float] = []
    t = rng.expovariate(rate_per_s * peak)
    while t < duration_s:
        if rng.random() * peak < curve.multiplier(t):
            times.append(t)
        t += rng.expovariate(rate_per_s * peak)
    return times


def parse_workload(spec: str) -> lengths.FixedLengths | lengths.LogNormalLengths:
    """The token-length distribution of a workload spec.

    Raises:
        SpecError: an unknown or bad spec, or a `file:` workload.
    """
    if spec.partition(":")[0] == "file":
        raise SpecError(f"workload {spec!r}: a file workload holds prompts, not a length "
                        f"distribution; use {lengths.FORMS}, or replay recorded lengths "
                        "from a trace file")
    try:
        return lengths.parse(spec)
    except lengths.LengthSpecError as exc:
        raise SpecError(str(exc)) from exc


def parse_shape(spec: str, duration_s: float) -> Curve:
    """The rate curve a shape spec names, for a run of `duration_s` seconds.

    Raises:
        SpecError: an unknown form or bad numbers; the message lists the forms.
    """
    parts = tuple(_parse_one(part.strip(), spec, duration_s) for part in spec.split("*"))
    return parts[0] if len(parts) == 1 else Product(parts)


def _parse_one(part: str, spec: str, duration_s: float) -> Curve:
    kind, _, rest = part.partition(":")
    fields = rest.split(":") if rest else []
    if kind == "constant" and not fields:
        return Constant()
    if kind == "diurnal" and len(fields) <= 2:
        return _diurnal(fields, spec, duration_s)
    if kind == "step" and len(fields) == 1:
        return _step(fields[0], spec)
    if kind == "bursts" and len(fields) == 3:
        return _bursts(fields, spec)
    raise SpecError(f"unknown shape {spec!r}: use {FORMS}")


def _diurnal(fields: list[str], spec: str, duration_s: float) -> Diurnal:
    ratio = _number(fields[0], spec) if fields else DEFAULT_PEAK_TO_TROUGH
    period_s = _number(fields[1], spec) if len(fields) == 2 else duration_s
    if ratio < 1 or period_s <= 0:
        raise SpecError(f"shape {spec!r}: PEAK_TO_TROUGH must be >= 1 and PERIOD_S > 0")
    return Diurnal(ratio, period_s)


def _step(changes: str, spec: str) -> Step:
    pairs = [change.split("=") for change in changes.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        raise SpecError(f"shape {spec!r}: write the changes as T1=R1,T2=R2,...")
    times = tuple(_number(t, spec) for t, _ in pairs)
    factors = tuple(_number(r, spec) for _, r in pairs)
    ascending = all(a < b for a, b in itertools.pairwise(times))
    if not ascending or times[0] < 0 or min(factors) < 0:
        raise SpecError(f"shape {spec!r}: times must be >= 0 and ascending, multiples >= 0")
    return Step(times, factors)


def _bursts(fields: list[str], spec: str) -> Bursts:
    every_s, length_s, factor = (_number(field, spec) for field in fields)
    if every_s <= 0 or not 0 < length_s <= every_s or factor < 0:
        raise SpecError(f"shape {spec!r}: need EVERY_S > 0, 0 < LENGTH_S <= EVERY_S and "
                        "FACTOR >= 0")
    return Bursts(every_s, length_s, factor)


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise SpecError(f"shape {spec!r}: {text!r} is not a number") from exc
    if not math.isfinite(value):
        raise SpecError(f"shape {spec!r}: {text!r} is not a finite number")
    return value


def _check_positive(value: float, name: str) -> None:
    if not 0 < value < math.inf:
        raise SpecError(f"{name} must be a positive finite number, got {value}")
