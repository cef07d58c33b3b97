"""SLA specs and verdicts."""

from __future__ import annotations

import pytest

from loadtest.sla import Check, SlaError, evaluate, parse


def test_checks_parse_and_judge_both_directions() -> None:
    checks = parse("ttft_p95_ms<=500, output_tokens_per_s >= 100,error_rate<=0.01")
    assert checks == (Check("ttft_p95_ms", "<=", 500), Check("output_tokens_per_s", ">=", 100),
                      Check("error_rate", "<=", 0.01))
    verdict = evaluate(checks, {"ttft_p95_ms": 500.0, "output_tokens_per_s": 99.5,
                                "error_rate": 0.0})
    assert [r.ok for r in verdict.results] == [True, False, True]
    assert not verdict.met
    assert verdict.failures() == ["output_tokens_per_s>=100 (measured 99.5)"]


def test_an_unmeasured_metric_fails_its_check() -> None:
    verdict = evaluate(parse("ttft_p50_ms<=100"), {"ttft_p50_ms": None})
    assert not verdict.met
    assert verdict.failures() == ["ttft_p50_ms<=100 (measured nothing)"]


def test_no_checks_is_met() -> None:
    assert parse("") == ()
    assert evaluate((), {}).met


@pytest.mark.parametrize(("spec", "message"), [
    ("ttft_p95_ms<500", "is not METRIC<=LIMIT"),
    ("latency<=5", "unknown metric 'latency'; known: ttft_p50_ms"),
    ("ttft_p95_ms<=fast", "'fast' is not a number"),
    ("ttft_p95_ms<=inf", "must be finite"),
])
def test_bad_specs_name_the_bad_part(spec: str, message: str) -> None:
    with pytest.raises(SlaError, match=message):
        parse(spec)
