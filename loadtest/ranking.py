"""Choosing the best execution plan from what the search measured.

Two bases, because cost per token needs a price:

- **every plan priced** (an instance type or an hourly price): each plan runs
  at its best level that meets the SLA (the highest output tokens/s; with more
  load one would add instances, so cost per token is what counts), and the
  lowest USD per million output tokens wins; ties go to lower p50 latency,
  then lower memory;
- **otherwise** (local CPU plans, or a mix): plans are compared at the target
  concurrency, the load the operator expects; a plan that meets the SLA there
  is feasible, and the lowest p50 end-to-end latency wins, then the lowest
  memory.

Plans that failed to start or crashed, and plans that never met the SLA, are
ranked after the feasible ones, each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.plans import Plan
from loadtest.resources import Usage
from loadtest.results import Summary
from loadtest.sla import Verdict


@dataclass(frozen=True)
class Level:
    """One concurrency level of one plan."""

    concurrency: int
    summary: Summary
    usage: Usage
    verdict: Verdict

    @property
    def memory_bytes(self) -> float | None:
        return self.usage.peak_gpu_memory_bytes or self.usage.peak_rss_bytes

    def usd_per_million_tokens(self, price_usd_hr: float | None) -> float | None:
        rate = self.summary.output_tokens_per_s
        if price_usd_hr is None or not rate:
            return None
        return price_usd_hr / (rate * 3600) * 1e6


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    levels: tuple[Level, ...]
    error: str | None = None  # why the plan failed to start or crashed


@dataclass(frozen=True)
class Ranked:
    result: PlanResult
    level: Level | None  # where the plan was judged; None when it failed
    feasible: bool
    reason: str  # why not feasible; empty when feasible
    usd_per_million: float | None

    @property
    def name(self) -> str:
        return self.result.plan.name


def basis(results: list[PlanResult]) -> str:
    """"cost" when every measured plan has a price, else "latency"."""
    measured = [r for r in results if r.error is None]
    priced = measured and all(r.plan.price() is not None for r in measured)
    return "cost" if priced else "latency"


def rank(results: list[PlanResult], target_concurrency: int) -> list[Ranked]:
    """Every plan, best first (see the module docstring for the rules)."""
    by_cost = basis(results) == "cost"
    judge = _by_cost if by_cost else _at_target
    ranked = [judge(r, target_concurrency) for r in results]
    return sorted(ranked, key=lambda item: _order(item, by_cost))


def _by_cost(result: PlanResult, target: int) -> Ranked:
    if result.error is not None:
        return Ranked(result, None, False, result.error, None)
    price = result.plan.price()
    meeting = [lv for lv in result.levels if lv.verdict.met]
    if not meeting:
        return Ranked(result, _level(result, target), False, _missed(result), None)
    best = max(meeting, key=lambda lv: lv.summary.output_tokens_per_s or 0.0)
    return Ranked(result, best, True, "", best.usd_per_million_tokens(price))


def _at_target(result: PlanResult, target: int) -> Ranked:
    if result.error is not None:
        return Ranked(result, None, False, result.error, None)
    level = _level(result, target)
    price = result.plan.price()
    if level is None:
        return Ranked(result, None, False, f"not measured at concurrency {target}", None)
    if not level.verdict.met:
        return Ranked(result, level, False, f"at concurrency {target}: SLA missed: "
                      + "; ".join(level.verdict.failures()), level.usd_per_million_tokens(price))
    return Ranked(result, level, True, "", level.usd_per_million_tokens(price))


def _level(result: PlanResult, concurrency: int) -> Level | None:
    return next((lv for lv in result.levels if lv.concurrency == concurrency), None)


def _missed(result: PlanResult) -> str:
    if not result.levels:
        return "no level measured"
    lowest = result.levels[0]
    return (f"no level meets the SLA (at concurrency {lowest.concurrency}: "
            + "; ".join(lowest.verdict.failures()) + ")")


def _order(item: Ranked, by_cost: bool) -> tuple[int, float, float, float]:
    inf = float("inf")
    if item.level is None:  # plans that failed rank below those merely not measured
        return (3 if item.result.error is not None else 2, inf, inf, inf)
    p50 = item.level.summary.values().get("e2e_p50_ms") or inf
    memory = item.level.memory_bytes or inf
    cost = item.usd_per_million if by_cost and item.usd_per_million is not None else inf
    if not item.feasible:
        return (1, inf, p50, memory)
    return (0, cost, p50, memory)
