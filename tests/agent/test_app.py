"""The agent's own endpoints: `/health` says when rounds stall, `/metrics` counts its work,
`/status` serves the latest round's figures."""

from __future__ import annotations

import json
import time

import httpx

from agent.app import StatusServer
from agent.status import AgentState
from llmfleet.core.wire.agent import AgentStatus, GpuStatus, LatestRound


def test_health_turns_503_when_rounds_stall_and_metrics_count() -> None:
    status = AgentState(interval_s=10, started_at=time.monotonic())
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
        status.last_round = LatestRound(at=1.0, cost_usd_per_hour=1.006,
                                        gpus=(GpuStatus(index=0, power_w=180.0),))
        answer = httpx.get(base + "/status", timeout=5)
        latest = answer.json()
        assert latest["latest"]["gpus"][0]["power_w"] == 180.0
        assert latest["health"]["status"] == "stalled"
        assert AgentStatus.model_validate_json(answer.content).latest == status.last_round
        assert httpx.get(base + "/nope", timeout=5).status_code == 404
    finally:
        server.stop()


def test_a_source_that_recovers_leaves_the_failing_list() -> None:
    status = AgentState(interval_s=10, started_at=0.0)
    assert status.scrape_failed("router") is True
    assert status.scrape_failed("router") is False  # already known: not logged again
    assert status.scrape_worked("router") is True
    assert status.failing_sources == frozenset()
    assert status.scrape_errors_total == {"router": 2}


def test_status_keeps_the_json_the_router_and_console_read() -> None:
    """Keys, their order and null for what was not measured: as before the body had a model."""
    status = AgentState(interval_s=10.0, started_at=0.0, rounds_total=2, last_round_at=95.0)
    status.last_round = LatestRound(
        at=1.7e9, instance_type="g5.xlarge", model="m", serving={"latency_p50_s": 0.5},
        gpus=(GpuStatus(index=0, utilization_pct=80.0),), cost_usd_per_hour=1.006)
    datapoints = {"buffered": 0, "sent": 0, "dropped": 0, "rejected": 0, "lost": 0}
    health = {"status": "ok", "interval_s": 10.0, "rounds": 2, "last_round_age_s": 5.0,
              "failing_sources": [], "gpu": False, "round_errors": 0, "buffer": "disk",
              "datapoints": datapoints, "cloudwatch": "ok"}
    gpu = {"index": 0, "utilization_pct": 80.0, "power_w": None, "memory_used_bytes": None,
           "memory_total_bytes": None, "temperature_c": None}
    latest = {"at": 1.7e9, "instance_type": "g5.xlarge", "model": "m",
              "serving": {"latency_p50_s": 0.5}, "gpus": [gpu], "cost_usd_per_hour": 1.006,
              "cost_usd_per_million_output_tokens": None, "joules_per_output_token": None}
    body = status.status(now=100.0).model_dump(mode="json")
    assert json.dumps(body) == json.dumps({"health": health, "latest": latest})
