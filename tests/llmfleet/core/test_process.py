"""Child processes: the start-up probe against a real server in a child process."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmfleet.core.net import free_port
from llmfleet.core.process import ChildProcess, StartError


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[tuple[ChildProcess, str]]:
    """Python's file server over a folder with a file `health` and a folder `ready/`."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "health").write_text("ok")
    (tmp_path / "site" / "ready").mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
               "--directory", str(tmp_path / "site")]
    child = ChildProcess("files", command, tmp_path / "files.log", base + "/health")
    child.start()
    try:
        child.wait_ready(timeout_s=30, poll_s=0.1)
        yield child, base
    finally:
        child.stop()


@pytest.mark.parametrize("path", ["/health", "/ready"], ids=["200", "redirect to a 200"])
def test_a_health_url_answering_200_is_ready(static_server: tuple[ChildProcess, str],
                                             path: str) -> None:
    child, base = static_server
    child.health_url = base + path  # /ready answers 301 to /ready/
    assert child.wait_ready(timeout_s=5, poll_s=0.1) < 1


def test_a_health_url_that_never_answers_200_times_out(
        static_server: tuple[ChildProcess, str]) -> None:
    child, base = static_server
    child.health_url = base + "/missing"
    with pytest.raises(StartError, match="files not healthy after 1 s"):
        child.wait_ready(timeout_s=1, poll_s=0.1)


def test_a_stop_reaches_the_childs_own_children(tmp_path: Path) -> None:
    """vLLM's server forks its engine core and workers: the process group is what a stop
    signals, so none of them outlives it."""
    pidfile = tmp_path / "grandchild.pid"
    child = ChildProcess("forker", ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"],
                         tmp_path / "forker.log", "http://127.0.0.1:9/health")
    child.start()
    for _ in range(100):  # bounded: the shell writes the pid at once
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    child.stop(grace_s=5)
    for _ in range(100):  # bounded: init reaps the orphan soon after
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)


def test_a_child_stopped_by_a_signal_is_a_failed_start_not_a_hang(tmp_path: Path) -> None:
    """A child shares the caller's terminal: if it read from it, SIGTTIN would stop it, and
    the start-up would otherwise look like a hang until its deadline."""
    child = ChildProcess("sleeper", ["sleep", "60"], tmp_path / "sleeper.log",
                         "http://127.0.0.1:9/health")
    child.start()
    try:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGSTOP)
        with pytest.raises(StartError, match="sleeper was stopped by a signal"):
            child.wait_ready(timeout_s=30, poll_s=0.05)
    finally:
        child.stop(grace_s=5)  # resumed to take its SIGTERM
    assert not child.alive()


def test_children_share_the_callers_session_so_a_busy_engine_cannot_starve_them(
        static_server: tuple[ChildProcess, str]) -> None:
    # With autogroup scheduling a session gets a core's share, not each process: an engine
    # started in a session of its own took the core its worker ran on from everything else
    # (a second engine's start-up hung past 300 s). A child keeps the caller's session, in a
    # process group of its own so that a stop still reaches all of it.
    child, _ = static_server
    assert child.pid is not None
    assert os.getsid(child.pid) == os.getsid(0)
    assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
