"""The router's ASGI application: routes, lifespan and wiring.

Routes are thin: they parse, call one service object and map the result.
Objects that need a running event loop (the background httpx client, the
backend pool and its health checks) are built in the lifespan hook and
closed on shutdown; nothing happens at import time.

Two HTTP clients, one per kind of use: the request path posts through
`server.upstream`'s lean pool (measured: a general client costs more CPU
than the router's features together), and everything off it (health checks,
model discovery, the console's read of the agent) shares one httpx
`AsyncClient` with explicit timeouts and limits (`_background_client`).

The routes passed to the engines (`server.protocol.Endpoint`: chat and
completions, which carry most of the traffic, responses, the pooling and
tokenizer routes) are dispatched by `HotPaths` before FastAPI's middleware
stack and router: measured, those layers cost more CPU per request than auth,
limits and metrics together (see BENCHMARKS.md). Everything else, lifespan
included, goes through FastAPI.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llmfleet.core.archive import Spool, Uploader, s3_client
from llmfleet.core.wire.drain import DRAIN_HEADER, DRAIN_HEADER_VALUE
from server import console
from server.accesslog import AccessLog
from server.accounting import Accounting
from server.archiving import Archive
from server.auth import KeyStore, guard_operator_view, is_loopback
from server.backends import BackendPool, PoolLimits
from server.drain import Drain, Draining
from server.errors import (
    APIError,
    Forbidden,
    MethodNotAllowed,
    NoHealthyBackend,
    error_response,
    install_handlers,
)
from server.fleet import FleetMonitor
from server.metrics import RouterMetrics
from server.protocol import (
    ChatRequest,
    CompletionRequest,
    Endpoint,
    PassThroughRequest,
    ResponsesRequest,
)
from server.proxy import AnswerCut, Proxy
from server.ratelimit import RateLimiter
from server.routing import RoutingPolicy, build_policy
from server.service import CompletionService
from server.settings import RouterSettings
from server.targets import TargetsFile, read_targets
from server.upstream import Timeouts

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the routes need, built once per process in the lifespan hook."""

    settings: RouterSettings
    keys: KeyStore
    metrics: RouterMetrics
    pool: BackendPool
    service: CompletionService
    limiter: RateLimiter
    fleet: FleetMonitor
    proxy: Proxy
    access_log: AccessLog
    client: httpx.AsyncClient
    drain: Drain
    archive: Archive | None

    async def start(self) -> None:
        await self.pool.start()
        await self.access_log.start()
        await self.fleet.start()
        if self.archive is not None:
            await self.archive.start()

    async def stop(self) -> None:
        await self.fleet.stop()
        await self.pool.stop()
        self.proxy.close()
        await self.access_log.stop()
        if self.archive is not None:
            await self.archive.stop()
        await self.client.aclose()


def _build_runtime(settings: RouterSettings, keys: KeyStore, metrics: RouterMetrics,
                   policy: RoutingPolicy, limiter: RateLimiter) -> Runtime:
    """Everything that needs a running event loop, wired together."""
    client = _background_client(settings)
    limits = PoolLimits(settings.max_inflight_per_backend, settings.max_queue,
                        settings.queue_timeout_s, settings.health_interval_s,
                        settings.health_timeout_s, settings.unhealthy_threshold,
                        settings.stall_after_s,
                        settings.prefix_slack if settings.prefix_routing else None,
                        settings.prefix_cache_blocks, settings.fair_queue)
    targets = None if settings.backends_file is None else TargetsFile(settings.backends_file)
    pool = BackendPool(settings.backends, client, limits, metrics, settings.backend_api_key,
                       targets, settings.peer_pools(), settings.peer_max_inflight)
    access_log = AccessLog(dropped=metrics.access_log_dropped)
    timeouts = Timeouts(settings.connect_timeout_s, settings.read_timeout_s,
                        settings.upstream_keepalive_s, settings.stream_idle_timeout_s)
    drain = Drain(metrics.draining, metrics.drain_refused)
    archive = _archive(settings, metrics, drain)
    if archive is not None:
        drain.unsealed = archive.unsealed_bytes
    accounting = Accounting(metrics, limiter, access_log, archive)
    proxy = Proxy(pool, accounting, metrics, timeouts, settings.backend_api_key)
    pool.on_removed.append(proxy.forget)
    service = CompletionService(
        keys=keys, limiter=limiter, pool=pool, proxy=proxy, accounting=accounting,
        policy=policy, metrics=metrics, alias=settings.alias_model,
        max_body_bytes=settings.max_body_bytes, default_max_tokens=settings.default_max_tokens,
        pool_name=settings.pool, prefix=settings.prefix_routing)
    fleet = FleetMonitor(metrics.registry, pool, client, interval_s=settings.console_interval_s,
                         window_s=settings.console_window_s,
                         history_s=settings.console_history_s, agent_url=settings.agent_url)
    return Runtime(settings, keys, metrics, pool, service, limiter, fleet, proxy, access_log,
                   client, drain, archive)


