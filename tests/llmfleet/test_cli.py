"""The `llmfleet` console script, and `llmfleet up` as a newcomer runs it."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path
from unittest import mock

import openai
import pytest

from llmfleet.cli import build_parser, main
from tests.helpers.local_up import local_up


def test_every_process_has_a_subcommand() -> None:
    parser = build_parser()
    for command in ("router", "up", "agent", "metrics", "testmodel"):
        assert parser.parse_args([command]).command == command
    assert parser.parse_args(["bench", "plans.toml"]).command == "bench"


def test_router_without_backends_exits_with_a_message(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFLEET_API_KEYS", "k")
    assert main(["router"]) == 2
    assert "no backends configured" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "variable"), [
    ("router", "LLMFLEET_MAX_BODY_BYTES"), ("agent", "LLMFLEET_AGENT_INTERVAL_S")])
def test_invalid_settings_are_reported_without_echoing_their_values(
        command: str, variable: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: pydantic's message quoted the value given, so a key pasted into the
    wrong variable went to the process log (and from there to CloudWatch)."""
    monkeypatch.setenv("LLMFLEET_BACKENDS", "http://127.0.0.1:1")
    monkeypatch.setenv(variable, "sk-pasted-into-the-wrong-place")
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err
    assert "sk-pasted" not in err


def wait_for_published(cw_port: int, name: str, capsys: pytest.CaptureFixture[str]) -> str:
    """`llmfleet metrics` against the local CloudWatch until `name` shows (bounded)."""
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    out = ""
    for _ in range(60):
        with mock.patch.dict(os.environ, env):
            main(["metrics", "--endpoint-url", f"http://127.0.0.1:{cw_port}",
                  "--region", "us-east-1"])
        out = capsys.readouterr().out
        if name in out:
            return out
        time.sleep(1)
    raise AssertionError(f"{name} never published; last view:\n{out}")


@pytest.mark.engine
def test_up_serves_two_generated_models_auto_chooses_publishes_and_stops_on_sigterm(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What a newcomer's `make up` runs: a fast and a slow model, auto between them."""
    with local_up(tmp_path, "sk-newcomer") as up:
        banner = up.banner
        assert f"endpoint : {up.url}/v1" in banner, banner
        assert f"console  : {up.url}/" in banner
        assert "api key  : sk-newcomer" in banner
        assert "limits   : none per key" in banner  # one local user: no throttled load tests
        assert "models   : llmfleet-tiny, llmfleet-wide" in banner
        assert "auto     : up to ~256 prompt tokens to llmfleet-tiny, longer to " \
               "llmfleet-wide" in banner
        client = openai.OpenAI(base_url=f"{up.url}/v1", api_key="sk-newcomer", max_retries=3)
        assert [m.id for m in client.models.list()] == ["llmfleet-tiny", "llmfleet-wide",
                                                        "auto"]
        served = []
        for prompt in ("hello", "tell me about the fleet " * 60):
            chunks = list(client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": prompt}],
                max_tokens=8, stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            served.append(chunks[0].model)
        assert served == ["llmfleet-tiny", "llmfleet-wide"]
        # The Responses API, as the README shows it, through the same alias.
        answer = client.responses.create(model="auto", input="Hello", max_output_tokens=8)
        assert answer.model == "llmfleet-tiny" and answer.output_text
        assert f"agent    : http://127.0.0.1:{up.agent_port}/health" in banner
        published = wait_for_published(up.cloudwatch_port, "GenerationTokensPerSecond", capsys)
        assert "CostPerHourUSD" in published
    # Leaving the block sent SIGTERM; before the fix the children outlived it.
    assert "stopping the agent, vLLM" in up.rest
    for log in ("vllm.log", "vllm-2.log", "agent.log"):
        assert "sk-newcomer" not in (tmp_path / log).read_text()
    with pytest.raises(OSError):  # the agent is gone too
        urllib.request.urlopen(f"http://127.0.0.1:{up.agent_port}/health", timeout=2)
    with pytest.raises(OSError):  # the engine's port is free again: it is gone
        urllib.request.urlopen(f"http://127.0.0.1:{up.engine_port}/health", timeout=2)
