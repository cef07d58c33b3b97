"""`llmfleet up`: the whole platform on one machine, for a newcomer's first run.

Starts one vLLM engine (the generated test model unless a model is named),
waits for it while showing progress, starts the metrics agent beside it, then
runs the router in this process on `http://127.0.0.1:<port>/v1` and prints the
endpoint, the model id and an API key. The key is `LLMFLEET_API_KEY` when set,
else a fresh random one; it is printed once for the person at the terminal and
never logged. Ctrl-C drains the router as an instance leaving the fleet does
(`llmfleet.core.drain`: `/ready` fails, new requests are refused with 503, every
request in flight runs to its end, for up to `drain_timeout_s`), then stops it, the
agent (which flushes) and the engine; a second Ctrl-C stops at once.

The agent publishes to a local CloudWatch-compatible endpoint (moto in server
mode, started here) with throwaway credentials, never to AWS: the whole path
from engine to CloudWatch works on a laptop, and `llmfleet metrics` shows what
arrived. Local figures are priced as the instance type the options name.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from llmfleet.core.drain import DrainError, RouterDrain
from llmfleet.core.engine import EngineProcess, EngineSpec, engine_spec_for
from llmfleet.core.process import ChildProcess, StartError
from llmfleet.core.wire.drain import DrainStatus


@dataclass(frozen=True)
class UpOptions:
    model: str
    port: int
    engine_port: int
    vllm_args: str
    run_dir: Path
    agent_port: int = 8002
    cloudwatch_port: int = 8003
    instance_type: str = "g5.xlarge"  # what local figures are priced as
    agent_interval_s: float = 10.0
    drain_timeout_s: float = 60.0  # Ctrl-C waits this long for requests in flight


def local_cloudwatch(port: int, log_path: Path) -> ChildProcess:
    """moto in server mode: CloudWatch's API on 127.0.0.1, in memory."""
    return ChildProcess("local CloudWatch (moto)",
                        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                        log_path, f"http://127.0.0.1:{port}/moto-api/")


