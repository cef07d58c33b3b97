"""Fixtures shared by the whole suite: clean settings, real servers, a real engine."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from llmfleet.engine import EngineProcess
from llmfleet.fake_upstream import FakeControl, create_fake_upstream
from llmfleet.local import engine_spec_for
from llmfleet.testing import ServerThread, free_port
from server.app import create_app
from server.edge import uvicorn_options
from server.settings import RouterSettings

TEST_KEY = "sk-test-key-0001"
OTHER_KEY = "sk-test-key-0002"

RouterFactory = Callable[..., AbstractContextManager[ServerThread]]


@pytest.fixture(autouse=True)
def _clean_llmfleet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may see settings leaked from the developer's shell or another test."""
    for name in list(os.environ):
        if name.startswith("LLMFLEET_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_router() -> RouterFactory:
    """Start a real router (uvicorn, ephemeral port) in front of the given backends."""

    @contextmanager
    def factory(backends: list[str], **overrides: Any) -> Iterator[ServerThread]:
        values: dict[str, Any] = {
            "backends": backends, "api_keys": [f"tester:{TEST_KEY}", f"other:{OTHER_KEY}"],
            "health_interval_s": 0.2, "health_timeout_s": 1.0,
        }
        values.update(overrides)
        settings = RouterSettings(**values)
        app = create_app(settings)
        with ServerThread(app, **uvicorn_options(settings.edge())) as server:
            yield server

    return factory


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
