"""`llmfleet up`: the whole platform on one machine, for a newcomer's first run.

Starts a vLLM engine for each model (by default two generated ones, `llmfleet-tiny` and
the slower `llmfleet-wide`, so that `auto` has a choice to make), waits for them while
showing progress, starts the metrics agent beside them, then runs the router in this
process on `http://127.0.0.1:<port>/v1` and prints the endpoint, the models, how `auto`
chooses between them and an API key. Unless the router's settings (`LLMFLEET_*`, or the
file `LLMFLEET_CONFIG_FILE` names) give a policy of their own, `auto` sends prompts by
length: up to `SHORT_PROMPT_TOKENS` to the first model, four times as many to the next,
the rest to the last. The key is `LLMFLEET_API_KEY` when set,
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from llmfleet.core.drain import DrainError, RouterDrain
from llmfleet.core.engine import EngineProcess, EngineSpec, engine_spec_for
from llmfleet.core.net import free_port
from llmfleet.core.process import ChildProcess, StartError
from llmfleet.core.routing import LengthRule
from llmfleet.core.testmodel import GENERATED
from llmfleet.core.wire.drain import DrainStatus

DEFAULT_MODELS = tuple(GENERATED)  # a fast and a slow generated model
SHORT_PROMPT_TOKENS = 256  # auto's bound for the first model; x4 for each next one


@dataclass(frozen=True)
class UpOptions:
    models: tuple[str, ...]  # smallest first: the order auto's length rules follow
    port: int
    engine_port: int  # the first engine's; the others take free ports
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


def local_agent(opts: UpOptions, engine_urls: list[str], model: str | None) -> ChildProcess:
    """The agent beside the router, scraping `engine_urls`; `model` names what they serve
    when they serve one model (an instance serves one; with several here, the figures are
    the machine's)."""
    env: dict[str, str | None] = {
        **LOCAL_AWS_ENV,
        "LLMFLEET_AGENT_PORT": str(opts.agent_port),
        "LLMFLEET_AGENT_INTERVAL_S": str(opts.agent_interval_s),
        "LLMFLEET_AGENT_ROUTER_URL": f"http://127.0.0.1:{opts.port}",
        "LLMFLEET_AGENT_ENGINE_URLS": ",".join(engine_urls),
        "LLMFLEET_AGENT_IMDS": "false",  # not on EC2: never wait on 169.254.169.254
        "LLMFLEET_AGENT_ASG_NAME": "local",
        "LLMFLEET_AGENT_INSTANCE_ID": "i-local",
        "LLMFLEET_AGENT_INSTANCE_TYPE": opts.instance_type,
        "LLMFLEET_AGENT_MODEL": model,
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


def engine_specs(opts: UpOptions) -> list[EngineSpec]:
    """One engine per model, the first on `engine_port`.

    Raises:
        ValueError: no model, or two that vLLM would serve under one name.
    """
    if not opts.models:
        raise ValueError("no model to serve")
    specs = [engine_spec_for(model, opts.engine_port if i == 0 else free_port(), opts.vllm_args)
             for i, model in enumerate(opts.models)]
    names = [spec.served_name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two models would be served as one name: {', '.join(names)}")
    return specs


def length_rules(names: list[str]) -> list[LengthRule]:
    """auto's default rules: the first model up to SHORT_PROMPT_TOKENS, each next one up to
    four times the previous bound, the last without one."""
    return [LengthRule(model=name, max_prompt_tokens=None if i == len(names) - 1
                       else SHORT_PROMPT_TOKENS * 4 ** i) for i, name in enumerate(names)]


def describe_rules(rules: list[LengthRule]) -> str:
    parts = [f"up to ~{r.max_prompt_tokens} prompt tokens to {r.model}"
             for r in rules if r.max_prompt_tokens is not None]
    return ", ".join([*parts, f"longer to {rules[-1].model}"])


class LocalPlatform:
    def __init__(self, options: UpOptions) -> None:
        self.options = options

    @staticmethod
    def _wait_for(engines: list[EngineProcess]) -> float:
        """Wait for every engine (they start together), showing progress; the seconds
        it took. Raises StartError as `ChildProcess.wait_ready`."""
        started = time.monotonic()
        for ready, engine in enumerate(engines):
            def show(_: float, ready: int = ready) -> None:
                elapsed = time.monotonic() - started
                if int(elapsed) % 5 == 0:
                    print(f"\r  waiting for vLLM ({ready} of {len(engines)} ready) ... "
                          f"{elapsed:4.0f} s", end="", flush=True)
            engine.wait_ready(progress=show)
        return time.monotonic() - started

    def run(self) -> int:
        # SIGTERM (systemd, `kill`, a supervisor) must stop the children as Ctrl-C does;
        # uvicorn hands the signal back once it has shut down, and it lands here.
        signal.signal(signal.SIGTERM, _interrupt)
        # A closed terminal (SIGHUP) too: the children share its session now, and must not
        # outlive `up` (uvicorn leaves SIGHUP alone, so it lands here at once).
        signal.signal(signal.SIGHUP, _interrupt)
        opts = self.options
        print(f"llmfleet: preparing {len(opts.models)} model(s) ...", flush=True)
        try:
            specs = engine_specs(opts)
        except ValueError as exc:
            print(f"llmfleet: {exc}", file=sys.stderr)
            return 2
        # The first engine's log keeps its old name; the others are numbered.
        engines = [EngineProcess(spec, opts.run_dir / (f"vllm-{i + 1}.log" if i else "vllm.log"))
                   for i, spec in enumerate(specs)]
        cloudwatch = local_cloudwatch(opts.cloudwatch_port, opts.run_dir / "cloudwatch.log")
        agent = local_agent(opts, [spec.url for spec in specs],
                            specs[0].served_name if len(specs) == 1 else None)
        for engine in engines:
            print(f"llmfleet: starting vLLM ({engine.spec.served_name}), log in "
                  f"{engine.log_path}", flush=True)
            engine.start()
        cloudwatch.start()
        try:
            took = self._wait_for(engines)
            print(f"\r  vLLM ready after {took:.0f} s{' ' * 30}", flush=True)
            cloudwatch.wait_ready(timeout_s=60, poll_s=0.2)
            agent.start()
            agent.wait_ready(timeout_s=60, poll_s=0.2)
            return self._serve(specs)
        except StartError as exc:
            print(f"\nllmfleet: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            print("llmfleet: stopping the agent, vLLM and local CloudWatch ...", flush=True)
            agent.stop()  # first: it flushes to CloudWatch on SIGTERM
            for engine in engines:
                engine.stop()
            cloudwatch.stop()

    def _serve(self, specs: list[EngineSpec]) -> int:
        from server.app import create_app
        from server.edge import uvicorn_options
        from server.settings import PolicyName, RouterSettings

        opts = self.options
        key = os.environ.get("LLMFLEET_API_KEY") or f"sk-llmfleet-{secrets.token_urlsafe(24)}"
        # One person on one machine: per-key limits would only throttle their load tests.
        # Set LLMFLEET_RATE_LIMIT_RPM / _TPM to try the limits locally.
        limits: dict[str, Any] = {name: 0.0 for name in ("rate_limit_rpm", "rate_limit_tpm")
                  if f"LLMFLEET_{name.upper()}" not in os.environ}
        values: dict[str, Any] = dict(
            host="127.0.0.1", port=opts.port, backends=[spec.url for spec in specs],
            api_keys=[f"local:{key}"], agent_url=f"http://127.0.0.1:{opts.agent_port}", **limits)
        settings = RouterSettings.load(**values)
        names = [spec.served_name for spec in specs]
        choosing = f"the router's own settings ({settings.policy.value})"
        if settings.policy is PolicyName.PROMPT_LENGTH and not settings.length_rules:
            rules = length_rules(names)
            settings = settings.model_copy(update={"length_rules": rules})
            choosing = describe_rules(rules) if len(names) > 1 else names[0]
        app = create_app(settings)
        base = f"http://127.0.0.1:{opts.port}/v1"
        print("\n".join([
            "",
            "llmfleet is up",
            f"  endpoint : {base}",
            f"  console  : http://127.0.0.1:{opts.port}/   (paste the api key under Connection)",
            f"  models   : {', '.join(names)}",
            f"  auto     : {choosing}",
            f"  api key  : {key}",
            f"  limits   : {_limits(settings.rate_limit_rpm, settings.rate_limit_tpm)}",
            f"  agent    : http://127.0.0.1:{opts.agent_port}/health, publishing every "
            f"{opts.agent_interval_s:g} s to a local CloudWatch (moto) on port "
            f"{opts.cloudwatch_port}, priced as {opts.instance_type}",
            "",
            f"  try: curl -s {base}/chat/completions -H 'authorization: Bearer {key}' \\",
            "         -H 'content-type: application/json' \\",
            "         -d '{\"model\":\"auto\",\"messages\":"
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
