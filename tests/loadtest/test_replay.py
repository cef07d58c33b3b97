"""Open-loop replay: every request leaves at its time, whatever came before."""

from __future__ import annotations

import asyncio
import itertools
import json
import random

from loadtest.replay import FIRST_TOKEN_ID, Timed, replay, token_prompt
from loadtest.sweep import Target
from tests.helpers.fake_upstream import FakeControl, Mode


def test_a_token_prompt_has_the_exact_length_and_no_special_ids() -> None:
    prompt = token_prompt(500, 50, random.Random(1))
    assert len(prompt) == 500
    assert min(prompt) >= FIRST_TOKEN_ID and max(prompt) < 50


def test_requests_leave_at_their_times_without_waiting_for_answers(
        fake: tuple[FakeControl, str]) -> None:
    # Each answer takes ~0.4 s (20 chunks, 20 ms apart); the requests are 0.1 s apart, so
    # a closed loop would send the second only after the first answered.
    control, url = fake
    control.chunk_delay_s = 0.02
    trace = [Timed(0.1 * i, 8 + i, 20) for i in range(4)]
    done: list[int] = []
    results = asyncio.run(replay(Target(url), "fake-model", trace,
                                 progress=lambda n, total: done.append(n)))
    assert [r.request for r in results] == trace
    assert done == [1, 2, 3, 4]
    for r in results:
        assert r.outcome is not None and r.outcome.completion_tokens == 20
        assert r.sent_s >= r.request.at_s
        assert r.e2e_s is not None and r.e2e_s >= 0.35
        assert r.ttft_s is not None and 0 < r.ttft_s < r.e2e_s
    # Open loop: each request left before the one before it was answered.
    for before, after in itertools.pairwise(results):
        assert before.finished_s is not None and after.sent_s < before.finished_s
    sent = [json.loads(b) for b in control.bodies]
    assert sorted(len(b["prompt"]) for b in sent) == [8, 9, 10, 11]
    assert all(b["ignore_eos"] and b["max_tokens"] == 20 and b["stream"] for b in sent)


def test_a_failed_request_is_recorded_with_its_error_and_the_rest_go_on(
        fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    control.mode, control.status = Mode.STATUS, 429
    results = asyncio.run(replay(Target(url), "fake-model", [Timed(0.0, 4, 4),
                                                             Timed(0.05, 4, 4)]))
    assert len(results) == 2
    for r in results:
        assert r.outcome is None and "429" in r.error
        assert r.ttft_s is None and r.e2e_s is None and r.finished_s is None
