"""Locust load test for any OpenAI-compatible endpoint (our router, or vLLM directly).

    locust -f loadtest/locustfile.py --headless -u 16 -r 4 -t 60s \\
        --host http://127.0.0.1:8000 --api-key "$KEY" --workload lognormal:256:128 \\
        --sla 'ttft_p95_ms<=1000,error_rate<=0.01' --summary-json summary.json

Four scenarios, picked by naming their classes after the options (all four,
equally weighted, when none is named): `StreamingChatUser`, `ChatUser`,
`StreamingCompletionUser`, `CompletionUser`. Every option also reads from the
environment (`LOCUST_API_KEY`, `LOCUST_WORKLOAD`, ...); the key falls back to
`OPENAI_API_KEY`. Nothing is read at import: Locust parses the options first.

Locust's own entry for a stream stops its clock when the headers arrive, so
each finished request also records `TTFT`, `TPOT` and `E2E` entries of its
own. Exact samples and token counts go to the summary (see
`loadtest.results`), which is printed at the end with the SLA verdict; a
missed SLA or a failed preflight makes the exit code non-zero.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import weakref
from pathlib import Path
from typing import Any, ClassVar

import gevent
import urllib3
from locust import FastHttpUser, LoadTestShape, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.user.wait_time import constant_throughput

from llmfleet.core.net import blocking_pool
from loadtest import shapes, sla, workload
from loadtest.results import Recorder
from loadtest.stream import (
    Api,
    ResponseError,
    StreamReader,
    listed_models,
    read_body,
    request_body,
)

log = logging.getLogger("llmfleet.load")
EXIT_SLA_MISSED = 1
EXIT_SETUP = 2


class RunState:
    """What one Locust process resolved from its options at test start."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.workload = workload.parse(options.workload)
        self.checks = sla.parse(options.sla)
        self.api_key: str = options.api_key or os.environ.get("OPENAI_API_KEY", "")
        self.model: str = options.model
        self.extra_body = _extra_body(options.extra_body)
        self.recorder = Recorder()
        self.watcher: Any = None  # the greenlet timing this process's own event-loop lag
        self.rng = random.Random(options.seed)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class OptionError(ValueError):
    pass


def _extra_body(text: str) -> dict[str, object]:
    try:
        extra = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise OptionError(f"--extra-body is not JSON: {exc.msg}") from exc
    if not isinstance(extra, dict):
        raise OptionError("--extra-body must be a JSON object")
    return extra


_states: weakref.WeakKeyDictionary[Environment, RunState] = weakref.WeakKeyDictionary()


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument("--api-key", env_var="LOCUST_API_KEY", default="", is_secret=True,
                        help="API key sent as a bearer token (default: $OPENAI_API_KEY)")
    parser.add_argument("--model", env_var="LOCUST_MODEL", default="",
                        help="model to ask for (default: the first one /v1/models lists)")
    parser.add_argument("--workload", env_var="LOCUST_WORKLOAD", default="fixed:128:64",
                        help="fixed:IN:OUT, lognormal:IN:OUT[:SIGMA] or file:PATH.jsonl")
    parser.add_argument("--shape", env_var="LOCUST_SHAPE", default="constant",
                        help=f"load shape up to -u users: {shapes.FORMS}")
    parser.add_argument("--rate", env_var="LOCUST_RATE", type=float, default=0.0,
                        help="target requests/s at the peak user count (0: each user sends "
                             "its next request as soon as the last one finished)")
    parser.add_argument("--ignore-eos", env_var="LOCUST_IGNORE_EOS", action="store_true",
                        default=False, help="ask for exactly max_tokens (a vLLM extension)")
    parser.add_argument("--extra-body", env_var="LOCUST_EXTRA_BODY", default="",
                        help="JSON object merged into every request body, e.g. "
                             "'{\"temperature\": 0}'")
    parser.add_argument("--sla", env_var="LOCUST_SLA", default="",
                        help="checks such as 'ttft_p95_ms<=500,error_rate<=0.01'; missed: exit 1")
    parser.add_argument("--summary-json", env_var="LOCUST_SUMMARY_JSON", default="",
                        help="also write the summary here")
    parser.add_argument("--seed", env_var="LOCUST_SEED", type=int, default=None,
                        help="workload sampling seed")


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        environment.events.report_to_master.add_listener(
            lambda client_id, data: _report(environment, data))
    if isinstance(environment.runner, MasterRunner):
        environment.events.worker_report.add_listener(
            lambda client_id, data: _merge_report(environment, data))
    if environment.parsed_options is not None:
        _start_state(environment)  # bad options fail now, not in every user