def _archive(settings: RouterSettings, metrics: RouterMetrics, drain: Drain) -> Archive | None:
    """The archive, when `archive_dir` is set; it sends to S3 itself when given a bucket."""
    if settings.archive_dir is None:
        return None
    spool = Spool(settings.archive_dir, settings.archive_max_bytes,
                  0o640 if settings.archive_group_readable else 0o600)
    spool.hold()  # the only writer: the agent seals nothing while this process runs
    spool.repair()  # before its first write
    uploader = None
    if settings.archive_bucket is not None:
        uploader = Uploader(settings.archive_dir, s3_client(settings.archive_region,
                                                            settings.archive_endpoint_url),
                            settings.archive_bucket, settings.archive_prefix,
                            settings.archive_host)
    return Archive(spool, settings.archive_content, metrics.archive,
                   draining=lambda: drain.draining, uploader=uploader,
                   flush_s=settings.archive_flush_s, upload_s=settings.archive_send_s,
                   segment_bytes=settings.archive_segment_bytes,
                   segment_age_s=settings.archive_segment_age_s, pool=settings.pool)


BACKGROUND_CONNECTIONS_PER_HOST = 4
# Engines a backends file may add while the router runs before health rounds share
# connections (they still run, a little slower).
FILE_HEADROOM_HOSTS = 8


def _background_client(settings: RouterSettings) -> httpx.AsyncClient:
    """The client for health checks, model discovery and the agent's /status; the request
    path uses server.upstream.

    httpx caps connections per client, not per host, so the cap is 4 for each host it
    talks to (each backend, the agent); every call to a host is sequential (one health
    round at a time, one agent read per sample), so no host can take another's share.
    Each call passes its own timeout (`server.backends.bounded_get`); the default here
    only covers a call that forgets to. No proxy or netrc from the environment: the
    engines and the agent are on the private network, and the engine key goes to them
    alone. Redirects are followed, at most 10, with the key dropped on a change of host.
    """
    engines = len(settings.backends)
    if settings.backends_file is not None:  # as many as it lists now, and room to grow
        engines = len(read_targets(settings.backends_file)) + FILE_HEADROOM_HOSTS
    hosts = engines + (settings.agent_url is not None)
    connections = BACKGROUND_CONNECTIONS_PER_HOST * hosts
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.health_timeout_s),
        limits=httpx.Limits(max_connections=connections,
                            max_keepalive_connections=connections,
                            keepalive_expiry=settings.upstream_keepalive_s),
        trust_env=False, follow_redirects=True, max_redirects=10)


class HotPaths:
    """Serve the routes passed to the engines (POST only) straight from the service."""

    ROUTES: ClassVar[dict[str, Endpoint]] = {e.value: e for e in Endpoint}

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        runtime: Runtime = self.app.state.runtime
        if scope["method"] != "POST":
            error = MethodNotAllowed(f"use POST for {endpoint.value}", allow="POST")
            await error_response(error)(scope, receive, send)
            return
        try:
            runtime.drain.admit()  # refused before the body is read once draining
        except APIError as exc:
            await error_response(exc)(scope, receive, send)
            return
        try:  # counted until answered in full, a stream to its last event, or its client left
            await self._answer(runtime, endpoint, Request(scope, receive), send)
        finally:
            runtime.drain.done()

    @staticmethod
    async def _answer(runtime: Runtime, endpoint: Endpoint, request: Request,
                      send: Send) -> None:
        try:
            response = await runtime.service.handle(endpoint, request)
        except APIError as exc:
            response = error_response(exc, getattr(request.state, "request_id", None))
        except Exception:
            # The outer edge: a bug must still answer in OpenAI's shape, and be logged.
            log.exception("unhandled error on %s", request.url.path)
            response = error_response(APIError("internal router error"),
                                      getattr(request.state, "request_id", None))
        with contextlib.suppress(AnswerCut):  # logged; the server closes the connection
            await response(request.scope, request.receive, send)


