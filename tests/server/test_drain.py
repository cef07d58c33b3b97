"""A router leaving the fleet: every live stream completes, nothing new is admitted.

A real router (uvicorn on an ephemeral port) in front of the fake engine, whose streams are
paced so that they are still running when the drain begins; the official `openai` client
reads them.
"""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from llmfleet.core.drain import RouterDrain
from llmfleet.core.wire.drain import DRAIN_HEADER, DRAIN_HEADER_VALUE, DrainStatus
from server.drain import RETRY_AFTER_S, Drain, Draining
from server.metrics import RouterMetrics
from tests.helpers.fake_upstream import FakeControl
from tests.helpers.router import TEST_KEY, RouterFactory
from tests.helpers.streams import read_stream

STREAMS = 6
TOKENS = 30
CHUNK_DELAY_S = 0.05  # each stream lasts about 1.5 s


def drain_state() -> Drain:
    metrics = RouterMetrics(CollectorRegistry())
    return Drain(metrics.draining, metrics.drain_refused)


def test_a_draining_router_finishes_every_live_stream_and_admits_nothing_new(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, upstream = fake
    control.chunk_delay_s = CHUNK_DELAY_S
    with make_router([upstream]) as router:
        async def scenario() -> None:
            client = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key=TEST_KEY,
                                        max_retries=0)
            streams = [asyncio.ensure_future(read_stream(client, TOKENS)) for _ in range(STREAMS)]
            for _ in range(200):  # bounded: every stream under way
                if control.streams_started == STREAMS:
                    break
                await asyncio.sleep(0.01)
            assert control.streams_started == STREAMS
            async with httpx.AsyncClient(base_url=router.url, timeout=10) as http:
                # The agent's (and llmfleet up's) client, as on an instance.
                began = await asyncio.to_thread(RouterDrain(router.url).begin)
                assert began.draining and began.in_flight == STREAMS  # none finished yet

                ready = await http.get("/ready")  # the load balancer takes it out
                assert ready.status_code == 503
                assert ready.json()["error"]["code"] == "instance_draining"

                # A request that still arrives is refused whole, in OpenAI's shape.
                late = await http.post("/v1/completions",
                                       headers={"authorization": f"Bearer {TEST_KEY}"},
                                       json={"model": "fake-model", "prompt": "late"})
                assert late.status_code == 503
                assert late.json()["error"]["code"] == "instance_draining"
                assert late.headers["retry-after"] == str(int(RETRY_AFTER_S))
                assert late.headers["connection"] == "close"
                with pytest.raises(openai.APIStatusError) as refused:
                    await client.chat.completions.create(
                        model="fake-model", messages=[{"role": "user", "content": "late"}])
                assert refused.value.status_code == 503

                answers = await asyncio.gather(*streams)
                # Every stream that was running completed: all its tokens, its finish.
                assert [(a.text, a.finish) for a in answers] == \
                    [("".join(f" t{i}" for i in range(TOKENS)), "length")] * STREAMS, answers
                assert control.streams_completed == STREAMS
                assert control.requests == STREAMS  # no refused request reached the engine

                status = (await http.get("/drain")).json()
                assert status["in_flight"] == 0 and status["draining"] is True
                again = await asyncio.to_thread(RouterDrain(router.url).begin)  # idempotent
                assert again.draining_for_s is not None
                assert again.draining_for_s >= status["draining_for_s"]
                metrics = (await http.get("/metrics",
                                          headers={"authorization": f"Bearer {TEST_KEY}"})).text
                assert "llmfleet_router_draining 1.0" in metrics
                assert "llmfleet_drain_refused_total 2.0" in metrics
            await client.close()

        asyncio.run(scenario())


def test_only_the_instance_itself_can_drain_its_router(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    """A request relayed from another host (uvicorn takes X-Forwarded-For from the loopback
    alone, so this is how a proxied client looks) is refused, and nothing drains."""
    _, upstream = fake
    with make_router([upstream]) as router:
        relayed = {"x-forwarded-for": "10.0.3.7", DRAIN_HEADER: DRAIN_HEADER_VALUE}
        for method in ("POST", "GET"):
            resp = httpx.request(method, f"{router.url}/drain", headers=relayed, timeout=5)
            assert resp.status_code == 403
            assert resp.json()["error"]["type"] == "permission_error"
        assert httpx.get(f"{router.url}/ready", timeout=5).status_code == 200


def test_draining_counts_what_it_holds_until_the_last_request_ends() -> None:
    drain = drain_state()
    assert drain.status() == DrainStatus(draining=False, in_flight=0)
    drain.admit()
    drain.admit()
    assert drain.begin() and not drain.begin()  # once
    with pytest.raises(Draining):
        drain.admit()
    drain.done()
    assert drain.status().in_flight == 1 and drain.status().draining
    drain.done()
    assert drain.status().in_flight == 0


def test_a_cross_origin_form_post_cannot_drain_the_local_router(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    """What a web page open in a browser on the machine running `llmfleet up` can send
    without asking the router first: a form post from 127.0.0.1, with no custom header. It
    is refused; and the browser's preflight for the drain header is refused too, so a
    page's script cannot add it."""
    _, upstream = fake
    with make_router([upstream], cors_allowed_origins=["http://127.0.0.1:3000"]) as router:
        form = httpx.post(f"{router.url}/drain", data={"a": "b"}, timeout=5,
                          headers={"origin": "http://evil.example"})
        assert form.status_code == 403
        assert DRAIN_HEADER in form.json()["error"]["message"]
        preflight = httpx.options(f"{router.url}/drain", timeout=5, headers={
            "origin": "http://127.0.0.1:3000", "access-control-request-method": "POST",
            "access-control-request-headers": DRAIN_HEADER})
        assert preflight.status_code == 400  # Starlette's CORS refusal: headers not allowed
        assert httpx.get(f"{router.url}/ready", timeout=5).status_code == 200
        assert RouterDrain(router.url).status().draining is False