def _start_state(environment: Environment) -> RunState | None:
    try:
        state = _states[environment] = RunState(environment.parsed_options)
    except (workload.WorkloadError, sla.SlaError, shapes.ShapeError, OptionError) as exc:
        _abort(environment, str(exc))
        return None
    return state


def _abort(environment: Environment, message: str) -> None:
    log.error("llmfleet: %s", message)
    environment.process_exit_code = EXIT_SETUP
    if environment.runner is not None:
        gevent.spawn_later(0, environment.runner.quit)


@events.test_start.add_listener
def _preflight(environment: Environment, **_: Any) -> None:
    """Fresh state from the options (a worker's come from the master), then check host,
    key and model once before the load starts; stop with a clear error."""
    state = _start_state(environment)
    if state is None or isinstance(environment.runner, MasterRunner):
        return
    state.watcher = gevent.spawn(_watch_loop, state.recorder)
    if not environment.host:
        _abort(environment, "no host: pass --host http://HOST:PORT (or set LOCUST_HOST)")
        return
    try:
        models = _list_models(environment.host, state.headers())
    except ResponseError as exc:
        _abort(environment, str(exc))
        return
    if not state.model:
        state.model = models[0]
    elif state.model not in models and state.model != "auto":
        log.warning("llmfleet: %s does not list model %r (it lists %s)",
                    environment.host, state.model, ", ".join(models))


LAG_PROBE_S = 0.1


def _watch_loop(recorder: Recorder) -> None:
    """Sleep 100 ms again and again; how late each wake-up comes is this process's own
    queueing, which every latency it measures includes."""
    while True:
        started = time.perf_counter()
        gevent.sleep(LAG_PROBE_S)
        recorder.lag(max(time.perf_counter() - started - LAG_PROBE_S, 0.0))


@events.test_stop.add_listener
def _stop_watching(environment: Environment, **_: Any) -> None:
    state = _states.get(environment)
    if state is not None and state.watcher is not None:
        state.watcher.kill(block=False)


# The preflight's one request (a `blocking_pool`: Locust's own client belongs to its
# users): 10 s to connect and for each read, no retries, redirects followed (urllib3
# drops the key on a change of host), the listing capped.
PREFLIGHT_TIMEOUT_S = 10.0
MAX_LISTING_BYTES = 1 << 20


def _list_models(host: str, headers: dict[str, str]) -> list[str]:
    """Raises ResponseError: unreachable, refused, or no models (see `listed_models`)."""
    url = host.rstrip("/") + "/v1/models"
    http = blocking_pool(PREFLIGHT_TIMEOUT_S)
    try:
        resp = http.request("GET", url, headers=headers, preload_content=False)
        status = resp.status
        body = resp.read(MAX_LISTING_BYTES + 1) if status == 200 else b""
        resp.close()
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ResponseError(f"cannot reach {url}: {_reason(exc)}") from exc
    finally:
        http.clear()
    if len(body) > MAX_LISTING_BYTES:
        raise ResponseError(f"{url} answered more than {MAX_LISTING_BYTES} bytes")
    return listed_models(url, status, body, "check --api-key")


def _reason(exc: BaseException) -> BaseException:
    """The system's words where there are some ("[Errno 111] Connection refused"), not
    urllib3's wrapping of them."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    inner = exc.__context__
    return inner if isinstance(inner, OSError) else exc


def _report(environment: Environment, data: dict[str, Any]) -> None:
    if (state := _states.get(environment)) is not None:
        data["llmfleet"] = state.recorder.drain()


def _merge_report(environment: Environment, data: dict[str, Any]) -> None:
    if (state := _states.get(environment)) is not None and "llmfleet" in data:
        state.recorder.merge(data["llmfleet"])


@events.quitting.add_listener
def _summarise(environment: Environment, **_: Any) -> None:
    state = _states.get(environment)
    if state is None or isinstance(environment.runner, WorkerRunner):
        return
    if environment.process_exit_code == EXIT_SETUP:
        return
    summary = state.recorder.summary()
    verdict = sla.evaluate(state.checks, summary.values())
    lines = ["", "llmfleet load test summary", summary.render()]
    if state.checks:
        lines.append(f"SLA {'met' if verdict.met else 'MISSED'}: "
                     + ", ".join(f"{r.check} ({'ok' if r.ok else 'missed'}: "
                                 f"{'-' if r.value is None else f'{r.value:.4g}'})"
                                 for r in verdict.results))
    print("\n".join(lines), flush=True)
    if state.options.summary_json:
        path = Path(state.options.summary_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(summary.to_json())
    # The SLA decides the exit code; without one, Locust's rule (any failure: 1) stands.
    if state.checks:
        environment.process_exit_code = 0 if verdict.met else EXIT_SLA_MISSED


class ConfiguredShape(LoadTestShape):
    """The shape `--shape` names, peaking at `-u` users (see `loadtest.shapes`)."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._shape: shapes.Shape | None = None

    def tick(self) -> tuple[int, float] | None:
        if self.runner is None or self.runner.environment.parsed_options is None:
            return None
        options = self.runner.environment.parsed_options
        if self._shape is None:
            try:
                self._shape = shapes.parse(options.shape, options.num_users or 1,
                                           options.spawn_rate or 0)
            except shapes.ShapeError as exc:
                _abort(self.runner.environment, str(exc))
                return None
        elapsed = self.get_run_time()
        if options.run_time and elapsed >= options.run_time:
            return None  # with a shape, Locust leaves -t to the shape
        return self._shape.users_at(elapsed), self._shape.spawn_rate()