def create_app(settings: RouterSettings, registry: CollectorRegistry | None = None) -> ASGIApp:
    """Build the router app; raises ValueError for settings that cannot work."""
    keys = KeyStore.from_settings(settings.api_keys, settings.api_keys_file,
                                  settings.allow_anonymous)
    if not settings.backends and settings.backends_file is None:
        raise ValueError("no backends configured: set LLMFLEET_BACKENDS or "
                         "LLMFLEET_BACKENDS_FILE")
    if settings.backends_file is not None:
        read_targets(settings.backends_file)  # a file that cannot be used stops the start
    metrics = RouterMetrics(registry or CollectorRegistry())
    policy = build_policy(settings)
    limiter = RateLimiter(settings.rate_limit_rpm, settings.rate_limit_tpm)
    # httpx logs every request at INFO: two lines per backend per health round. A backend
    # changing state is what the router logs (server.backends).
    logging.getLogger("httpx").setLevel(logging.WARNING)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = app.state.runtime = _build_runtime(settings, keys, metrics, policy, limiter)
        await runtime.start()
        log.info("router ready", extra={"fields": {
            "backends": [b.label for b in runtime.pool.backends],
            "models": sorted(runtime.pool.models())}})
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="llmfleet router", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    install_handlers(app)
    _add_routes(app)
    if settings.console:
        console.add_routes(app)  # last: its static files answer every path left over
    return console.with_cors(HotPaths(app), settings.cors_allowed_origins)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _only_local(request: Request, *, begins: bool = False) -> None:
    """Raises: Forbidden: the request did not come from this host, or it `begins` a
    drain without the drain header."""
    if not is_loopback(request.client.host if request.client else None):
        raise Forbidden("only this instance may drain its router")
    if begins and request.headers.get(DRAIN_HEADER) != DRAIN_HEADER_VALUE:
        raise Forbidden(f"POST /drain needs the header {DRAIN_HEADER}: {DRAIN_HEADER_VALUE}")


# What /openapi.json says of each route HotPaths serves.
_DOCUMENTED: dict[Endpoint, tuple[type[BaseModel], str]] = {
    Endpoint.CHAT: (ChatRequest, "Create a chat completion"),
    Endpoint.COMPLETIONS: (CompletionRequest, "Create a completion"),
    Endpoint.RESPONSES: (ResponsesRequest, "Create a response"),
    Endpoint.EMBEDDINGS: (PassThroughRequest, "Create embeddings"),
    Endpoint.TOKENIZE: (PassThroughRequest, "Tokenize a prompt or messages"),
    Endpoint.DETOKENIZE: (PassThroughRequest, "Turn token ids back into text"),
}


def _document_hot_paths(app: FastAPI) -> None:
    """Add the routes `HotPaths` serves, which FastAPI never sees, to /openapi.json."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default()
            for endpoint in Endpoint:
                wire, summary = _DOCUMENTED.get(
                    endpoint, (PassThroughRequest, f"vLLM's {endpoint.value.lstrip('/')}"))
                body = wire.model_json_schema()
                body["additionalProperties"] = True
                body["description"] = ("The fields the router reads; every other OpenAI or "
                                       "vLLM field is forwarded to the engine untouched.")
                answer = ("The engine's answer, or a stream of server-sent events when "
                          "`stream` is true" if endpoint.generates else "The engine's answer")
                schema["paths"][endpoint.value] = {"post": {
                    "summary": summary,
                    "requestBody": {"required": True,
                                    "content": {"application/json": {"schema": body}}},
                    "responses": {"200": {"description": answer}}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_routes(app: FastAPI) -> None:
    _document_hot_paths(app)

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        rt = _runtime(request)
        rt.keys.authenticate(request.headers.get("authorization"))
        now = int(time.time())
        data = [{"id": m, "object": "model", "created": now, "owned_by": "llmfleet"}
                for m in rt.service.list_models()]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def ready(request: Request) -> Response:
        rt = _runtime(request)
        if rt.drain.draining:  # the load balancer's health check: out of rotation
            return error_response(Draining())
        # This router's own engines: what the load balancer's health check and the other
        # pools' routers ask is whether this instance serves its pool.
        status = rt.pool.ready_status()
        if status is None:
            return error_response(NoHealthyBackend("no healthy backend"))
        return JSONResponse(status.model_dump(mode="json"))

    @app.post("/drain")
    async def drain(request: Request) -> JSONResponse:
        """Begin draining (see server.drain). Only from the instance itself: the load
        balancer's requests come from its own address, never the loopback, and uvicorn
        takes X-Forwarded-For only from 127.0.0.1 (its default), so a client cannot
        claim to be local. And only with the drain header, which a web page cannot send
        without a CORS preflight (llmfleet.core.wire.drain). Answers the drain's status;
        calling it again changes nothing."""
        rt = _runtime(request)
        _only_local(request, begins=True)
        rt.drain.begin()
        return JSONResponse(rt.drain.status().model_dump(mode="json"))

    @app.get("/drain")
    async def drain_status(request: Request) -> JSONResponse:
        """Whether the router drains and how many requests it still holds."""
        rt = _runtime(request)
        _only_local(request)
        return JSONResponse(rt.drain.status().model_dump(mode="json"))

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        rt = _runtime(request)
        guard_operator_view(rt.keys, rt.settings.protect_metrics, request)
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # The outer edge: a bug must still answer in OpenAI's shape, and be logged.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        err = APIError("internal router error")
        return error_response(err, getattr(request.state, "request_id", None))
