"""Reading back what the fleet published (`llmfleet metrics`), from moto in server mode."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from agent.buffer import Datapoint, DatapointBuffer
from agent.publisher import Publisher
from agent.readback import latest, render, start_times
from llmfleet.cli import main
from tests.helpers.moto import cloudwatch

GROUP = (("AutoScalingGroupName", "fleet-dev"),)


def test_the_newest_value_of_each_series(moto_port: int, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{moto_port}"
    client = cloudwatch(endpoint)
    buffer = DatapointBuffer(tmp_path / "b.sqlite", 100)
    now = time.time()
    buffer.add([Datapoint("GPUUtilization", 20.0, "Percent", now - 300, GROUP),
                Datapoint("GPUUtilization", 75.0, "Percent", now - 30, GROUP),
                Datapoint("GPUUtilization", 70.0, "Percent", now - 150, GROUP),
                Datapoint("CostPerHourUSD", 1.006, "None", now - 30, GROUP)])
    for _ in range(2):  # two puts, as rounds do: each series still shows once
        Publisher(client, "LLMFleet", buffer).publish()
        buffer.add([Datapoint("CostPerHourUSD", 1.006, "None", now - 20, GROUP)])
    rows = latest(client, "LLMFleet", minutes=15)
    assert [(r.name, r.value) for r in rows] == [("CostPerHourUSD", 1.006),
                                                 ("GPUUtilization", 75.0)]
    assert "AutoScalingGroupName=fleet-dev" in render(rows)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert main(["metrics", "--endpoint-url", endpoint, "--region", "us-east-1"]) == 0
    assert "GPUUtilization" in capsys.readouterr().out
    buffer.close()


def test_nothing_published_yet_says_so(moto_port: int) -> None:
    client = cloudwatch(f"http://127.0.0.1:{moto_port}")
    assert "no datapoints yet" in render(latest(client, "LLMFleet"))


def test_the_groups_starts_say_what_grace_they_need(moto_port: int, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{moto_port}"
    client = cloudwatch(endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert start_times(client, "LLMFleet", "fleet-dev") is None
    buffer = DatapointBuffer(tmp_path / "b.sqlite", 100)
    now = time.time()
    # Three starts under the group's dimension. (Agents publish each under the instance's
    # dimensions too; CloudWatch keeps those series apart, but moto counts a query's
    # dimensions as a subset and would add them in, so they are left out here.)
    for i, seconds in enumerate((212.0, 251.0, 238.0)):
        buffer.add([Datapoint("TimeToServingSeconds", seconds, "Seconds",
                              now - 3600 * (i + 1), GROUP)])
    Publisher(client, "LLMFleet", buffer).publish()
    starts = start_times(client, "LLMFleet", "fleet-dev")
    assert starts is not None
    assert (starts.starts, starts.fastest_s, starts.slowest_s) == (3, 212.0, 251.0)
    assert starts.average_s == pytest.approx(233.67, abs=0.01)
    assert starts.grace_s == 330  # 251 s x 1.2 = 301.2, rounded up to 30 s
    # Within what the module accepts for model.model_load_seconds.
    assert replace(starts, slowest_s=12.0).grace_s == 30
    assert replace(starts, slowest_s=4000.0).grace_s == 3600
    assert main(["metrics", "--endpoint-url", endpoint, "--region", "us-east-1",
                 "--starts", "fleet-dev"]) == 0
    out = capsys.readouterr().out
    assert "3 starts" in out and "model.model_load_seconds = 330" in out
    assert main(["metrics", "--endpoint-url", endpoint, "--region", "us-east-1",
                 "--starts", "other"]) == 0
    assert "no start measured" in capsys.readouterr().out
    buffer.close()
