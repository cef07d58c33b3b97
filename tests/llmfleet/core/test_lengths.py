"""Token-length specs and their draws, shared by the load tests and the simulator."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from llmfleet.core.lengths import (
    MAX_SPREAD,
    FixedLengths,
    Lengths,
    LengthSpecError,
    LogNormalLengths,
    UnknownLengthSpec,
    parse,
)


def test_fixed_draws_the_same_lengths_without_using_the_generator() -> None:
    rng = random.Random(3)
    state = rng.getstate()
    assert parse("fixed:128:64").draw(rng) == Lengths(128, 64)
    assert rng.getstate() == state


def test_lognormal_has_its_medians_a_tail_and_the_clamp() -> None:
    model = parse("lognormal:200:100:1.5")
    assert model == LogNormalLengths(200, 100, 1.5)
    rng = random.Random(7)
    draws = [model.draw(rng) for _ in range(4000)]
    prompts, outputs = [d.prompt_tokens for d in draws], [d.output_tokens for d in draws]
    assert statistics.median(prompts) == pytest.approx(200, rel=0.1)
    assert statistics.median(outputs) == pytest.approx(100, rel=0.1)
    assert min(outputs) == math.ceil(100 / MAX_SPREAD) and max(outputs) == 100 * MAX_SPREAD


def test_a_draw_takes_the_output_length_first_as_the_load_tests_always_did() -> None:
    """Regression guard: drawing the prompt first would change every seeded load test."""
    rng = random.Random(11)
    output = round(rng.lognormvariate(math.log(50), 0.8))
    prompt = round(rng.lognormvariate(math.log(400), 0.8))
    assert LogNormalLengths(400, 50).draw(random.Random(11)) == Lengths(prompt, output)


def test_the_default_sigma_is_a_chat_like_spread() -> None:
    assert parse("lognormal:10:20") == LogNormalLengths(10, 20, 0.8)
    assert parse("fixed:1:1") == FixedLengths(1, 1)


@pytest.mark.parametrize(("spec", "error", "message"), [
    ("fixed:128", UnknownLengthSpec, "unknown workload 'fixed:128': use fixed:IN:OUT or"),
    ("file:x.jsonl", UnknownLengthSpec, "unknown workload"),
    ("fixed:a:2", LengthSpecError, "whole numbers"),
    ("lognormal:0:2", LengthSpecError, "at least 1"),
    ("lognormal:1:2:nan", LengthSpecError, "SIGMA must be in"),
    ("lognormal:1:2:x", LengthSpecError, "SIGMA must be a number"),
])
def test_bad_specs_say_what_to_use(spec: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse(spec)
