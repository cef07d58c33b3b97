"""The agent as systemd runs it (`llmfleet agent` in a process of its own), for tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def agent_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llmfleet.cli", "agent"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def wait_for(port: int, condition: Callable[[dict[str, object]], bool],
             timeout_s: float = 60) -> dict[str, object]:
    """Poll /health until `condition` holds on its JSON (bounded)."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
            if condition(body):
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"/health never satisfied the condition; last: {body}")
