"""The agent's own endpoints: `/health` says when rounds stall, `/metrics` counts its work,
`/status` serves the latest round's figures."""

from __future__ import annotations

import time

import httpx

from agent.app import StatusServer
from agent.status import AgentStatus


def test_health_turns_503_when_rounds_stall_and_metrics_count() -> None:
    status = AgentStatus(interval_s=10, started_at=time.monotonic())
    server = StatusServer(status, "127.0.0.1", 0)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        status.rounds_total, status.last_round_at = 3, time.monotonic()
        status.scrape_failed("engine0")
        status.sent_total, status.buffered = 120, 7
        status.lost_total, status.round_errors_total = 4, 2
        status.values_left_out(["KVCacheUsage"])
        health = httpx.get(base + "/health", timeout=5)
        assert health.status_code == 200
        assert health.json()["failing_sources"] == ["engine0"]
        assert health.json()["datapoints"]["buffered"] == 7
        text = httpx.get(base + "/metrics", timeout=5).text
        assert 'llmfleet_agent_scrape_errors_total{source="engine0"} 1.0' in text
        assert "llmfleet_agent_datapoints_sent_total 120.0" in text
        assert "llmfleet_agent_datapoints_lost_total 4.0" in text
        assert "llmfleet_agent_round_errors_total 2.0" in text
        assert 'llmfleet_agent_values_nonfinite_total{metric="KVCacheUsage"} 1.0' in text
        assert "llmfleet_agent_buffer_on_disk 1.0" in text
        assert health.json()["datapoints"]["lost"] == 4
        status.last_round_at = time.monotonic() - 60  # three intervals and more: stalled
        stalled = httpx.get(base + "/health", timeout=5)
        assert stalled.status_code == 503 and stalled.json()["status"] == "stalled"
        assert httpx.get(base + "/status", timeout=5).json()["latest"] is None  # no round yet
        status.last_round = {"cost_usd_per_hour": 1.006, "gpus": [{"power_w": 180.0}]}
        latest = httpx.get(base + "/status", timeout=5).json()
        assert latest["latest"]["gpus"][0]["power_w"] == 180.0
        assert latest["health"]["status"] == "stalled"
        assert httpx.get(base + "/nope", timeout=5).status_code == 404
    finally:
        server.stop()


def test_a_source_that_recovers_leaves_the_failing_list() -> None:
    status = AgentStatus(interval_s=10, started_at=0.0)
    assert status.scrape_failed("router") is True
    assert status.scrape_failed("router") is False  # already known: not logged again
    assert status.scrape_worked("router") is True
    assert status.failing_sources == frozenset()
    assert status.scrape_errors_total == {"router": 2}
