"""The pool of vLLM backends: discovery, health, balancing and admission.

Each backend's served models are learnt from its `/v1/models`. Health is
checked actively (`/health` every `health_interval_s`; `unhealthy_threshold`
consecutive failures take a backend out, one success brings it back) and
passively: a refused connection on the request path ejects it at once. The
threshold matters: a busy engine can miss one health check while serving
well, and ejecting the only backend on that would turn a hiccup into a
stretch of 503s (it did, in the router benchmark). Requests for a model go to the healthy
backend serving it with the fewest outstanding requests. Each backend admits
at most `max_inflight_per_backend` requests; beyond that up to `max_queue`
requests wait (at most `queue_timeout_s`) and the rest are shed with 503 at
once, so a burst costs bounded memory and gets a fast answer.

The backends are fixed (`LLMFLEET_BACKENDS`) or listed in a file read again at every
health round (`server.targets`): a backend the file no longer lists drains (no new
requests; it leaves the pool when its last one ends), one it adds joins when healthy.

Other pools of the deployment (`LLMFLEET_PEERS`, `llmfleet.core.wire.pools`) are backends
too, one per pool: what a peer serves is learnt from its `/ready` (its own engines only),
each request to it names the pool in `POOL_HEADER`, and it may hold `peer_max_inflight`
requests (it stands for a pool of routers that queue and shed for themselves). A request
that came from a peer (`local_only`) goes to this router's own engines or nowhere.

Health checks and discovery use the router's background httpx client (built
in the lifespan hook, `server.app`), never the request path's pool. Each call
is bounded in time as a whole (`health_timeout_s`, body included) and in
size (`read_capped`); bodies are read as sent, undecoded. Failures are
described by kind and status only (`describe`): an HTTP library's exception
carries the request, and with it the engine key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client import Gauge
from pydantic import BaseModel, Field

from llmfleet.core.wire.pools import POOL_HEADER, ReadyStatus
from server.errors import NoHealthyBackend, Overloaded
from server.fairqueue import FairQueue, Waiter
from server.metrics import RouterMetrics
from server.periodic import Periodic
from server.prefix import DEFAULT_CAPACITY, PrefixIndex, choose
from server.targets import TargetsFile

log = logging.getLogger(__name__)

MAX_LISTING_BYTES = 1 << 20  # a /v1/models or /health answer; vLLM's are a few hundred bytes


class ListedModel(BaseModel):
    id: str = Field(min_length=1, max_length=512)
    max_model_len: int | None = Field(default=None, gt=0)


class ModelList(BaseModel):
    """The part of an engine's `/v1/models` answer the pool reads; anything else is a
    failed check, never an exception that escapes the health loop."""

    data: list[ListedModel] = Field(max_length=1024)


@contextlib.asynccontextmanager
async def bounded_get(client: httpx.AsyncClient, url: str, timeout_s: float,
                      headers: Mapping[str, str] | None = None
                      ) -> AsyncIterator[httpx.Response]:
    """GET `url` as a stream; the whole exchange, the body read inside included, must end
    within `timeout_s` (httpx's own timeouts bound each wait, not the total).

    Raises:
        httpx.HTTPStatusError: an answer of 400 or more.
        httpx.HTTPError: no connection, a dropped one, or too many redirects.
        TimeoutError: not done within `timeout_s`.
    """
    async with asyncio.timeout(timeout_s), \
            client.stream("GET", url, headers=headers, timeout=timeout_s) as resp:
        if resp.status_code >= 400:  # raise_for_status alone would refuse any 3xx too
            resp.raise_for_status()
        yield resp


async def read_capped(resp: httpx.Response, limit: int) -> bytes:
    """The body as sent (not decompressed), or ValueError past `limit` bytes (read no
    further than that)."""
    parts, size = [], 0
    async for chunk in resp.aiter_raw(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ValueError(f"answer over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _refused(exc: BaseException | None) -> bool:
    """Whether a failed connection was refused: httpx wraps the OSError, and every address
    tried (an ExceptionGroup when a name had several) must have refused."""
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError):
            return True
        if isinstance(exc, BaseExceptionGroup):
            return all(_refused(inner) for inner in exc.exceptions)
        exc = exc.__cause__ or exc.__context__
    return False


def describe(exc: BaseException, answer: str = "/v1/models") -> str:
    """What went wrong, in words safe to show: the kind and the status, never `repr(exc)`
    or `str(exc)`. An HTTP library's errors carry the request, headers and engine key
    included (one client printed them, and the key reached the fleet view and the log).
    `answer` names what was read, for a body that did not parse."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if _refused(exc) else "cannot connect"
    if isinstance(exc, ValueError):  # pydantic's ValidationError included
        return f"unexpected {answer} answer"
    return type(exc).__name__


@dataclass(eq=False)
class Backend:
    url: str
    models: frozenset[str] = frozenset()
    # Each model's context length where the engine says it (vLLM's `max_model_len`).
    context: dict[str, int] = field(default_factory=dict, repr=False)
    healthy: bool = False
    outstanding: int = 0
    last_error: str | None = field(default=None, repr=False)
    failed_checks: int = 0
    in_flight: Gauge | None = field(default=None, repr=False)
    # Streams relaying tokens right now, and when any of them last brought data.
    streams: int = 0
    last_progress: float = 0.0
    # Deregistered (the backends file no longer lists it): no new requests.
    draining: bool = False
    # A peer pool's name; None for one of this router's own engines.
    pool: str | None = None
    # The prompt blocks last sent to it, for cache-aware balancing (server.prefix).
    prefixes: PrefixIndex = field(default_factory=PrefixIndex, repr=False)

    @property
    def label(self) -> str:
        """Its name in metrics, logs and views: the URL, or the peer pool's name (every
        peer may share one load balancer's URL)."""
        return self.url if self.pool is None else f"pool:{self.pool}"

    @property
    def serving(self) -> bool:
        """Whether it takes new requests: healthy and not draining."""
        return self.healthy and not self.draining

    def stalled(self, now: float, after_s: float) -> bool:
        """Every stream it is relaying has been silent for `after_s`: the engine has
        stopped (a hung process, a stuck GPU) although it still accepts connections. Never
        a peer pool: one silent stream there is one of its instances, which its own
        routers take out."""
        return self.pool is None and self.streams > 0 and now - self.last_progress > after_s


@dataclass(frozen=True)
class PoolLimits:
    max_inflight: int
    max_queue: int
    queue_timeout_s: float
    health_interval_s: float
    health_timeout_s: float
    unhealthy_threshold: int = 3
    stall_after_s: float = 10.0
    # Cache-aware balancing (server.prefix): off with None, else the load guard's slack;
    # and the prompt blocks each engine is assumed to hold.
    prefix_slack: int | None = None
    prefix_blocks: int = DEFAULT_CAPACITY
    # The queue served fairly between keys (server.fairqueue), else in arrival order.
    fair_queue: bool = True


class BackendPool:
    """Healthy-backend bookkeeping and least-outstanding selection."""

    def __init__(self, urls: Iterable[str], client: httpx.AsyncClient,
                 limits: PoolLimits, metrics: RouterMetrics,
                 api_key: str | None = None, targets: TargetsFile | None = None,
                 peers: Mapping[str, str] | None = None, peer_max_inflight: int = 256) -> None:
        """`client` is for health checks and discovery only; its owner closes it. With
        `targets`, the file's URLs are the backends (`urls` the first of them, if any).
        `peers`: the other pools' URLs by pool name."""
        self._limits = limits
        self.backends = [self._engine(url, metrics) for url in urls]
        for name, url in (peers or {}).items():
            peer = Backend(url, pool=name)
            peer.in_flight = metrics.in_flight.labels(peer.label)
            self.backends.append(peer)
        self._peer_max_inflight = peer_max_inflight
        self._targets = targets
        self.on_removed: list[Callable[[str], None]] = []  # told each drained URL
        self._client = client
        self._metrics = metrics
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._queue: FairQueue[Backend] = FairQueue(limits.fair_queue)
        self._turn = 0
        self._checks = Periodic("health-checks", limits.health_interval_s, self.check_all)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        await self.check_all()
        self._checks.start()

    async def stop(self) -> None:
        await self._checks.stop()

    async def check_all(self) -> None:
        """One health round: the backends file read again (if there is one), then every
        backend that is not draining checked."""
        if self._targets is not None and (urls := self._targets.read()) is not None:
            self.register(urls)
        await asyncio.gather(*(self.check(b) for b in self.backends if not b.draining))

    def register(self, urls: Sequence[str]) -> None:
        """Make `urls` the pool's targets: a new one joins (serving once a check passes),
        one listed again stops draining, one not listed drains and leaves when idle."""
        listed = set(urls)
        known = {b.url for b in self.backends if b.pool is None}
        for backend in self.backends:
            if backend.pool is not None:
                continue  # a peer pool is not the file's
            draining = backend.url not in listed
            if draining and not backend.draining:
                log.info("backend %s deregistered: draining %d requests", backend.url,
                         backend.outstanding)
            elif backend.draining and not draining:
                log.info("backend %s registered again", backend.url)
            backend.draining = draining
        for url in urls:
            if url not in known:
                log.info("backend %s registered", url)
                self.backends = [*self.backends, self._engine(url, self._metrics)]
        self._drop_drained()
        self._queue.dispatch()  # a waiting request may have gained or lost a candidate

    def _engine(self, url: str, metrics: RouterMetrics) -> Backend:
        return Backend(url, in_flight=metrics.in_flight.labels(url),
                       prefixes=PrefixIndex(self._limits.prefix_blocks))

    def _drop_drained(self) -> None:
        """Forget draining backends that hold no request (and their metric series)."""
        gone = [b for b in self.backends if b.draining and b.outstanding == 0]
        if not gone:
            return
        self.backends = [b for b in self.backends if b not in gone]
        for backend in gone:
            log.info("backend %s drained and removed", backend.url)
            for family in (self._metrics.in_flight, self._metrics.backend_healthy):
                with contextlib.suppress(KeyError):  # never labelled: never set
                    family.remove(backend.url)
            for removed in self.on_removed:
                removed(backend.url)

    async def check(self, backend: Backend) -> None:
        """Refresh what `backend` serves: an engine's `/health`, then its `/v1/models`;
        a peer pool's `/ready`."""
        try:
            if backend.pool is None:
                context = await self._engine_listing(backend)
            else:
                context = await self._peer_listing(backend)
        except (httpx.HTTPError, TimeoutError, ValueError) as exc:
            backend.failed_checks += 1
            answer = "/v1/models" if backend.pool is None else "/ready"
            backend.last_error = f"health check failed: {describe(exc, answer)}"
            if backend.failed_checks >= self._limits.unhealthy_threshold:
                self._set_health(backend, False, backend.last_error)
            return
        backend.models = frozenset(context)
        backend.context = {model: length for model, length in context.items() if length}
        backend.failed_checks = 0
        self._set_health(backend, True, None)

    async def _engine_listing(self, backend: Backend) -> dict[str, int | None]:
        """The engine's models and their context lengths.

        Raises:
            httpx.HTTPError, TimeoutError, ValueError: as `bounded_get` and pydantic.
        """
        timeout_s = self._limits.health_timeout_s
        async with bounded_get(self._client, f"{backend.url}/health", timeout_s,
                               self._headers) as resp:
            # The status is the answer; the body (vLLM's is empty) is read through
            # only so that the connection can be reused.
            await read_capped(resp, MAX_LISTING_BYTES)
        async with bounded_get(self._client, f"{backend.url}/v1/models", timeout_s,
                               self._headers) as resp:
            body = await read_capped(resp, MAX_LISTING_BYTES)
        listing = ModelList.model_validate_json(body)
        return {m.id: m.max_model_len for m in listing.data}

    async def _peer_listing(self, backend: Backend) -> dict[str, int | None]:
        """What a peer pool's routers serve from their own engines (never the engine key:
        that is for this router's engines alone).

        Raises:
            httpx.HTTPError, TimeoutError, ValueError: as `bounded_get` and pydantic.
        """
        assert backend.pool is not None
        async with bounded_get(self._client, f"{backend.url}/ready",
                               self._limits.health_timeout_s,
                               {POOL_HEADER: backend.pool}) as resp:
            body = await read_capped(resp, MAX_LISTING_BYTES)
        ready = ReadyStatus.model_validate_json(body)
        return {model: ready.context.get(model) for model in ready.models}

    def _set_health(self, backend: Backend, healthy: bool, error: str | None) -> None:
        if backend.healthy != healthy:
            # Losing a backend is worth a warning; gaining one is routine.
            log.log(logging.INFO if healthy else logging.WARNING, "backend %s is now %s%s",
                    backend.label, "healthy" if healthy else "unhealthy",
                    f": {error}" if error else "")
        backend.healthy = healthy
        backend.last_error = error
        if backend in self.backends:  # a check that ends after its backend left sets none
            self._metrics.backend_healthy.labels(backend.label).set(1 if healthy else 0)
        self._queue.dispatch()

    def eject(self, backend: Backend, reason: str) -> None:
        """Passive health: take a backend out until an active check passes."""
        self._set_health(backend, False, reason)

    # -- queries -------------------------------------------------------------

    def context_length(self, model: str) -> int | None:
        """The longest context any healthy backend of `model` reports, if any does."""
        lengths = [b.context[model] for b in self.backends if b.serving and model in b.context]
        return max(lengths, default=None)

    def is_stalled(self, backend: Backend) -> bool:
        return backend.stalled(time.perf_counter(), self._limits.stall_after_s)

    def several_engines(self) -> bool:
        """Whether more than one of this router's own engines serves (a choice among
        them is possible)."""
        return sum(1 for b in self.backends if b.serving and b.pool is None) > 1

    def models(self, local_only: bool = False) -> frozenset[str]:
        """What the serving backends serve (`local_only`: this router's engines only)."""
        served: set[str] = set()
        for backend in self.backends:
            if backend.serving and not (local_only and backend.pool is not None):
                served |= backend.models
        return frozenset(served)

    def ready_status(self) -> ReadyStatus | None:
        """What `/ready` answers: this router's own engines, or None when none serves (a
        peer that answers for its pool must serve it itself)."""
        engines = [b for b in self.backends if b.serving and b.pool is None]
        if not engines:
            return None
        context: dict[str, int] = {}
        for backend in engines:
            for model, length in backend.context.items():
                context[model] = max(length, context.get(model, 0))
        return ReadyStatus(healthy_backends=len(engines),
                           models=sorted(self.models(local_only=True)), context=context)

    @property
    def waiting(self) -> int:
        """Requests queued for a slot right now."""
        return len(self._queue)

    def _candidates(self, model: str, exclude: Backend | None,
                    local_only: bool) -> list[Backend]:
        return [b for b in self.backends
                if b.serving and model in b.models and b is not exclude
                and not (local_only and b.pool is not None)]

    def _room(self, backend: Backend) -> int:
        return self._limits.max_inflight if backend.pool is None else self._peer_max_inflight

    def _pick(self, candidates: list[Backend], prefix: Sequence[int]) -> Backend | None:
        """The least-loaded candidate with room, or with cache-aware balancing on and a
        prompt `prefix`, the one `server.prefix.choose` picks; a stalled one has no room
        until it moves again (least-outstanding alone kept feeding a stalled engine until
        the health check ejected it, 23 s in the review)."""
        # Rotate the starting point so that ties do not always land on backend 0.
        self._turn = (self._turn + 1) % max(1, len(candidates))
        ordered = candidates[self._turn:] + candidates[:self._turn]
        now = time.perf_counter()
        open_ = [b for b in ordered if b.outstanding < self._room(b)
                 and not b.stalled(now, self._limits.stall_after_s)]
        if not open_:
            return None
        slack = self._limits.prefix_slack
        if slack is None or not prefix:
            return min(open_, key=lambda b: b.outstanding)  # the first of the least loaded
        best, matched = choose(open_, prefix, slack)
        best.prefixes.record(prefix)
        if len(open_) > 1:  # with one engine open there was no choice to count
            self._metrics.prefix_matched.inc(matched)
            self._metrics.prefix_unmatched.inc(len(prefix) - matched)
        return best

    # -- admission -------------------------------------------------------------

    async def acquire(self, model: str, exclude: Backend | None = None,
                      local_only: bool = False, prefix: Sequence[int] = (),
                      key: str = "", weight: float = 1.0) -> Backend:
        """Reserve a slot on the best backend for `model` (`local_only`: one of this
        router's engines; `prefix`: the prompt's block hashes, for cache-aware balancing),
        waiting in the bounded queue, which serves API keys fairly by `weight`
        (`server.fairqueue`).

        Raises:
            NoHealthyBackend: no healthy backend serves the model.
            Overloaded: every backend is full and the queue is full or timed out.
        """
        def take() -> Backend | None:
            candidates = self._candidates(model, exclude, local_only)
            if not candidates:
                raise NoHealthyBackend(f"no healthy backend serves model '{model}'")
            backend = self._pick(candidates, prefix)
            if backend is not None:
                backend.outstanding += 1
                if backend.in_flight is not None:
                    backend.in_flight.inc()
            return backend

        group = (model, id(exclude), local_only)  # who competes for the same slots
        if not self._queue.waiting(group):  # nobody to be fair to, nobody to pass
            taken = take()
            if taken is not None:
                return taken
        if len(self._queue) >= self._limits.max_queue:
            raise Overloaded("all backends are at capacity and the queue is full",
                             retry_after=1)
        waiter = self._queue.join(key, weight, take, group)
        self._queue.dispatch()
        return await self._served(waiter)

    async def _served(self, waiter: Waiter[Backend]) -> Backend:
        """The slot `waiter` is given, within the queue's timeout.

        Raises:
            NoHealthyBackend: its model's last backend left while it waited.
            Overloaded: it timed out.
        """
        future = waiter.future
        try:
            async with asyncio.timeout(self._limits.queue_timeout_s):
                return await asyncio.shield(future)
        except BaseException as exc:
            timed_out = isinstance(exc, TimeoutError)
            if not future.done():
                self._queue.leave(waiter)
                future.cancel()
            elif not future.cancelled() and (error := future.exception()) is not None:
                if timed_out:
                    raise error from None  # its model's backends left just as time ran out
            elif not future.cancelled():
                if timed_out:
                    return future.result()  # served just as the time ran out
                self.release(future.result())  # served as its client left: give it back
            if timed_out:
                raise Overloaded("timed out waiting for backend capacity",
                                 retry_after=1) from None
            raise

    def progress(self, backend: Backend, now: float) -> None:
        """A stream on `backend` brought data at `now` (perf_counter)."""
        stalled = backend.stalled(now, self._limits.stall_after_s)
        backend.last_progress = now
        if stalled and self._queue:
            log.info("backend %s is sending again", backend.label)
            self._queue.dispatch()

    def release(self, backend: Backend) -> None:
        backend.outstanding -= 1
        if backend.in_flight is not None:
            backend.in_flight.dec()
        if backend.draining and backend.outstanding == 0:
            self._drop_drained()
        if self._queue:
            self._queue.dispatch()
