"""A real router for tests: uvicorn on an ephemeral port, with the suite's two keys."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx

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


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `check` until it holds (bounded)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def lists(router: ServerThread, models: set[str], alias: str = "auto") -> Callable[[], bool]:
    """A check: the router's /v1/models lists exactly `models` and the alias."""
    def check() -> bool:
        listing = httpx.get(f"{router.url}/v1/models",
                            headers={"authorization": f"Bearer {TEST_KEY}"}).json()
        return {m["id"] for m in listing["data"]} == models | {alias}
    return check
