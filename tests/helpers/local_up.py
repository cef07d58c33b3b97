"""`llmfleet up` as a newcomer runs it (what `make up` runs), on free ports, for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmfleet.core.net import free_port

READY_LINE = "then stops everything"


@dataclass
class LocalUp:
    port: int
    engine_port: int
    agent_port: int
    cloudwatch_port: int
    banner: str = ""
    rest: str = ""  # what it printed after the banner, read once it stopped

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def local_up(run_dir: Path, key: str, agent_interval_s: float = 1.0,
             startup_timeout_s: float = 400.0, models: str | None = None) -> Iterator[LocalUp]:
    """Start `llmfleet up` (`models`, comma-separated; None: its default two), wait for its
    banner (bounded), SIGTERM it on the way out."""
    port, engine_port, agent_port, cloudwatch_port = (free_port() for _ in range(4))
    up = LocalUp(port, engine_port, agent_port, cloudwatch_port)
    env = {**os.environ, "LLMFLEET_API_KEY": key, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmfleet.cli", "up", "--port", str(up.port),
         "--engine-port", str(up.engine_port), "--agent-port", str(up.agent_port),
         "--cloudwatch-port", str(up.cloudwatch_port), "--agent-interval", str(agent_interval_s),
         "--run-dir", str(run_dir), *([] if models is None else ["--models", models])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + startup_timeout_s
        while READY_LINE not in up.banner and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            up.banner += line
        yield up
    finally:
        # SIGTERM, as systemd or `kill` send it; Ctrl-C (SIGINT) takes the same path.
        proc.send_signal(signal.SIGTERM)
        up.rest, _ = proc.communicate(timeout=60)
