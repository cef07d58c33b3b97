"""`llmfleet up`: the whole platform on one machine, for a newcomer's first run.

Starts one vLLM engine (the generated test model unless a model is named),
waits for it while showing progress, then runs the router in this process on
`http://127.0.0.1:<port>/v1` and prints the endpoint, the model id and an API
key. The key is `LLMFLEET_API_KEY` when set, else a fresh random one; it is
printed once for the person at the terminal and never logged. Ctrl-C stops the
router and then the engine.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from llmfleet.engine import EngineProcess, EngineSpec, EngineStartError, split_args

TEST_MODEL_NAME = "llmfleet-tiny"
# The generated model needs little KV cache; vLLM's CPU backend otherwise
# reserves a fraction of all memory and refuses to start on small machines.
TEST_MODEL_ARGS = ("--kv-cache-memory-bytes", str(512 * 1024 * 1024))


@dataclass(frozen=True)
class UpOptions:
    model: str
    port: int
    engine_port: int
    vllm_args: str
    run_dir: Path


def engine_spec_for(model: str, port: int, vllm_args: str = "") -> EngineSpec:
    """The engine launch for `model`; empty means the generated test model."""
    if not model:
        from llmfleet.testmodel import DEFAULT_TEST_MODEL_DIR, ensure_test_model

        path = ensure_test_model(DEFAULT_TEST_MODEL_DIR)
        return EngineSpec(str(path), TEST_MODEL_NAME, port, max_model_len=2048,
                          extra_args=TEST_MODEL_ARGS + split_args(vllm_args))
    served = Path(model).name if Path(model).exists() else model
    return EngineSpec(model, served, port, extra_args=split_args(vllm_args))


class LocalPlatform:
    def __init__(self, options: UpOptions) -> None:
        self.options = options

    def _progress(self, elapsed: float) -> None:
        if int(elapsed) % 5 == 0:
            print(f"\r  waiting for vLLM ... {elapsed:4.0f} s", end="", flush=True)

    def run(self) -> int:
        opts = self.options
        print("llmfleet: preparing the model ...", flush=True)
        spec = engine_spec_for(opts.model, opts.engine_port, opts.vllm_args)
        engine = EngineProcess(spec, opts.run_dir / "vllm.log")
        print(f"llmfleet: starting vLLM ({spec.served_name}), log in {engine.log_path}",
              flush=True)
        engine.start()
        try:
            took = engine.wait_ready(progress=self._progress)
            print(f"\r  vLLM ready after {took:.0f} s{' ' * 20}", flush=True)
            return self._serve(spec)
        except EngineStartError as exc:
            print(f"\nllmfleet: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            print("llmfleet: stopping vLLM ...", flush=True)
            engine.stop()

    def _serve(self, spec: EngineSpec) -> int:
        import uvicorn

        from server.app import create_app
        from server.settings import RouterSettings

        key = os.environ.get("LLMFLEET_API_KEY") or f"sk-llmfleet-{secrets.token_urlsafe(24)}"
        settings = RouterSettings.load(
            host="127.0.0.1", port=self.options.port, backends=[spec.url],
            api_keys=[f"local:{key}"])
        app = create_app(settings)
        base = f"http://127.0.0.1:{self.options.port}/v1"
        print("\n".join([
            "",
            "llmfleet is up",
            f"  endpoint : {base}",
            f"  model    : {spec.served_name}   (or 'auto' to let the router choose)",
            f"  api key  : {key}",
            "",
            f"  try: curl -s {base}/chat/completions -H 'authorization: Bearer {key}' \\",
            "         -H 'content-type: application/json' \\",
            f"         -d '{{\"model\":\"{spec.served_name}\",\"messages\":"
            "[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":16}'",
            "  Ctrl-C stops everything.",
            "",
        ]), flush=True)
        uvicorn.run(app, host="127.0.0.1", port=self.options.port, loop="uvloop",
                    http="httptools", access_log=False, log_config=None, proxy_headers=False)
        return 0
