"""Child processes that `llmfleet up`, tests and benchmarks start, await and stop.

Each runs in its own process group (so a stop reaches all of it: vLLM forks workers)
but in the caller's session, with no stdin, logs to a file, and counts as ready when
its health URL answers 200. The probe is a `net.blocking_pool`: 2 s to connect and for each
read, errors not retried (the loop polls again), the body never read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import urllib3

from llmfleet.core.net import blocking_pool

HEALTH_TIMEOUT_S = 2.0


def _answers_200(http: urllib3.PoolManager, url: str) -> bool:
    """Whether `url` answers 200 now; a failure to answer is a no."""
    try:
        resp = http.request("GET", url, preload_content=False)
    except (urllib3.exceptions.HTTPError, OSError):
        return False
    resp.close()  # the status is the answer; an unread body must not be reused
    resp.release_conn()
    return resp.status == 200


def _stopped(pid: int) -> bool:
    """Whether a process is stopped by a signal (state T in /proc/PID/stat; no where /proc
    cannot say). A child shares the caller's terminal, so reading or configuring it from
    a background process group stops it instead of failing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].startswith("T")


class StartError(RuntimeError):
    """The process exited or did not become healthy in time."""


class ChildProcess:
    """One child process with its log in a file and a health URL."""

    def __init__(self, name: str, command: list[str], log_path: Path, health_url: str,
                 env: dict[str, str | None] | None = None) -> None:
        """`env` adds to this process's environment; a None value removes that variable."""
        self.name = name
        self.command = command
        self.log_path = log_path
        self.health_url = health_url
        self.env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        child_env = {k: v for k, v in env.items() if v is not None}
        with self.log_path.open("wb") as log:
            # Its own process group, not its own session: with autogroup scheduling (Linux's
            # default) the kernel shares a core between sessions before processes, and a
            # busy vLLM worker alone in its session starved other sessions' processes on its
            # core: measured here, a process beside it got 2% of the core, 93% in one
            # session. A second engine started so took over 300 s (docs/development.md).
            self._proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=child_env,
                                          process_group=0)

    def wait_ready(self, timeout_s: float = 600.0,
                   progress: Callable[[float], None] | None = None,
                   poll_s: float = 1.0) -> float:
        """Block until the health URL answers 200; return the seconds it took.

        Raises:
            StartError: the process exited, or `timeout_s` passed.
        """
        started = time.monotonic()
        http = blocking_pool(HEALTH_TIMEOUT_S)
        try:
            while (elapsed := time.monotonic() - started) < timeout_s:
                if self._proc is None or self._proc.poll() is not None:
                    raise StartError(f"{self.name} exited during start-up:\n{self.log_tail()}")
                if _stopped(self._proc.pid):
                    raise StartError(f"{self.name} was stopped by a signal during start-up "
                                     f"(SIGSTOP, or a terminal's SIGTTIN or SIGTTOU)")
                if _answers_200(http, self.health_url):
                    return elapsed
                if progress:
                    progress(elapsed)
                time.sleep(poll_s)
        finally:
            http.clear()
        raise StartError(f"{self.name} not healthy after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `grace_s`."""
        if self._proc is None or self._proc.poll() is not None:
            return
        pgid = os.getpgid(self._proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        os.killpg(pgid, signal.SIGCONT)  # a stopped process acts on its SIGTERM only once resumed
        try:
            self._proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self._proc.wait()
