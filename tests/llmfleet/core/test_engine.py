"""Engine process management: failures are reported, not hung on."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmfleet.core.engine import EngineProcess, EngineSpec
from llmfleet.core.net import free_port
from llmfleet.core.process import StartError


def test_engine_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    spec = EngineSpec(str(tmp_path / "no-such-model"), "x", free_port())
    engine = EngineProcess(spec, tmp_path / "engine.log")
    engine.start()
    try:
        with pytest.raises(StartError, match="exited during start-up"):
            engine.wait_ready(timeout_s=120)
    finally:
        engine.stop()
    assert not engine.alive()


def test_command_uses_the_module_entry_point() -> None:
    cmd = EngineSpec("m", "served", 9, max_model_len=64, extra_args=("--seed", "1")).command()
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[-4:] == ["--max-model-len", "64", "--seed", "1"]
