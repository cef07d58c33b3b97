"""Exact samples, their merge across Locust processes, and the summary."""

from __future__ import annotations

import json

import pytest

from loadtest.results import Recorder
from loadtest.stream import Outcome


def outcome(e2e: float, ttft: float | None = None, tokens: int = 10) -> Outcome:
    return Outcome(e2e_s=e2e, ttft_s=ttft, prompt_tokens=5, completion_tokens=tokens,
                   usage_reported=True)


def test_summary_counts_tokens_rates_and_errors() -> None:
    recorder = Recorder()
    recorder.add(outcome(1.0, ttft=0.1), sent_at=100.0)
    recorder.add(outcome(2.0, ttft=0.2), sent_at=101.0)
    recorder.fail(sent_at=102.0, done_at=104.0)
    summary = recorder.summary()
    assert summary.duration_s == pytest.approx(4.0)
    assert (summary.requests, summary.failures) == (2, 1)
    assert summary.error_rate == pytest.approx(1 / 3)
    assert summary.requests_per_s == pytest.approx(0.5)
    assert summary.output_tokens_per_s == pytest.approx(20 / 4)
    values = summary.values()
    assert values["ttft_p50_ms"] == pytest.approx(150)
    assert values["tpot_p50_ms"] == pytest.approx(((0.9 / 9) + (1.8 / 9)) / 2 * 1000)
    assert values["e2e_p99_ms"] == pytest.approx(1990)
    assert json.loads(summary.to_json())["values"]["error_rate"] == pytest.approx(1 / 3)


def test_nothing_measured_renders_dashes() -> None:
    summary = Recorder().summary()
    assert summary.error_rate is None and summary.requests_per_s is None
    text = summary.render()
    assert "0 requests in 0.0 s (- req/s)" in text
    assert "time to first token (TTFT)         -         -         -" in text


def test_drained_worker_reports_merge_to_the_whole() -> None:
    worker_a, worker_b, master = Recorder(), Recorder(), Recorder()
    worker_a.add(outcome(1.0, ttft=0.5), sent_at=10.0)
    master.merge(worker_a.drain())
    worker_a.add(outcome(3.0, ttft=0.5), sent_at=11.0)
    worker_b.fail(sent_at=9.0, done_at=9.5)
    master.merge(worker_a.drain())
    master.merge(worker_b.drain())
    master.merge(Recorder().drain())  # a report with nothing new
    assert worker_a.requests == 0 and worker_a.first_sent is None  # drained
    summary = master.summary()
    assert (summary.requests, summary.failures, summary.output_tokens) == (2, 1, 20)
    assert summary.duration_s == pytest.approx(14.0 - 9.0)
    assert sorted(master.e2e_ms) == [1000.0, 3000.0]


def test_chunk_counted_tokens_are_noted() -> None:
    recorder = Recorder()
    recorder.add(Outcome(e2e_s=1.0, ttft_s=0.1, prompt_tokens=0, completion_tokens=4,
                         usage_reported=False), sent_at=0.0)
    assert "1 responses reported no usage" in recorder.summary().render()


def test_load_generator_lag_is_reported_and_warned_about() -> None:
    worker, master = Recorder(), Recorder()
    for ms in range(1, 101):  # 1..100 ms late
        worker.lag(ms / 1000)
    master.merge(worker.drain())
    summary = master.summary()
    assert summary.client_lag_p99_ms == pytest.approx(99.01)
    text = summary.render()
    assert "load generator event-loop lag p99: 99.0 ms" in text
    assert "warning: the load generator is short of CPU" in text
    calm = Recorder()
    calm.lag(0.001)
    assert "warning" not in calm.summary().render()
