"""The completion service: everything between the HTTP route and the proxy.

In order, cheapest refusal first: request id, API key, body size, body
validation, model resolution (alias through the routing policy, unknown
models refused), per-key limits, then the proxy. Requests refused here never
touch an engine; requests refused after admission are still recorded.

A request a peer pool's router sent on (it carries `POOL_HEADER`) is served by this
router's own engines or refused, never sent on again: one hop at most. When the model
the policy chose for the alias cannot be reached (its engines or its pool down, or its
pool refusing work) before any byte was answered, the policy chooses again among the
models left (`reroute`): `auto` degrades to another model rather than failing.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from dataclasses import replace

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from llmfleet.core.wire.pools import POOL_HEADER
from server.accounting import NO_MODEL, Accounting, Exchange
from server.auth import KeyStore
from server.backends import BackendPool
from server.errors import (
    APIError,
    BodyIncomplete,
    BodyTooLarge,
    InvalidRequest,
    ModelNotFound,
    NoHealthyBackend,
)
from server.metrics import RouterMetrics
from server.outcome import CLIENT_CLOSED, Outcome
from server.protocol import (
    WEIGHTS_HEADER,
    Endpoint,
    ParsedRequest,
    parse_request,
    parse_route_weights,
    with_model,
)
from server.proxy import Proxy
from server.ratelimit import RateLimiter
from server.routing import RoutingPolicy

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Minted ids: a random per-process prefix and a counter, unique across a fleet's
# processes without a urandom call per request. They identify, they do not authorise.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def mint_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def request_id_for(request: Request) -> tuple[str, bool]:
    """The caller's sane `x-request-id` for end-to-end tracing, else a minted one;
    and whether it was minted here (and so is unique)."""
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given, False
    return mint_request_id(), True


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body.

    Raises:
        BodyTooLarge: before buffering more than `limit` bytes.
        BodyIncomplete: the client left, or the edge timed the body out.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body over the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise BodyIncomplete("the request body did not arrive in time") from exc
    return b"".join(chunks)


class CompletionService:
    """Authenticates, validates, routes and limits, then hands over to the proxy."""

    def __init__(self, *, keys: KeyStore, limiter: RateLimiter, pool: BackendPool,
                 proxy: Proxy, accounting: Accounting, policy: RoutingPolicy,
                 metrics: RouterMetrics,
                 alias: str, max_body_bytes: int, default_max_tokens: int,
                 pool_name: str | None = None, prefix: bool = False) -> None:
        self._keys = keys
        self._limiter = limiter
        self._pool = pool
        self._proxy = proxy
        self._accounting = accounting
        self._policy = policy
        self._metrics = metrics
        self._alias = alias
        self._max_body = max_body_bytes
        self._default_max_tokens = default_max_tokens
        self._pool_name = pool_name
        self._prefix = prefix  # hash prompts' blocks for cache-aware balancing

    async def handle(self, endpoint: Endpoint, request: Request) -> Response:
        request.state.request_id, minted = request_id_for(request)
        ex = await self._admit(endpoint, request, minted)
        try:
            if ex.request.stream:  # StreamingResponse itself stops on a disconnect
                return await self._proxy.forward(ex, self.reroute)
            return await self._forward_until_disconnect(request, ex)
        except APIError as exc:
            if exc.code == "server_overloaded":
                self._metrics.rate_limited.labels("queue_full").inc()
            self._accounting.finish(ex, Outcome.failed(exc))
            raise

    async def _admit(self, endpoint: Endpoint, request: Request, minted: bool) -> Exchange:
        """Everything before the engine; refusals are counted and logged here.

        Raises:
            APIError: authentication, validation, model or limit refusals.
        """
        started = time.perf_counter()
        key_id: str | None = None
        named: str | None = None  # the model the client asked for, once parsed
        model: str | None = None  # the served model it resolved to
        credentials = request.headers.get("authorization")
        try:
            hop = self._hop(request.headers.get(POOL_HEADER))
            key_id = self._keys.authenticate(credentials)
            # Hashed only where there is a choice to make: not behind a router with one
            # engine, which is every instance in the cloud.
            parsed = parse_request(endpoint, await read_body(request, self._max_body),
                                   self._prefix and self._pool.several_engines())
            if (weights := request.headers.get(WEIGHTS_HEADER)) is not None:
                parsed = replace(parsed, weights=parse_route_weights(weights))
            named = parsed.model
            model, reason = self.resolve(parsed, local_only=hop)
            if model != parsed.model:
                parsed = with_model(parsed, model)
            tokens = self._worst_case_tokens(parsed, model)
            try:
                reservation = self._limiter.reserve(key_id, tokens,
                                                    parsed.endpoint.generates)
            except APIError:
                self._metrics.rate_limited.labels("key_limit").inc()
                raise
        except APIError as exc:
            # The label is worked out only for refusals, off the path of served requests.
            label = model or (self._label(named) if named is not None else NO_MODEL)
            self._accounting.refused(request.state.request_id, key_id, label, exc, started,
                                     endpoint)
            raise
        request_id: str = request.state.request_id
        # The engine adopts x-request-id as its own id (and builds the answer's "id"
        # from it), so it always gets a unique one, even when a caller reuses theirs.
        engine_id = request_id if minted else mint_request_id()
        return Exchange(parsed, request_id, key_id, model, reservation, started=started,
                        route_reason=reason, engine_request_id=engine_id, hop=hop,
                        credentials=credentials, weight=self._keys.weight(key_id),
                        answer=[] if self._accounting.keeps_answer(parsed.endpoint) else None)

    def _hop(self, pool: str | None) -> bool:
        """Whether a peer pool's router sent the request on (it names a pool).

        Raises:
            InvalidRequest: it names another pool than this router's: the load balancer
                between pools routes on the header, so only a client can have sent it here.
        """
        if pool is None:
            return False
        if self._pool_name is not None and pool != self._pool_name:
            raise InvalidRequest(f"{POOL_HEADER} names pool {pool!r}; this router serves pool "
                                 f"{self._pool_name!r} (the header is for routers of one "
                                 "deployment: leave it out)", param=POOL_HEADER)
        return True

    def _worst_case_tokens(self, parsed: ParsedRequest, model: str) -> int:
        """What a request may use at most: reserved up front, settled at its end.

        Without max_tokens an engine generates up to the context length, so that is
        reserved when the engine says it (vLLM's max_model_len); each of `n` or
        `best_of` sequences may use as much.
        """
        if not parsed.endpoint.metered:
            return 0
        if not parsed.endpoint.generates:
            return parsed.prompt_tokens_estimate
        completion = parsed.max_tokens
        if completion is None:
            context = self._pool.context_length(model)
            completion = (max(context - parsed.prompt_tokens_estimate, 1) if context
                          else self._default_max_tokens)
        return parsed.prompt_tokens_estimate + completion * parsed.sequences

    def _label(self, model: str) -> str:
        """The model as a metric label: only names some backend serves stay bounded."""
        if model == self._alias or any(model in b.models for b in self._pool.backends):
            return model
        return NO_MODEL

    async def _forward_until_disconnect(self, request: Request, ex: Exchange) -> Response:
        """Forward a non-streamed request, abandoning it if the client hangs up.

        The body is read, so the next ASGI message can only be the disconnect. A
        generation nobody waits for any more is cancelled rather than paid for.
        """
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await request.receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.create_task(watch())
        try:
            return await self._proxy.forward(ex, self.reroute)
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()
            self._accounting.finish(ex, Outcome.client_left(CLIENT_CLOSED))
            return Response(status_code=CLIENT_CLOSED)  # nobody is listening
        finally:
            watcher.cancel()

    def resolve(self, parsed: ParsedRequest,
                local_only: bool = False) -> tuple[str, str | None]:
        """The concrete model for a request, and the policy's reason when it chose
        (`local_only`: among this router's own engines' models).

        Raises:
            ModelNotFound: no backend has ever served the model.
            NoHealthyBackend: the model is known but all its backends are down.
        """
        available = self._pool.models(local_only)
        if not parsed.model:
            return self._only_model(parsed, available), None
        if parsed.model == self._alias and not parsed.endpoint.generates:
            raise InvalidRequest(f"'{self._alias}' chooses among models that generate, for "
                                 "chat, completions and responses: name the model for "
                                 f"{parsed.endpoint.value}", param="model")
        if parsed.model == self._alias:
            decision = self._policy.choose(parsed, available)
            self._metrics.routed.labels(self._policy.name.value, decision.model).inc()
            return decision.model, decision.reason
        if parsed.model in available:
            return parsed.model, None
        if any(parsed.model in b.models for b in self._pool.backends):
            raise NoHealthyBackend(f"no healthy backend serves model '{parsed.model}'")
        raise ModelNotFound(f"the model '{parsed.model}' does not exist", param="model")

    def _only_model(self, parsed: ParsedRequest, available: frozenset[str]) -> str:
        """The model of a request that left it out (every route but chat and completions
        may, as with vLLM): the one this router serves.

        Raises:
            InvalidRequest: it serves several.
            NoHealthyBackend: it serves none now.
        """
        known = {m for b in self._pool.backends for m in b.models}
        if len(known) > 1:
            raise InvalidRequest(f"model is required on {parsed.endpoint.value}: this router "
                                 f"serves {', '.join(sorted(known))}", param="model")
        if not available:
            raise NoHealthyBackend("no healthy backend")
        return next(iter(available))

    def reroute(self, ex: Exchange, failed: str) -> bool:
        """Choose again for an alias request whose model `failed` before answering: the
        policy among the models still served, `failed` left out. Whether it chose one
        (`ex` then carries it); a request that named its model keeps it."""
        if ex.route_reason is None:
            return False
        available = self._pool.models(ex.hop) - {failed}
        try:
            decision = self._policy.choose(ex.request, available)
        except NoHealthyBackend:
            return False
        self._metrics.routed.labels(self._policy.name.value, decision.model).inc()
        ex.request = with_model(ex.request, decision.model)
        ex.model = decision.model
        ex.route_reason = f"{decision.reason}; {failed} unavailable"
        return True

    def list_models(self) -> list[str]:
        models = sorted(self._pool.models())
        if models:
            models.append(self._alias)
        return models
