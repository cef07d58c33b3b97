"""The internal load balancer between pools, for tests: routes on the pool header.

It plays what infrastructure/modules/pools builds on AWS: each request goes to the pool its
`x-llmfleet-pool` header names (one router per pool here), streamed both ways; a pool with
no router answers 503 with an HTML page, as an Application Load Balancer with no healthy
target does, and 502 when the router it chose cannot be reached. `targets` may change while
it runs (a pool scaled to zero, or back).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llmfleet.core.wire.pools import POOL_HEADER

NO_TARGET_PAGE = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
BAD_GATEWAY_PAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


Seen = list[tuple[str, dict[str, str]]]


def create_balancer(targets: dict[str, str], seen: Seen) -> Starlette:
    """`targets`: pool name -> router URL; `seen` gets every request's method and headers."""
    client = httpx.AsyncClient(timeout=httpx.Timeout(30.0))

    async def forward(request: Request) -> Response:
        seen.append((request.method, dict(request.headers)))
        url = targets.get(request.headers.get(POOL_HEADER, ""))
        if url is None:
            return Response(NO_TARGET_PAGE, status_code=503, media_type="text/html")
        headers = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP}
        try:
            upstream = await client.send(
                client.build_request(request.method, url + request.url.path,
                                     headers=headers, content=await request.body()),
                stream=True)
        except httpx.TransportError:
            return Response(BAD_GATEWAY_PAGE, status_code=502, media_type="text/html")

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()

        kept = {k: v for k, v in upstream.headers.items() if k not in HOP_BY_HOP}
        return StreamingResponse(body(), status_code=upstream.status_code, headers=kept)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])],
                     lifespan=lifespan)
