"""`llmfleet agent` as the process systemd runs: health, metrics, kill, restart, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent.buffer import DatapointBuffer
from llmfleet.core.net import free_port
from tests.helpers.agent import agent_process, wait_for
from tests.helpers.moto import start_moto, statistic

COST_METRIC_DIMS = (("AutoScalingGroupName", "fleet-test"), ("InstanceId", "i-0test"),
                    ("InstanceType", "g5.xlarge"))


def agent_env(state_dir: Path, cloudwatch_port: int, port: int) -> dict[str, str]:
    return {
        **os.environ, "PYTHONUNBUFFERED": "1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "LLMFLEET_AGENT_PORT": str(port), "LLMFLEET_AGENT_INTERVAL_S": "0.25",
        "LLMFLEET_AGENT_ROUTER_URL": "", "LLMFLEET_AGENT_ENGINE_URLS": "",
        "LLMFLEET_AGENT_IMDS": "false", "LLMFLEET_AGENT_GPU": "false",
        "LLMFLEET_AGENT_ASG_NAME": "fleet-test", "LLMFLEET_AGENT_INSTANCE_ID": "i-0test",
        "LLMFLEET_AGENT_INSTANCE_TYPE": "g5.xlarge", "LLMFLEET_AGENT_REGION": "us-east-1",
        "LLMFLEET_AGENT_NAMESPACE": "LLMFleet/Test", "LLMFLEET_AGENT_MAX_BACKOFF_S": "0.5",
        "LLMFLEET_AGENT_CLOUDWATCH_ENDPOINT_URL": f"http://127.0.0.1:{cloudwatch_port}",
        "LLMFLEET_AGENT_STATE_DIR": str(state_dir),
    }


def counts(body: dict[str, object]) -> dict[str, int]:
    datapoints = body["datapoints"]
    assert isinstance(datapoints, dict)
    return {k: int(v) for k, v in datapoints.items()}


def buffered_rounds(state_dir: Path) -> int:
    """Rounds waiting on disk, counted by one metric under one dimension set."""
    buffer = DatapointBuffer(state_dir / "buffer.sqlite", 10**6)
    try:
        return sum(1 for _, p in buffer.oldest(10**6)
                   if p.name == "CostPerHourUSD" and p.dimensions == COST_METRIC_DIMS)
    finally:
        buffer.close()


def stopped_line(log: Path) -> dict[str, object]:
    for line in reversed(log.read_text().splitlines()):
        if '"agent stopped"' in line:
            entry: dict[str, object] = json.loads(line)
            return entry
    raise AssertionError(f"no shutdown line in {log.read_text()[-2000:]}")


def test_killed_mid_outage_and_restarted_nothing_is_lost(tmp_path: Path) -> None:
    cw_port, port = free_port(), free_port()
    env = agent_env(tmp_path / "state", cw_port, port)
    log = tmp_path / "agent.log"
    with agent_process(env, log) as first:
        body = wait_for(port, lambda b: int(b["rounds"]) >= 4)  # type: ignore[call-overload]
        assert body["cloudwatch"] == "backing off" and counts(body)["sent"] == 0
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    spilled = buffered_rounds(tmp_path / "state")
    assert spilled >= 4
    server = start_moto(cw_port)
    try:
        with agent_process(env, log) as second:
            wait_for(port, lambda b: counts(b)["sent"] > 0 and counts(b)["buffered"] == 0)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
        stopped = stopped_line(log)
        assert stopped["left_buffered"] == 0 and stopped["dropped"] == 0
        # Everything the killed agent spilled, plus every round of the second, exactly once.
        assert statistic(cw_port, "CostPerHourUSD") == spilled + int(stopped["rounds"])
    finally:
        server.stop()


def test_serves_health_and_its_own_metrics(tmp_path: Path) -> None:
    cw_port, port = free_port(), free_port()
    server = start_moto(cw_port)
    try:
        with agent_process(agent_env(tmp_path / "state", cw_port, port), tmp_path / "a.log"):
            body = wait_for(port, lambda b: counts(b)["sent"] > 0)
            assert body["status"] == "ok" and body["gpu"] is False
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert "llmfleet_agent_datapoints_sent_total" in text
            assert "llmfleet_agent_rounds_total" in text
    finally:
        server.stop()


def test_once_prints_a_table_without_publishing(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "state", free_port(), free_port())
    done = subprocess.run([sys.executable, "-m", "llmfleet.cli", "agent", "--once", "--print"],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "CostPerHourUSD" in done.stdout and "1.006" in done.stdout
    assert "InstanceType=g5.xlarge" in done.stdout
    assert not (tmp_path / "state").exists()  # nothing buffered: it did not publish


@pytest.mark.parametrize("bad", ["LLMFLEET_AGENT_INTERVAL_S=0", "LLMFLEET_AGENT_MARKET=reserved"])
def test_bad_settings_exit_with_a_message(tmp_path: Path, bad: str) -> None:
    name, value = bad.split("=")
    env = {**agent_env(tmp_path, free_port(), free_port()), name: value}
    done = subprocess.run([sys.executable, "-m", "llmfleet.cli", "agent", "--once"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "llmfleet agent:" in done.stderr


def test_no_region_off_ec2_exits_with_a_message(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "state", free_port(), free_port())
    for name in ("LLMFLEET_AGENT_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        env.pop(name, None)
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-config")  # no region from a profile either
    done = subprocess.run([sys.executable, "-m", "llmfleet.cli", "agent"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "set LLMFLEET_AGENT_REGION" in done.stderr


def test_a_corrupt_buffer_file_does_not_stop_start_up(tmp_path: Path) -> None:
    """It used to raise "file is not a database" at every start: a crash loop."""
    cw_port, port = free_port(), free_port()
    state = tmp_path / "state"
    state.mkdir()
    (state / "buffer.sqlite").write_bytes(b"not a database, whatever wrote it\n" * 100)
    server = start_moto(cw_port)
    try:
        with agent_process(agent_env(state, cw_port, port), tmp_path / "a.log") as proc:
            wait_for(port, lambda b: proc.poll() is None and counts(b)["sent"] > 0,
                     timeout_s=30)
        (aside,) = state.glob("buffer.sqlite.corrupt-*")
        assert aside.read_bytes().startswith(b"not a database")
        assert "is corrupt" in (tmp_path / "a.log").read_text()
    finally:
        server.stop()