class OpenAIUser(FastHttpUser):
    """One simulated client sending `api` requests, streamed or not."""

    abstract = True
    api: ClassVar[Api] = Api.CHAT
    stream: ClassVar[bool] = True
    # A stream of hundreds of tokens can take minutes on a loaded engine.
    network_timeout = 600.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.retry_at = 0.0

    def wait_time(self) -> float:
        state = _states.get(self.environment)
        delay = 0.0
        if state is not None and state.options.rate > 0:
            per_user = state.options.rate / max(state.options.num_users or 1, 1)
            delay = constant_throughput(per_user)(self)
        # After a 429 wait as told, as real clients do, rather than spin on refusals.
        return max(delay, self.retry_at - time.monotonic())

    @task
    def send(self) -> None:
        state = _states.get(self.environment)
        if state is None or not state.model:
            return  # preflight failed; the runner is stopping
        request = state.workload.sample(state.rng)
        body = request_body(request, self.api, state.model, stream=self.stream,
                            ignore_eos=state.options.ignore_eos, extra=state.extra_body)
        scenario = f"{self.api.value} {'stream' if self.stream else 'json'}"
        sent_wall, sent = time.time(), time.perf_counter()
        with self.client.post(self.api.path, json=body, headers=state.headers(),
                              name=f"{self.api.path} ({'stream' if self.stream else 'json'})",
                              stream=self.stream, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {_error_text(resp)}")
                if resp.status_code == 429:
                    self.retry_at = time.monotonic() + _retry_after(resp)
                state.recorder.fail(sent_wall, time.time())
                return
            try:
                outcome = self._read(resp, sent)
            except Exception as exc:  # mid-stream: headers were fine, anything can break now
                resp.failure(f"{type(exc).__name__}: {exc}")
                state.recorder.fail(sent_wall, time.time())
                return
        state.recorder.add(outcome, sent_wall)
        self._entry("E2E", scenario, outcome.e2e_s)
        if outcome.ttft_s is not None:
            self._entry("TTFT", scenario, outcome.ttft_s)
        if (tpot := outcome.tpot_s) is not None:
            self._entry("TPOT", scenario, tpot)

    def _read(self, resp: Any, sent: float) -> Any:
        if not self.stream:
            return read_body(resp.content or b"", time.perf_counter() - sent)
        reader = StreamReader(self.api, sent)
        # geventhttpclient's read(n) waits for n bytes; readline returns each SSE line
        # as it arrives, which is what TTFT and TPOT need.
        raw = resp._response
        while line := raw.readline(b"\n"):
            reader.line(line, time.perf_counter())
        return reader.outcome(time.perf_counter())

    def _entry(self, kind: str, scenario: str, seconds: float) -> None:
        self.environment.events.request.fire(
            request_type=kind, name=scenario, response_time=seconds * 1000,
            response_length=0, exception=None, context={})


def _retry_after(resp: Any) -> float:
    """Seconds a 429 asks to wait (Retry-After in seconds), 1 s when absent, at most 30 s."""
    try:
        return min(max(float((resp.headers or {}).get("retry-after", 1)), 0.0), 30.0)
    except (TypeError, ValueError):
        return 1.0


def _error_text(resp: Any) -> str:
    try:
        text = resp.text or ""
    except Exception:  # the body of a failed response is best effort only
        return "(no body)"
    try:
        return str(json.loads(text)["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return text[:200]


class StreamingChatUser(OpenAIUser):
    api = Api.CHAT
    stream = True


class ChatUser(OpenAIUser):
    api = Api.CHAT
    stream = False


class StreamingCompletionUser(OpenAIUser):
    api = Api.COMPLETIONS
    stream = True


class CompletionUser(OpenAIUser):
    api = Api.COMPLETIONS
    stream = False
