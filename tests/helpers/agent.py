"""The agent as systemd runs it (`llmfleet agent` in a process of its own), for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def leaving_instance_env(port: int, router_url: str, imds_url: str, autoscaling_url: str,
                         instance_id: str, state_dir: Path, **more: str) -> dict[str, str]:
    """The environment of an agent on an instance of `llmfleet-dev-gpu` that may be told to
    leave (instance metadata and the Auto Scaling endpoint are the tests' stand-ins),
    publishing nothing; `more` are further `LLMFLEET_AGENT_*` settings, by their suffix."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "LLMFLEET_AGENT_PORT": str(port),
            "LLMFLEET_AGENT_ROUTER_URL": router_url, "LLMFLEET_AGENT_ENGINE_URLS": "",
            "LLMFLEET_AGENT_GPU": "false", "LLMFLEET_AGENT_PUBLISH": "false",
            "LLMFLEET_AGENT_IMDS_URL": imds_url, "LLMFLEET_AGENT_LIFECYCLE_POLL_S": "0.1",
            "LLMFLEET_AGENT_LIFECYCLE_HOOK": "llmfleet-dev-drain",
            "LLMFLEET_AGENT_AUTOSCALING_ENDPOINT_URL": autoscaling_url,
            "LLMFLEET_AGENT_ASG_NAME": "llmfleet-dev-gpu",
            "LLMFLEET_AGENT_INSTANCE_ID": instance_id,
            "LLMFLEET_AGENT_INSTANCE_TYPE": "g5.xlarge", "LLMFLEET_AGENT_MARKET": "spot",
            "LLMFLEET_AGENT_REGION": "us-east-1", "LLMFLEET_AGENT_STATE_DIR": str(state_dir),
            **{f"LLMFLEET_AGENT_{name.upper()}": value for name, value in more.items()}}


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
