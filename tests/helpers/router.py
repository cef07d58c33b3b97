"""A real router for tests: uvicorn on an ephemeral port, with the suite's two keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from server.app import create_app
from server.edge import uvicorn_options
from server.settings import RouterSettings
from tests.helpers.servers import ServerThread

TEST_KEY = "sk-test-key-0001"
OTHER_KEY = "sk-test-key-0002"

RouterFactory = Callable[..., AbstractContextManager[ServerThread]]


@contextmanager
def start_router(backends: list[str], **overrides: Any) -> Iterator[ServerThread]:
    """A router in front of `backends`, keys `tester` and `other`; `overrides` are settings."""
    values: dict[str, Any] = {
        "backends": backends, "api_keys": [f"tester:{TEST_KEY}", f"other:{OTHER_KEY}"],
        "health_interval_s": 0.2, "health_timeout_s": 1.0,
    }
    values.update(overrides)
    settings = RouterSettings(**values)
    app = create_app(settings)
    with ServerThread(app, **uvicorn_options(settings.edge())) as server:
        yield server
