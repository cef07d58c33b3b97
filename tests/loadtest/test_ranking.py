"""Choosing the best plan: by cost when every plan is priced, else by latency at the target."""

from __future__ import annotations

import pytest

from loadtest.plans import Plan
from loadtest.ranking import Level, PlanResult, basis, rank
from loadtest.resources import Usage
from loadtest.results import Summary
from loadtest.sla import evaluate, parse

SLA = parse("e2e_p95_ms<=1000")


def level(concurrency: int, p50: float, p95: float, tokens_per_s: float,
          memory: int = 2 << 30) -> Level:
    summary = Summary(duration_s=10, requests=10, failures=0, error_rate=0.0,
                      requests_per_s=1.0, prompt_tokens=100, output_tokens=100,
                      output_tokens_per_s=tokens_per_s, unreported_usage=0,
                      client_lag_p99_ms=None,
                      latency_ms={"ttft": (10, 20, 30), "tpot": (1, 2, 3),
                                  "e2e": (p50, p95, p95)})
    return Level(concurrency, summary, Usage(memory, None, None),
                 evaluate(SLA, summary.values()))


def test_priced_plans_rank_by_cost_at_their_best_level_meeting_the_sla() -> None:
    cheap_slow = PlanResult(Plan("cheap", price_usd_hr=1.0),
                            (level(1, 100, 200, 100), level(8, 400, 900, 360),
                             level(32, 900, 2000, 500)))  # 32 misses the SLA
    dear_fast = PlanResult(Plan("dear", price_usd_hr=4.0),
                           (level(1, 50, 80, 200), level(8, 100, 150, 1200)))
    assert basis([cheap_slow, dear_fast]) == "cost"
    ranked = rank([dear_fast, cheap_slow], target_concurrency=8)
    assert [r.name for r in ranked] == ["cheap", "dear"]
    best = ranked[0]
    assert best.feasible and best.level is not None and best.level.concurrency == 8
    assert best.usd_per_million == pytest.approx(1.0 / (360 * 3600) * 1e6)  # $0.77
    assert ranked[1].usd_per_million == pytest.approx(4.0 / (1200 * 3600) * 1e6)  # $0.93


def test_unpriced_plans_rank_by_p50_at_the_target_then_memory() -> None:
    small = PlanResult(Plan("small-mem"), (level(1, 50, 60, 100), level(4, 90, 150, 300, 1 << 30)))
    big = PlanResult(Plan("big-mem"), (level(1, 40, 50, 110), level(4, 90, 150, 300, 3 << 30)))
    slow = PlanResult(Plan("queued"), (level(1, 45, 55, 100), level(4, 300, 400, 120)))
    ranked = rank([slow, big, small], target_concurrency=4)
    assert [r.name for r in ranked] == ["small-mem", "big-mem", "queued"]
    assert all(r.feasible for r in ranked)


def test_a_mix_of_priced_and_unpriced_plans_is_judged_on_latency() -> None:
    priced = PlanResult(Plan("priced", price_usd_hr=1.0), (level(4, 200, 300, 100),))
    unpriced = PlanResult(Plan("unpriced"), (level(4, 100, 300, 100),))
    assert basis([priced, unpriced]) == "latency"
    assert [r.name for r in rank([priced, unpriced], 4)] == ["unpriced", "priced"]


def test_infeasible_and_failed_plans_come_last_with_their_reasons() -> None:
    good = PlanResult(Plan("good"), (level(4, 500, 900, 100),))
    missed = PlanResult(Plan("missed"), (level(4, 100, 1500, 100),))  # fast p50, bad tail
    failed = PlanResult(Plan("failed"), (), error="vLLM exited during start-up: bad dtype")
    unmeasured = PlanResult(Plan("other-levels"), (level(1, 10, 20, 50),))
    ranked = rank([failed, missed, unmeasured, good], target_concurrency=4)
    assert [r.name for r in ranked] == ["good", "missed", "other-levels", "failed"]
    assert ranked[1].reason == ("at concurrency 4: SLA missed: e2e_p95_ms<=1000 "
                                "(measured 1500)")
    assert ranked[2].reason == "not measured at concurrency 4"
    assert ranked[3].reason == "vLLM exited during start-up: bad dtype"
    assert not any(r.feasible for r in ranked[1:])


def test_priced_plans_that_never_meet_the_sla_say_so() -> None:
    never = PlanResult(Plan("never", price_usd_hr=1.0), (level(1, 900, 1200, 10),))
    ok = PlanResult(Plan("ok", price_usd_hr=9.0), (level(1, 100, 200, 10),))
    ranked = rank([never, ok], target_concurrency=1)
    assert [r.name for r in ranked] == ["ok", "never"]
    assert ranked[1].reason == ("no level meets the SLA (at concurrency 1: e2e_p95_ms<=1000 "
                                "(measured 1200))")