# moto accepts any credentials; these keep the agent from ever using real ones (a
# profile named in the environment would outrank them, so it is removed).
LOCAL_AWS_ENV: dict[str, str | None] = {
    "AWS_ACCESS_KEY_ID": "llmfleet-local", "AWS_SECRET_ACCESS_KEY": "llmfleet-local",
    "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None, "AWS_DEFAULT_PROFILE": None}


def local_agent(opts: UpOptions, engine_url: str, served_name: str) -> ChildProcess:
    env: dict[str, str | None] = {
        **LOCAL_AWS_ENV,
        "LLMFLEET_AGENT_PORT": str(opts.agent_port),
        "LLMFLEET_AGENT_INTERVAL_S": str(opts.agent_interval_s),
        "LLMFLEET_AGENT_ROUTER_URL": f"http://127.0.0.1:{opts.port}",
        "LLMFLEET_AGENT_ENGINE_URLS": engine_url,
        "LLMFLEET_AGENT_IMDS": "false",  # not on EC2: never wait on 169.254.169.254
        "LLMFLEET_AGENT_ASG_NAME": "local",
        "LLMFLEET_AGENT_INSTANCE_ID": "i-local",
        "LLMFLEET_AGENT_INSTANCE_TYPE": opts.instance_type,
        "LLMFLEET_AGENT_MODEL": served_name,
        "LLMFLEET_AGENT_REGION": "us-east-1",
        "LLMFLEET_AGENT_CLOUDWATCH_ENDPOINT_URL": f"http://127.0.0.1:{opts.cloudwatch_port}",
        "LLMFLEET_AGENT_STATE_DIR": str(opts.run_dir / "agent"),
    }
    return ChildProcess("agent", [sys.executable, "-m", "llmfleet.cli", "agent"],
                        opts.run_dir / "agent.log", f"http://127.0.0.1:{opts.agent_port}/health",
                        env)


GRACE_AFTER_DRAIN_S = 5


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first stop signal drains the router before it stops.

    The drain runs on a thread of its own through the router's `/drain` endpoints, as the
    agent on an instance does; once nothing is in flight (or `bound_s` has passed) the
    signal is handed to uvicorn, which shuts down, giving what is still open (only after
    the bound) `GRACE_AFTER_DRAIN_S`. A second signal stops at once.
    """

    def __init__(self, config: uvicorn.Config, drain: RouterDrain, bound_s: float,
                 say: Callable[[str], None] = print) -> None:
        if config.timeout_graceful_shutdown is None:  # uvicorn's default waits for ever
            config.timeout_graceful_shutdown = GRACE_AFTER_DRAIN_S
        super().__init__(config)
        self._drain, self._bound_s, self._say = drain, bound_s, say
        self.draining: threading.Thread | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.draining is not None:  # a second signal: stop now, streams or not
            self.force_exit = True
        if self.draining is not None or self.should_exit or not self.started:
            super().handle_exit(sig, frame)
            return
        self.draining = threading.Thread(target=self._drain_then_exit, args=(sig,),
                                         name="drain", daemon=True)
        self.draining.start()

    def _drain_then_exit(self, sig: int) -> None:
        try:
            began = self._drain.begin()
            self._say(f"llmfleet: draining: {_in_flight(began.in_flight)}; "
                      "Ctrl-C again to stop now")
            shown = [began.in_flight]

            def progress(status: DrainStatus) -> None:
                if status.in_flight != shown[-1]:
                    shown.append(status.in_flight)
                    self._say(f"  {_in_flight(status.in_flight)}")

            outcome = self._drain.wait(self._bound_s, poll_s=0.2, on_poll=progress)
            if not outcome.drained:
                self._say(f"llmfleet: stopping after {outcome.waited_s:.0f} s with "
                          f"{_in_flight(outcome.in_flight or 0, 'still in flight')}")
        except DrainError as exc:
            self._say(f"llmfleet: could not drain the router ({exc}); stopping")
        finally:
            if not self.should_exit:  # a second signal already told uvicorn
                super().handle_exit(sig, None)


def _in_flight(n: int, where: str = "in flight") -> str:
    return f"{n} request{'' if n == 1 else 's'} {where}"


class LocalPlatform:
    def __init__(self, options: UpOptions) -> None:
        self.options = options

    def _progress(self, elapsed: float) -> None:
        if int(elapsed) % 5 == 0:
            print(f"\r  waiting for vLLM ... {elapsed:4.0f} s", end="", flush=True)

    def run(self) -> int:
        # SIGTERM (systemd, `kill`, a supervisor) must stop the children as Ctrl-C does;
        # uvicorn hands the signal back once it has shut down, and it lands here.
        signal.signal(signal.SIGTERM, _interrupt)
        # A closed terminal (SIGHUP) too: the children share its session now, and must not
        # outlive `up` (uvicorn leaves SIGHUP alone, so it lands here at once).
        signal.signal(signal.SIGHUP, _interrupt)
        opts = self.options
        print("llmfleet: preparing the model ...", flush=True)
        spec = engine_spec_for(opts.model, opts.engine_port, opts.vllm_args)
        engine = EngineProcess(spec, opts.run_dir / "vllm.log")
        cloudwatch = local_cloudwatch(opts.cloudwatch_port, opts.run_dir / "cloudwatch.log")
        agent = local_agent(opts, spec.url, spec.served_name)
        print(f"llmfleet: starting vLLM ({spec.served_name}), log in {engine.log_path}",
              flush=True)
        engine.start()
        cloudwatch.start()
        try:
            took = engine.wait_ready(progress=self._progress)
            print(f"\r  vLLM ready after {took:.0f} s{' ' * 20}", flush=True)
            cloudwatch.wait_ready(timeout_s=60, poll_s=0.2)
            agent.start()
            agent.wait_ready(timeout_s=60, poll_s=0.2)
            return self._serve(spec)
        except StartError as exc:
            print(f"\nllmfleet: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            print("llmfleet: stopping the agent, vLLM and local CloudWatch ...", flush=True)
            agent.stop()  # first: it flushes to CloudWatch on SIGTERM
            engine.stop()
            cloudwatch.stop()

    def _serve(self, spec: EngineSpec) -> int:
        from server.app import create_app
        from server.edge import uvicorn_options
        from server.settings import RouterSettings

        opts = self.options
        key = os.environ.get("LLMFLEET_API_KEY") or f"sk-llmfleet-{secrets.token_urlsafe(24)}"
        # One person on one machine: per-key limits would only throttle their load tests.
        # Set LLMFLEET_RATE_LIMIT_RPM / _TPM to try the limits locally.
        limits: dict[str, Any] = {name: 0.0 for name in ("rate_limit_rpm", "rate_limit_tpm")
                  if f"LLMFLEET_{name.upper()}" not in os.environ}
        settings = RouterSettings.load(
            host="127.0.0.1", port=opts.port, backends=[spec.url],
            api_keys=[f"local:{key}"], agent_url=f"http://127.0.0.1:{opts.agent_port}", **limits)
        app = create_app(settings)
        base = f"http://127.0.0.1:{opts.port}/v1"
        print("\n".join([
            "",
            "llmfleet is up",
            f"  endpoint : {base}",
            f"  console  : http://127.0.0.1:{opts.port}/   (paste the api key under Connection)",
            f"  model    : {spec.served_name}   (or 'auto' to let the router choose)",
            f"  api key  : {key}",
            f"  limits   : {_limits(settings.rate_limit_rpm, settings.rate_limit_tpm)}",
            f"  agent    : http://127.0.0.1:{opts.agent_port}/health, publishing every "
            f"{opts.agent_interval_s:g} s to a local CloudWatch (moto) on port "
            f"{opts.cloudwatch_port}, priced as {opts.instance_type}",
            "",
            f"  try: curl -s {base}/chat/completions -H 'authorization: Bearer {key}' \\",
            "         -H 'content-type: application/json' \\",
            f"         -d '{{\"model\":\"{spec.served_name}\",\"messages\":"
            "[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":16}'",
            "  then: make metrics   (what the agent published to CloudWatch)",
            "  Ctrl-C drains the router (requests in flight finish), then stops everything.",
            "",
        ]), flush=True)
        config = uvicorn.Config(app, host="127.0.0.1", port=opts.port, loop="uvloop",
                                access_log=False, log_config=None, proxy_headers=False,
                                **uvicorn_options(settings.edge()))
        server = DrainingServer(config, RouterDrain(f"http://127.0.0.1:{opts.port}"),
                                opts.drain_timeout_s)
        server.run()
        return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _limits(rpm: float, tpm: float) -> str:
    if not rpm and not tpm:
        return "none per key (set LLMFLEET_RATE_LIMIT_RPM / _TPM to try them)"
    return f"{rpm:g} requests/min and {tpm:g} tokens/min per key (0: none)"
