"""Workload specs and what they sample."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from loadtest.workload import MAX_SPREAD, Fixed, FromFile, LogNormal, WorkloadError, parse


def test_fixed_gives_the_asked_lengths() -> None:
    workload = parse("fixed:128:64")
    assert workload == Fixed(128, 64)
    request = workload.sample(random.Random(1))
    assert request.max_tokens == 64
    assert len(request.completion_prompt().split()) == 128
    assert request.chat_messages() == [{"role": "user", "content": request.prompt}]


def test_lognormal_medians_spread_and_clamp() -> None:
    workload = parse("lognormal:200:100:1.0")
    assert workload == LogNormal(200, 100, 1.0)
    rng = random.Random(7)
    samples = [workload.sample(rng) for _ in range(3000)]
    inputs = [len(s.completion_prompt().split()) for s in samples]
    outputs = [s.max_tokens for s in samples]
    assert statistics.median(inputs) == pytest.approx(200, rel=0.1)
    assert statistics.median(outputs) == pytest.approx(100, rel=0.1)
    assert min(outputs) >= 100 / MAX_SPREAD and max(outputs) <= 100 * MAX_SPREAD
    assert statistics.quantiles(outputs, n=10)[-1] > 2.5 * statistics.median(outputs)  # a tail
    again = [parse("lognormal:200:100:1.0").sample(random.Random(7)) for _ in range(1)]
    assert again[0] == samples[0]  # the seed decides


def test_a_jsonl_file_of_prompts_and_chats(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "Say hi", "max_tokens": 8}\n\n'
                    '{"messages": [{"role": "system", "content": "Be brief"}, '
                    '{"role": "user", "content": "Why?"}]}\n')
    workload = parse(f"file:{path}")
    assert isinstance(workload, FromFile) and len(workload.requests) == 2
    prompt, chat = workload.requests
    assert (prompt.prompt, prompt.max_tokens) == ("Say hi", 8)
    assert chat.max_tokens == 128 and chat.chat_messages()[0]["role"] == "system"
    assert chat.completion_prompt() == "Be brief\nWhy?"
    seen = {workload.sample(random.Random(i)) for i in range(20)}
    assert seen == set(workload.requests)


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "prompts.jsonl:2: not JSON"),
    ('["a list"]', "expected an object"),
    ('{"prompt": "x", "max_tokens": 0}', "max_tokens must be a positive integer"),
    ('{"prompt": "x", "max_tokens": true}', "max_tokens must be a positive integer"),
    ('{"prompt": ""}', "needs a non-empty prompt"),
    ('{"messages": [{"role": "user"}]}', "needs a non-empty prompt"),
])
def test_bad_lines_are_named_by_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(WorkloadError, match=message.replace("[", r"\[")):
        parse(f"file:{path}")


@pytest.mark.parametrize(("spec", "message"), [
    ("fixed:128", "unknown workload"),
    ("poisson:1:2", "unknown workload"),
    ("fixed:a:2", "whole numbers"),
    ("fixed:0:2", "at least 1"),
    ("lognormal:10:10:0", "SIGMA must be in"),
    ("lognormal:10:10:x", "SIGMA must be a number"),
    ("file:/nonexistent/prompts.jsonl", "cannot read workload file"),
])
def test_bad_specs_say_what_to_use(spec: str, message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        parse(spec)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(WorkloadError, match="holds no requests"):
        parse(f"file:{path}")
