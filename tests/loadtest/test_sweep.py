"""The load tests' HTTP client to an endpoint."""

from __future__ import annotations

import asyncio

from loadtest.sweep import KEEPALIVE_EXPIRY_S, Target
from tests.helpers.fake_upstream import FakeControl

VLLM_KEEPALIVE_S = 5.0  # uvicorn's, as vLLM's API server runs it (VLLM_HTTP_TIMEOUT_KEEP_ALIVE)
BODY = {"model": "fake-model", "prompt": "hi", "max_tokens": 1}


def ports_of_two_requests(control: FakeControl, url: str, gap_s: float) -> list[int]:
    """The client ports two requests `gap_s` apart arrived from, through one pool."""

    async def two() -> None:
        async with Target(url).client(1) as client:
            for wait_s in (gap_s, 0.0):
                (await client.post("/v1/completions", json=BODY)).raise_for_status()
                await asyncio.sleep(wait_s)

    control.peers.clear()
    asyncio.run(two())
    return list(control.peers)


def test_an_idle_connection_is_dropped_before_the_engines_server_drops_it(
        fake: tuple[FakeControl, str]) -> None:
    # Regression: the pool kept idle connections 5 s, as long as vLLM's server does, so a
    # probe request sent on one just as the server closed it failed with a read error.
    control, url = fake
    assert KEEPALIVE_EXPIRY_S < VLLM_KEEPALIVE_S
    first, second = ports_of_two_requests(control, url, 0.0)
    assert first == second  # back to back: the connection is reused
    first, second = ports_of_two_requests(control, url, KEEPALIVE_EXPIRY_S + 0.5)
    assert first != second  # idle past the expiry: the client opened a new one itself
