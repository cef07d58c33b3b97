"""Fixtures shared by the whole suite: clean settings, real servers, a real engine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmfleet.core.engine import EngineProcess, engine_spec_for
from llmfleet.core.net import free_port
from tests.helpers.fake_upstream import FakeControl, create_fake_upstream
from tests.helpers.router import RouterFactory, start_router
from tests.helpers.servers import ServerThread


@pytest.fixture(autouse=True)
def _clean_llmfleet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may see settings leaked from the developer's shell or another test."""
    for name in list(os.environ):
        if name.startswith("LLMFLEET_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_router() -> RouterFactory:
    """Start a real router (uvicorn, ephemeral port) in front of the given backends."""
    return start_router


@pytest.fixture
def fake() -> Iterator[tuple[FakeControl, str]]:
    """A fake OpenAI-compatible engine and its URL."""
    control = FakeControl()
    with ServerThread(create_fake_upstream(control)) as server:
        yield control, server.url


@pytest.fixture(scope="session")
def vllm_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One real vLLM engine (CPU, generated model) for the whole test session.

    Yields (base URL, served model name).
    """
    spec = engine_spec_for("", free_port())
    log_path = Path(tmp_path_factory.mktemp("vllm")) / "vllm.log"
    engine = EngineProcess(spec, log_path)
    engine.start()
    try:
        engine.wait_ready(timeout_s=600)
        yield spec.url, spec.served_name
    finally:
        engine.stop()
