"""Service-level agreements: thresholds on a test's results, and the verdict.

An SLA is a comma-separated list of checks, each `METRIC<=LIMIT` or
`METRIC>=LIMIT`, for example `ttft_p95_ms<=500,tpot_p95_ms<=50,error_rate<=0.01`.
The metrics are the keys of `Summary.values()`: `ttft`, `tpot` and `e2e` at
`p50`, `p95` and `p99` in milliseconds, `error_rate` (0 to 1),
`requests_per_s` and `output_tokens_per_s`. The load test (`make load`) and
the plan search (`llmfleet bench`) share this form.

A check whose metric was not measured (TTFT in a test without streams) fails:
an SLA nobody could check is not met.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

LATENCY_METRICS = tuple(f"{name}_{q}_ms" for name in ("ttft", "tpot", "e2e")
                        for q in ("p50", "p95", "p99"))
METRICS = (*LATENCY_METRICS, "error_rate", "requests_per_s", "output_tokens_per_s")
_CHECK = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=)\s*([^\s,]+)\s*$")


class SlaError(ValueError):
    """An SLA spec that cannot be used; the message names the bad part."""


@dataclass(frozen=True)
class Check:
    metric: str
    op: str  # "<=" or ">="
    limit: float

    def passes(self, value: float | None) -> bool:
        if value is None:
            return False
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit:g}"


@dataclass(frozen=True)
class Result:
    check: Check
    value: float | None
    ok: bool


@dataclass(frozen=True)
class Verdict:
    results: tuple[Result, ...]

    @property
    def met(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> list[str]:
        return [f"{r.check} (measured {_show(r.value)})" for r in self.results if not r.ok]


def parse(spec: str) -> tuple[Check, ...]:
    """The checks in an SLA spec; an empty spec is no checks.

    Raises:
        SlaError: a part is not METRIC<=LIMIT or METRIC>=LIMIT, or names an unknown metric.
    """
    checks = []
    for part in filter(str.strip, spec.split(",")):
        match = _CHECK.match(part)
        if match is None:
            raise SlaError(f"SLA check {part.strip()!r} is not METRIC<=LIMIT or METRIC>=LIMIT")
        metric, op, limit_text = match.groups()
        if metric not in METRICS:
            raise SlaError(f"SLA check {part.strip()!r}: unknown metric {metric!r}; "
                           f"known: {', '.join(METRICS)}")
        try:
            limit = float(limit_text)
        except ValueError as exc:
            raise SlaError(f"SLA check {part.strip()!r}: {limit_text!r} is not a number") from exc
        if not math.isfinite(limit):
            raise SlaError(f"SLA check {part.strip()!r}: the limit must be finite")
        checks.append(Check(metric, op, limit))
    return tuple(checks)


def evaluate(checks: tuple[Check, ...], values: Mapping[str, float | None]) -> Verdict:
    return Verdict(tuple(Result(c, values.get(c.metric), c.passes(values.get(c.metric)))
                         for c in checks))


def _show(value: float | None) -> str:
    return "nothing" if value is None else f"{value:.4g}"
