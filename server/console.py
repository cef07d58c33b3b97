"""The web console: its static page, the JSON it reads, and CORS for a page served elsewhere.

The page (`server/web/`: HTML, CSS and plain JavaScript, no build step) is
served at `/`, and the same files are what the demo module uploads to S3 for
CloudFront. It reads two small endpoints besides the OpenAI API:

- `GET /console/fleet`: this router's live figures (`server.fleet`), protected
  like `/metrics` (by default a key from any client off loopback).
- `GET /console/plan` (the catalogue to choose from) and `POST /console/plan`
  (the sizing planner's ranking for a question). Always behind a key and the
  key's request limit: a search costs milliseconds of CPU, and the router's
  CPU belongs to completions. Models are looked up in the catalogue only: the
  planner's CLI also reads config.json paths, which a web caller must not name.

A page from another origin (the demo site on CloudFront calling API Gateway)
may call the API only from `cors_allowed_origins`; keys travel in headers,
never cookies, so no credentials mode is allowed.
"""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path
from typing import ClassVar

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmfleet.core.instances import Market
from llmfleet.core.wire.sizing import SizingAnswer
from planner import catalog, report
from planner.catalog import CatalogError
from planner.memory import Precision
from planner.sizing import SEARCHED_PRECISIONS, Question, Slo, search
from server.auth import guard_operator_view
from server.errors import (
    APIError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    error_response,
)
from server.fleet import FleetMonitor
from server.protocol import parse_wire
from server.service import read_body

WEB_DIR = Path(str(files("server") / "web"))
# What a page may send and read across origins: the OpenAI client's headers, API
# Gateway's key, the routing weights; the route explanation and limits back.
CORS_REQUEST_HEADERS = ["authorization", "content-type", "x-api-key", "x-llmfleet-weights",
                        "x-request-id", "openai-organization", "openai-project"]
CORS_EXPOSED_HEADERS = ["x-request-id", "x-llmfleet-model", "x-llmfleet-route", "retry-after"]
MAX_PLAN_BODY_BYTES = 16 * 1024  # a question is a few hundred bytes


class PlanRequest(BaseModel):
    """The sizing explorer's question (`llmfleet plan`'s options, by their JSON names)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    input_len: int = Field(default=512, gt=0, le=1_048_576)
    output_len: int = Field(default=256, gt=0, le=1_048_576)
    ttft_ms: float | None = Field(default=None, gt=0)
    tpot_ms: float | None = Field(default=None, gt=0)
    rate: float | None = Field(default=None, gt=0, le=1e6, description="requests/s")
    market: Market = Market.ON_DEMAND
    precision: Precision | None = None
    kv_offload: bool = False
    limit: int = Field(default=60, gt=0, le=1000, description="candidates returned")

    def question(self) -> Question:
        """Raises InvalidRequest for a model the catalogue does not know."""
        try:
            arch = catalog.named(self.model)
        except CatalogError as exc:
            raise InvalidRequest(str(exc), param="model") from exc
        return Question(arch=arch, input_len=self.input_len, output_len=self.output_len,
                        slo=Slo(self.ttft_ms, self.tpot_ms), request_rate=self.rate,
                        market=self.market, offload=self.kv_offload,
                        precisions=(self.precision,) if self.precision else SEARCHED_PRECISIONS)


def answer_plan(request: PlanRequest) -> SizingAnswer:
    """The planner's ranking, cut to `limit` candidates (the recommendation first)."""
    q = request.question()
    started = time.perf_counter()
    ranked = search(q)
    answer = report.answer(q, ranked, time.perf_counter() - started, q.arch.hf_id or q.arch.name)
    return answer.first(request.limit)


def add_routes(app: FastAPI) -> None:
    """The console's JSON endpoints, then its static files at `/` (matched last)."""

    @app.get("/console/fleet")
    async def fleet(request: Request) -> JSONResponse:
        runtime = request.app.state.runtime
        guard_operator_view(runtime.keys, runtime.settings.protect_metrics, request)
        monitor: FleetMonitor = runtime.fleet
        return JSONResponse(monitor.view())

    @app.get("/console/plan")
    async def plan_options(request: Request) -> JSONResponse:
        request.app.state.runtime.keys.authenticate(request.headers.get("authorization"))
        return JSONResponse({"models": catalog.names(), "markets": [m.value for m in Market],
                             "precisions": [p.value for p in SEARCHED_PRECISIONS]})

    @app.post("/console/plan", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PlanRequest.model_json_schema()}}}})
    async def plan(request: Request) -> JSONResponse:
        # The key first, then at most a small body: nobody unauthenticated makes the
        # router buffer or parse anything.
        runtime = request.app.state.runtime
        key_id = runtime.keys.authenticate(request.headers.get("authorization"))
        question = parse_wire(PlanRequest, await read_body(request, MAX_PLAN_BODY_BYTES))
        runtime.limiter.reserve(key_id, 0)  # one request against the key's limit
        answer = await run_in_threadpool(answer_plan, question)
        return JSONResponse(answer.model_dump(mode="json"))

    @app.get("/config.json")
    async def config() -> JSONResponse:
        # The page's settings: served here, the API is this origin. The demo module
        # uploads its own config.json naming the API Gateway URL instead.
        return JSONResponse({"api_base": ""})

    app.mount("/", FramingRefused(OnlyItsFiles(StaticFiles(directory=WEB_DIR, html=True))),
              name="console")


class OnlyItsFiles:
    """The static files answer every path no route took: a path that is none of theirs
    is a 404 in OpenAI's shape whatever the method (StaticFiles answers 405 to any POST,
    so a client calling a route the router does not serve read "method not allowed")."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.files = {"/" + p.relative_to(WEB_DIR).as_posix()
                      for p in WEB_DIR.rglob("*") if p.is_file()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "/")
        if scope["method"] in ("GET", "HEAD") or path == "/" or path in self.files:
            await self.app(scope, receive, send)
            return
        error: APIError = NotFound(f"no route for {scope['method']} {path}")
        for route in scope["app"].router.routes:  # a route of another method: 405
            if isinstance(route, Route) and route.matches(scope)[0] is Match.PARTIAL:
                error = MethodNotAllowed(f"method {scope['method']} not allowed here",
                                         allow=", ".join(sorted(route.methods or ())))
                break
        await error_response(error)(scope, receive, send)


class FramingRefused:
    """Send the page's framing rule as a header: a meta CSP cannot set frame-ancestors,
    and a console inside another site's frame can be clickjacked into using a pasted key."""

    HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"content-security-policy", b"frame-ancestors 'none'"),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def with_cors(app: ASGIApp, origins: list[str]) -> ASGIApp:
    """Wrap the whole app (the hot paths included) when origins are configured."""
    if not origins:
        return app
    return CORSMiddleware(app, allow_origins=origins, allow_methods=["GET", "POST"],
                          allow_headers=CORS_REQUEST_HEADERS,
                          expose_headers=CORS_EXPOSED_HEADERS, allow_credentials=False,
                          max_age=600)
