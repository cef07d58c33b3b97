"""The `llmfleet` console script, and `llmfleet up` as a newcomer runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from llmfleet.cli import build_parser, main
from llmfleet.testing import free_port


def test_every_process_has_a_subcommand() -> None:
    parser = build_parser()
    for command in ("router", "up", "testmodel"):
        assert parser.parse_args([command]).command == command


def test_router_without_backends_exits_with_a_message(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFLEET_API_KEYS", "k")
    assert main(["router"]) == 2
    assert "no backends configured" in capsys.readouterr().err


@pytest.mark.engine
def test_up_serves_the_generated_model_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, engine_port = free_port(), free_port()
    env = {**os.environ, "LLMFLEET_API_KEY": "sk-newcomer", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmfleet.cli", "up", "--port", str(port),
         "--engine-port", str(engine_port), "--run-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    assert proc.stdout is not None
    banner = ""
    try:
        deadline = time.monotonic() + 300
        while "Ctrl-C stops everything" not in banner and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            banner += line
        assert f"endpoint : http://127.0.0.1:{port}/v1" in banner, banner
        assert "api key  : sk-newcomer" in banner
        model = re.search(r"model    : (\S+)", banner)
        assert model is not None
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-newcomer",
                               max_retries=3)
        text = "".join(
            c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model=model.group(1), messages=[{"role": "user", "content": "hello"}],
                max_tokens=8, stream=True) if c.choices)
        assert text
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert "stopping vLLM" in rest
    assert "sk-newcomer" not in (tmp_path / "vllm.log").read_text()
    with pytest.raises(OSError):  # the engine's port is free again: it is gone
        import urllib.request
        urllib.request.urlopen(f"http://127.0.0.1:{engine_port}/health", timeout=2)
