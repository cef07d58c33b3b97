"""Reading back what the fleet published (`llmfleet metrics`), from moto in server mode."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.buffer import Datapoint, DatapointBuffer
from agent.publisher import Publisher
from agent.readback import latest, render
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
