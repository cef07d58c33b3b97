"""Token lengths: how many prompt tokens a request carries and how many it asks back.

This module owns the length half of the workload spec language that the load tests and
the simulator share, the spec parsing and the draws, and nothing else:

- `fixed:IN:OUT` — every request has IN prompt tokens and asks for OUT;
- `lognormal:IN:OUT[:SIGMA]` — medians IN and OUT with a log-normal spread (default
  SIGMA 0.8: most requests short, a long tail, as in chat traffic), each draw clamped to
  [median / 8, median * 8] so one draw cannot dwarf a run.

What the lengths become is the caller's business: the load tests turn them into prompt
text (`loadtest/workload.py`, which also reads `file:` workloads), the simulator into
arrivals. Draws use the caller's `random.Random`, the output length first and then the
prompt's: the order the load tests always drew in, so a seed gives the same requests it
gave before this code moved here from `loadtest/workload.py`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

MAX_SPREAD = 8  # log-normal draws are clamped to [median / 8, median * 8]
DEFAULT_SIGMA = 0.8
FORMS = "fixed:IN:OUT or lognormal:IN:OUT[:SIGMA]"


class LengthSpecError(ValueError):
    """A length spec with bad numbers; the message names the spec and what is wrong."""


class UnknownLengthSpec(LengthSpecError):
    """A spec that names no length distribution (or has the wrong number of parts)."""


@dataclass(frozen=True, slots=True)
class Lengths:
    """One request's token counts."""

    prompt_tokens: int
    output_tokens: int


class LengthModel(Protocol):
    def draw(self, rng: random.Random) -> Lengths:
        """One request's lengths, drawn with `rng`."""
        ...


@dataclass(frozen=True, slots=True)
class FixedLengths:
    input_tokens: int
    output_tokens: int

    def draw(self, rng: random.Random) -> Lengths:
        return Lengths(self.input_tokens, self.output_tokens)


@dataclass(frozen=True, slots=True)
class LogNormalLengths:
    input_median: int
    output_median: int
    sigma: float = DEFAULT_SIGMA

    def draw(self, rng: random.Random) -> Lengths:
        output_tokens = draw_lognormal(self.output_median, self.sigma, rng)
        return Lengths(draw_lognormal(self.input_median, self.sigma, rng), output_tokens)


def draw_lognormal(median: int, sigma: float, rng: random.Random) -> int:
    """A whole log-normal draw around `median`, clamped to [median / 8, median * 8]."""
    value = round(rng.lognormvariate(math.log(median), sigma))
    return min(max(value, math.ceil(median / MAX_SPREAD)), median * MAX_SPREAD)


def parse(spec: str) -> FixedLengths | LogNormalLengths:
    """The length distribution a spec names (see the module docstring).

    Raises:
        UnknownLengthSpec: the spec names no known form, or has the wrong number of parts.
        LengthSpecError: a length below 1 or not whole, or a SIGMA outside (0, 3].
    """
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    if kind == "fixed" and len(parts) == 2:
        return FixedLengths(*_positive_ints(parts, spec))
    if kind == "lognormal" and len(parts) in (2, 3):
        input_median, output_median = _positive_ints(parts[:2], spec)
        sigma = _float(parts[2], spec) if len(parts) == 3 else DEFAULT_SIGMA
        if not 0 < sigma <= 3:
            raise LengthSpecError(f"workload {spec!r}: SIGMA must be in (0, 3]")
        return LogNormalLengths(input_median, output_median, sigma)
    raise UnknownLengthSpec(f"unknown workload {spec!r}: use {FORMS}")


def _positive_ints(parts: list[str], spec: str) -> list[int]:
    try:
        values = [int(p) for p in parts]
    except ValueError as exc:
        raise LengthSpecError(f"workload {spec!r}: lengths must be whole numbers") from exc
    if any(v < 1 for v in values):
        raise LengthSpecError(f"workload {spec!r}: lengths must be at least 1")
    return values


def _float(text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise LengthSpecError(f"workload {spec!r}: SIGMA must be a number") from exc
