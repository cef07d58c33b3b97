"""`llmfleet up` leaves as an instance does: Ctrl-C drains the router before it stops.

The router `up` serves (a real one, in front of the fake engine with paced streams) runs
under `DrainingServer` in a thread; the test delivers the stop signal by calling its
handler, as the signal would (uvicorn installs it in the main thread only). Streams are
read by the official `openai` client.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
import uvicorn

from llmfleet.core.drain import RouterDrain
from llmfleet.local import GRACE_AFTER_DRAIN_S, DrainingServer
from server.app import create_app
from server.settings import RouterSettings
from tests.helpers.fake_upstream import FakeControl
from tests.helpers.router import TEST_KEY
from tests.helpers.streams import StreamRead, read_stream

STREAMS = 4
TOKENS = 30
CHUNK_DELAY_S = 0.05  # each stream lasts about 1.5 s


@contextmanager
def draining_router(upstream: str, bound_s: float, said: list[str]
                    ) -> Iterator[tuple[DrainingServer, str, threading.Thread]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = RouterSettings(backends=[upstream], api_keys=[f"tester:{TEST_KEY}"],
                              health_interval_s=0.2)
    # As `llmfleet up` configures it: no graceful-shutdown timeout of its own.
    config = uvicorn.Config(create_app(settings), log_config=None, access_log=False)
    server = DrainingServer(config, RouterDrain(url), bound_s, said.append)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):  # bounded: up within 5 s
            if server.started:
                break
            time.sleep(0.01)
        assert server.started
        yield server, url, thread
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_ctrl_c_drains_every_live_stream_before_the_router_stops(
        fake: tuple[FakeControl, str]) -> None:
    control, upstream = fake
    control.chunk_delay_s = CHUNK_DELAY_S
    said: list[str] = []
    with draining_router(upstream, 30.0, said) as (server, url, thread):
        async def scenario() -> list[StreamRead]:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=TEST_KEY,
                                        max_retries=0)
            streams = [asyncio.ensure_future(read_stream(client, TOKENS)) for _ in range(STREAMS)]
            for _ in range(500):
                if control.streams_started == STREAMS:
                    break
                await asyncio.sleep(0.01)
            server.handle_exit(signal.SIGINT, None)  # Ctrl-C
            for _ in range(500):
                if RouterDrain(url).status().draining:
                    break
                await asyncio.sleep(0.01)
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                assert (await http.get("/ready")).status_code == 503
                late = await http.post("/v1/completions", json={"model": "fake-model"},
                                       headers={"authorization": f"Bearer {TEST_KEY}"})
                assert late.status_code == 503
            assert thread.is_alive()  # still serving the streams in flight
            texts = await asyncio.gather(*streams)
            await client.close()
            return texts

        texts = asyncio.run(scenario())
        thread.join(timeout=10)  # then it stops by itself
        assert not thread.is_alive()
    assert [t.text for t in texts] == ["".join(f" t{i}" for i in range(TOKENS))] * STREAMS
    assert said[0] == f"llmfleet: draining: {STREAMS} requests in flight; " \
                      "Ctrl-C again to stop now"
    assert said[-1] == "  0 requests in flight"


def test_a_second_ctrl_c_stops_without_waiting_for_the_drain(
        fake: tuple[FakeControl, str]) -> None:
    control, upstream = fake
    control.chunk_delay_s = 1.0  # a stream that would take 30 s
    said: list[str] = []
    with draining_router(upstream, 60.0, said) as (server, url, thread):
        client = httpx.Client(timeout=30)
        with client.stream("POST", f"{url}/v1/completions",
                           headers={"authorization": f"Bearer {TEST_KEY}"},
                           json={"model": "fake-model", "prompt": "hi", "max_tokens": TOKENS,
                                 "stream": True}) as resp:
            assert resp.status_code == 200
            server.handle_exit(signal.SIGINT, None)
            for _ in range(500):
                if said:
                    break
                time.sleep(0.01)
            began = time.monotonic()
            server.handle_exit(signal.SIGINT, None)  # again: stop now
            thread.join(timeout=15)
            assert not thread.is_alive() and time.monotonic() - began < 3
        client.close()


def test_a_drain_that_runs_past_its_bound_still_stops(fake: tuple[FakeControl, str]) -> None:
    """The bound passes with a stream still open: uvicorn gets it, and closes what is left
    after its grace instead of waiting for the stream (30 s here) to end."""
    control, upstream = fake
    control.chunk_delay_s = 1.0
    said: list[str] = []
    with draining_router(upstream, 0.5, said) as (server, url, thread):
        client = httpx.Client(timeout=60)
        with client.stream("POST", f"{url}/v1/completions",
                           headers={"authorization": f"Bearer {TEST_KEY}"},
                           json={"model": "fake-model", "prompt": "hi", "max_tokens": TOKENS,
                                 "stream": True}) as resp:
            assert resp.status_code == 200
            began = time.monotonic()
            server.handle_exit(signal.SIGINT, None)
            thread.join(timeout=20)
            assert not thread.is_alive()
            assert time.monotonic() - began < 0.5 + GRACE_AFTER_DRAIN_S + 3
        client.close()
    assert "with 1 request still in flight" in said[-1]
