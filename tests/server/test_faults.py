"""Faults a real engine cannot produce on demand, against a real router over HTTP.

The upstream is the fake engine from `tests.helpers.fake_upstream`; the router is
the real app under uvicorn; the client is the official `openai` client or
httpx. Every test ends by itself: timeouts are short and loops bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from llmfleet.core.net import free_port
from llmfleet.core.process import ChildProcess
from tests.helpers.fake_upstream import FakeControl, Mode
from tests.helpers.router import TEST_KEY, RouterFactory
from tests.helpers.servers import Answer, RawEngine, ServerThread, hang_up, json_answer

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def client(router: ServerThread, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{router.url}/v1", api_key=TEST_KEY, max_retries=0,
                         **kwargs)  # type: ignore[arg-type]


def post(router: ServerThread, body: object, path: str = "/v1/chat/completions",
         key: str = TEST_KEY) -> httpx.Response:
    return httpx.post(router.url + path, json=body, timeout=10,
                      headers={"authorization": f"Bearer {key}"})


def wait_until(predicate: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_engine_dying_mid_stream_ends_with_an_sse_error_event(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, url = fake
    control.mode, control.fail_after = Mode.DIE_MIDSTREAM, 3
    with make_router([url]) as router:
        stream = client(router).chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}],
            max_tokens=10, stream=True)
        received = []
        with pytest.raises(openai.APIError, match="failed mid-stream"):
            for chunk in stream:
                received.append(chunk)
        # Whole events before the failure arrived; the half-sent one was dropped.
        assert len(received) == 3


def test_engine_hanging_mid_stream_times_out_into_an_error_event(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, url = fake
    control.mode, control.fail_after = Mode.HANG_MIDSTREAM, 2
    with make_router([url], read_timeout_s=0.5) as router:
        started = time.monotonic()
        with httpx.stream("POST", router.url + "/v1/chat/completions",
                          json={**CHAT, "stream": True}, timeout=10,
                          headers={"authorization": f"Bearer {TEST_KEY}"}) as resp:
            body = b"".join(resp.iter_bytes())
        assert time.monotonic() - started < 5
        last_event = body.strip().split(b"\n\n")[-1]
        error = json.loads(last_event.removeprefix(b"data: "))["error"]
        assert error["code"] == "upstream_error"
        assert "stopped sending" in error["message"]


def test_engine_hanging_before_answer_is_504(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, url = fake
    control.mode = Mode.HANG
    with make_router([url], read_timeout_s=0.5) as router:
        resp = post(router, CHAT)
        assert resp.status_code == 504
        assert resp.json()["error"]["code"] == "upstream_timeout"


def test_engine_500_becomes_502_never_500(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, url = fake
    control.mode, control.status = Mode.STATUS, 500
    with make_router([url]) as router:
        resp = post(router, CHAT)
        assert resp.status_code == 502
        assert resp.json()["error"]["code"] == "upstream_error"


@pytest.mark.parametrize("status", [400, 404, 422])
def test_engine_4xx_passes_through(fake: tuple[FakeControl, str], make_router: RouterFactory,
                                   status: int) -> None:
    control, url = fake
    control.mode, control.status = Mode.STATUS, status
    with make_router([url]) as router:
        resp = post(router, CHAT)
        assert resp.status_code == status
        assert resp.json()["error"]["message"] == f"fake {status}"


def test_engine_503_is_retried_on_another_backend(make_router: RouterFactory) -> None:
    busy, good = FakeControl(mode=Mode.STATUS, status=503), FakeControl()
    from tests.helpers.fake_upstream import create_fake_upstream

    with ServerThread(create_fake_upstream(busy)) as b1, \
            ServerThread(create_fake_upstream(good)) as b2, \
            make_router([b1.url, b2.url]) as router:
        for _ in range(4):
            assert post(router, CHAT).status_code == 200
        assert good.requests == 4
        assert 1 <= busy.requests <= 4  # least-outstanding rotation hits it sometimes
        metrics = httpx.get(router.url + "/metrics").text
        assert f'llmfleet_retries_total{{model="fake-model"}} {float(busy.requests)}' in metrics


def test_only_backend_answering_503_passes_the_503_through(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, url = fake
    control.mode, control.status = Mode.STATUS, 503
    with make_router([url]) as router:
        assert post(router, CHAT).status_code == 503


def test_dead_backend_is_ejected_and_request_retried(make_router: RouterFactory) -> None:
    """A backend that died after its last health check costs no client an error."""
    from tests.helpers.fake_upstream import create_fake_upstream

    good = FakeControl()
    doomed = ServerThread(create_fake_upstream(FakeControl()))
    with doomed, ServerThread(create_fake_upstream(good)) as b2, \
            make_router([doomed.url, b2.url], health_interval_s=60) as router:
        doomed.__exit__(None, None, None)  # dies; no health check will notice for 60 s
        for _ in range(4):
            assert post(router, CHAT).status_code == 200
        ready = httpx.get(router.url + "/ready").json()
        assert ready["healthy_backends"] == 1


def test_no_healthy_backend_is_503_and_not_ready(make_router: RouterFactory) -> None:
    with make_router([f"http://127.0.0.1:{free_port()}"]) as router:
        assert httpx.get(router.url + "/health").status_code == 200
        ready = httpx.get(router.url + "/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "no_healthy_backend"
        resp = post(router, {**CHAT, "model": "auto"})
        assert resp.status_code == 503


def test_backend_returning_after_outage_is_readmitted(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, url = fake
    control.healthy = False
    with make_router([url]) as router:
        assert httpx.get(router.url + "/ready").status_code == 503
        control.healthy = True
        assert wait_until(lambda: httpx.get(router.url + "/ready").status_code == 200)
        assert post(router, CHAT).status_code == 200


def test_client_disconnect_cancels_the_upstream_stream(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, url = fake
    control.chunk_delay_s = 0.05
    with make_router([url]) as router:
        with httpx.stream("POST", router.url + "/v1/chat/completions",
                          json={**CHAT, "max_tokens": 400, "stream": True},
                          headers={"authorization": f"Bearer {TEST_KEY}"}, timeout=10) as resp:
            for _ in resp.iter_raw():
                break  # read a little, then hang up
        assert wait_until(lambda: control.streams_cancelled == 1)
        assert control.streams_completed == 0
        in_flight = f'llmfleet_requests_in_flight{{backend="{url}"}} 0.0'
        assert wait_until(lambda: in_flight in httpx.get(router.url + "/metrics").text)


def test_split_events_are_reassembled(fake: tuple[FakeControl, str],
                                      make_router: RouterFactory) -> None:
    control, url = fake
    control.split_events = True
    with make_router([url]) as router:
        stream = client(router).completions.create(
            model="fake-model", prompt="x", max_tokens=6, stream=True,
            stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        assert text == "".join(f" t{i}" for i in range(6))
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_queue_bound_sheds_load_fast(fake: tuple[FakeControl, str],
                                     make_router: RouterFactory) -> None:
    control, url = fake
    control.chunk_delay_s = 0.2
    results: list[int] = []
    with make_router([url], max_inflight_per_backend=1, max_queue=1,
                     queue_timeout_s=10) as router:
        def one() -> None:
            with httpx.stream("POST", router.url + "/v1/chat/completions",
                              json={**CHAT, "max_tokens": 3, "stream": True}, timeout=10,
                              headers={"authorization": f"Bearer {TEST_KEY}"}) as resp:
                resp.read()
                results.append(resp.status_code)

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        assert wait_until(lambda: control.streams_started == 1)
        time.sleep(0.1)  # the second request is now queued
        started = time.monotonic()
        shed = post(router, CHAT)
        assert time.monotonic() - started < 1.0
        assert shed.status_code == 503
        assert shed.json()["error"]["code"] == "server_overloaded"
        assert shed.headers["retry-after"] == "1"
        for t in threads:
            t.join(10)
        assert sorted(results) == [200, 200]  # nothing already accepted was lost


def test_request_id_is_kept_or_minted_and_forwarded(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, url = fake
    with make_router([url]) as router:
        resp = httpx.post(router.url + "/v1/chat/completions", json=CHAT, timeout=10,
                          headers={"authorization": f"Bearer {TEST_KEY}",
                                   "x-request-id": "trace-123"})
        assert resp.headers["x-request-id"] == "trace-123"
        # The engine gets its own unique id: callers may reuse theirs.
        assert control.headers[-1]["x-request-id"] != "trace-123"
        minted = {post(router, CHAT).headers["x-request-id"] for _ in range(3)}
        assert len(minted) == 3 and all(len(m) == 32 for m in minted)
        # The client's key never reaches the engine; hop-by-hop headers are not forwarded.
        assert "authorization" not in control.headers[-1]
        assert "connection" not in control.headers[-1] or \
            control.headers[-1]["connection"] != "close"


def test_alias_routes_by_prompt_length(make_router: RouterFactory) -> None:
    from tests.helpers.fake_upstream import create_fake_upstream

    small, large = FakeControl(models=("small",)), FakeControl(models=("large",))
    rules = [{"model": "small", "max_prompt_tokens": 50}, {"model": "large"}]
    with ServerThread(create_fake_upstream(small)) as s, \
            ServerThread(create_fake_upstream(large)) as big, \
            make_router([s.url, big.url], length_rules=rules) as router:
        short = post(router, {**CHAT, "model": "auto"})
        long_prompt = [{"role": "user", "content": "word " * 400}]
        long = post(router, {**CHAT, "model": "auto", "messages": long_prompt})
        assert short.headers["x-llmfleet-model"] == "small"
        assert long.headers["x-llmfleet-model"] == "large"
        assert "rule <= 50" in short.headers["x-llmfleet-route"]
        assert json.loads(small.bodies[-1])["model"] == "small"
        assert json.loads(large.bodies[-1])["model"] == "large"
        listed = [m["id"] for m in httpx.get(
            router.url + "/v1/models", headers={"authorization": f"Bearer {TEST_KEY}"}
        ).json()["data"]]
        assert listed == ["large", "small", "auto"]


ANSWER = {"id": "x", "object": "text_completion", "model": "fake-model",
          "choices": [{"index": 0, "text": "ok", "finish_reason": "length"}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


def test_a_stale_pooled_connection_is_retried_without_ejecting(
        make_router: RouterFactory) -> None:
    """Regression: a stale keep-alive connection ejected the only, healthy, engine."""
    # Answer once, then hang up on the next request over the same (pooled) connection,
    # as an engine closing an idle connection does; then answer on a fresh one.
    answers = [json_answer(ANSWER), hang_up, json_answer(ANSWER)]
    with RawEngine(answers) as engine, make_router([engine.url], health_interval_s=60) as router:
        for _ in range(2):
            resp = post(router, {"model": "fake-model", "prompt": "x"}, "/v1/completions")
            assert resp.status_code == 200
            time.sleep(1.2)  # idle long enough in the pool for an engine to close it
        assert engine.posts == 3  # dropped once, answered again on a fresh connection
        assert httpx.get(router.url + "/ready").status_code == 200  # still in the pool


def test_a_drop_on_a_connection_busy_a_moment_ago_is_not_retried(
        make_router: RouterFactory) -> None:
    """Regression (review): any reused connection counted as stale, and under load nearly
    every connection is reused, so a request that crashed an engine was still sent on."""
    answers = [json_answer(ANSWER), hang_up]  # the second request kills it
    with RawEngine(answers) as engine, make_router([engine.url], health_interval_s=60) as router:
        assert post(router, {"model": "fake-model", "prompt": "x"},
                    "/v1/completions").status_code == 200
        resp = post(router, {"model": "fake-model", "prompt": "x"}, "/v1/completions")
        assert resp.status_code == 502
        assert engine.posts == 2  # not sent again


def test_a_request_that_kills_an_engine_is_not_sent_to_a_second_one(
        make_router: RouterFactory) -> None:
    """Regression: a fresh connection dropped before the answer was retried elsewhere, so
    a request that crashes an engine crashed two (and its GPU work was done twice)."""
    with RawEngine([hang_up]) as first, RawEngine([hang_up]) as second, \
            make_router([first.url, second.url], health_interval_s=60) as router:
        resp = post(router, {"model": "fake-model", "prompt": "x"}, "/v1/completions")
        assert resp.status_code == 502
        assert resp.json()["error"]["message"] == (
            "the engine closed the connection before answering")
        assert first.posts + second.posts == 1


def test_502_answers_name_no_internal_address(make_router: RouterFactory) -> None:
    """Regression: "engine unreachable: cannot connect to 10.0.3.7:8001: ..." told clients
    the engines' private addresses."""
    dead = f"http://127.0.0.1:{free_port()}"
    with make_router([dead], health_interval_s=60) as router:
        backend = router.server.config.app.app.state.runtime.pool.backends[0]
        backend.healthy, backend.models = True, frozenset({"fake-model"})
        resp = post(router, CHAT)
        view = httpx.get(router.url + "/console/fleet").json()
    assert resp.status_code == 502
    assert "127.0.0.1" not in resp.text and dead.rsplit(":", 1)[1] not in resp.text
    # Nor the fleet view's reason, which any key may read (its url is the configured one).
    assert view["backends"][0]["last_error"] == "connection refused"


def test_client_giving_up_on_a_non_streamed_request_frees_the_engine(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    control, url = fake
    control.mode = Mode.HANG  # a long generation, as far as anyone can tell
    with make_router([url], read_timeout_s=60) as router:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(router.url + "/v1/chat/completions", json=CHAT, timeout=0.5,
                       headers={"authorization": f"Bearer {TEST_KEY}"})
        in_flight = f'llmfleet_requests_in_flight{{backend="{url}"}} 0.0'
        cancelled = 'llmfleet_requests_total{model="fake-model",status="cancelled"} 1.0'
        assert wait_until(lambda: in_flight in httpx.get(router.url + "/metrics").text)
        assert cancelled in httpx.get(router.url + "/metrics").text
        # The router still serves normally afterwards.
        control.mode = Mode.OK
        assert post(router, CHAT).status_code == 200


def test_connect_timeout_is_retried_on_another_backend(make_router: RouterFactory) -> None:
    """A stalled engine that accepts no connections: retry elsewhere, 504 when alone."""
    import socket

    from tests.helpers.fake_upstream import create_fake_upstream

    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(0)  # never accepted: once the queue is full, connects hang
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(stalled.getsockname())
        fillers.append(filler)
    stalled_url = f"http://127.0.0.1:{stalled.getsockname()[1]}"
    good = FakeControl()
    try:
        with ServerThread(create_fake_upstream(good)) as healthy, \
                make_router([stalled_url, healthy.url], connect_timeout_s=0.3,
                            health_interval_s=60) as router:
            # Pretend the stalled engine passed its last check before it stalled.
            backends = router.server.config.app.app.state.runtime.pool.backends
            backends[0].healthy, backends[0].models = True, frozenset({"fake-model"})
            for _ in range(4):
                assert post(router, CHAT).status_code == 200
            assert good.requests == 4
        with make_router([stalled_url], connect_timeout_s=0.3, health_interval_s=60) as alone:
            backend = alone.server.config.app.app.state.runtime.pool.backends[0]
            backend.healthy, backend.models = True, frozenset({"fake-model"})
            resp = post(alone, CHAT)
            assert resp.status_code == 504
            assert resp.json()["error"]["message"] == "no engine accepted the connection in time"
    finally:
        for sock in [*fillers, stalled]:
            sock.close()


def _huge_answer(size: int) -> Answer:
    """A non-streamed answer of `size` bytes, sent from one reused 1 MiB block."""
    block = b" " * (1 << 20)
    end = b'", "usage": {"prompt_tokens": 3, "completion_tokens": 5}}'
    start = b'{"id": "x", "object": "text_completion", "pad": "'
    pad = size - len(start) - len(end)

    def send(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % size + start)
        for _ in range(pad // len(block)):
            conn.sendall(block)
        conn.sendall(block[:pad % len(block)] + end)
        return True

    return send


def test_a_huge_non_streamed_answer_is_relayed_not_held_in_memory(
        make_router: RouterFactory) -> None:
    """Regression: a 200 MB answer was read whole, raising the router's peak memory by
    369 MB; with 64 in flight per engine that exhausts the router."""
    size = 48 << 20
    with RawEngine([_huge_answer(size)]) as engine, \
            make_router([engine.url], health_interval_s=60) as router:
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            received = 0
            tail = b""
            with httpx.stream("POST", router.url + "/v1/completions", timeout=30,
                              json={"model": "fake-model", "prompt": "x"},
                              headers={"authorization": f"Bearer {TEST_KEY}"}) as resp:
                for chunk in resp.iter_raw():
                    received += len(chunk)
                    tail = (tail + chunk)[-200:]
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
        metrics = httpx.get(router.url + "/metrics").text
    assert resp.status_code == 200 and received == size
    assert tail.endswith(b'"completion_tokens": 5}}')
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB for a {size >> 20} MiB answer"
    assert 'llmfleet_completion_tokens_total{model="fake-model"} 5.0' in metrics
    assert 'llmfleet_requests_total{model="fake-model",status="2xx"} 1.0' in metrics


def test_an_engine_failing_mid_way_through_a_relayed_answer_cuts_the_connection(
        make_router: RouterFactory) -> None:
    def truncated(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % (8 << 20) + b"{" + b" " * (4 << 20))
        return False  # and die

    with RawEngine([truncated]) as engine, \
            make_router([engine.url], health_interval_s=60) as router:
        with pytest.raises(httpx.RemoteProtocolError):
            post(router, {"model": "fake-model", "prompt": "x"}, "/v1/completions")
        metrics = httpx.get(router.url + "/metrics").text
        in_flight = f'llmfleet_requests_in_flight{{backend="{engine.url}"}} 0.0'
    assert 'llmfleet_requests_total{model="fake-model",status="5xx"} 1.0' in metrics
    assert in_flight in metrics


def test_a_stream_on_a_stalled_engine_ends_after_the_stream_idle_timeout(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    """Regression (found with SIGSTOP): streams on a stalled engine waited for the 300 s
    read timeout."""
    control, url = fake
    control.mode, control.fail_after = Mode.HANG_MIDSTREAM, 2
    with make_router([url], read_timeout_s=300, stream_idle_timeout_s=0.5) as router, \
            httpx.stream("POST", router.url + "/v1/chat/completions",
                         json={**CHAT, "stream": True}, timeout=10,
                         headers={"authorization": f"Bearer {TEST_KEY}"}) as resp:
        body = b"".join(resp.iter_bytes())
    error = json.loads(body.strip().split(b"\n\n")[-1].removeprefix(b"data: "))["error"]
    assert "stopped sending" in error["message"]


def test_new_requests_avoid_an_engine_whose_streams_have_all_gone_silent(
        make_router: RouterFactory) -> None:
    """Regression: least-outstanding kept sending new work to a stalled engine until the
    health check ejected it (23 s in the review)."""
    from tests.helpers.fake_upstream import create_fake_upstream

    stalled = FakeControl(mode=Mode.HANG_MIDSTREAM, fail_after=2)
    moving = FakeControl(chunk_delay_s=0.1)  # far more often than stall_after_s
    with ServerThread(create_fake_upstream(stalled)) as a, \
            ServerThread(create_fake_upstream(moving)) as b, \
            make_router([a.url, b.url], stall_after_s=0.6, health_interval_s=60) as router, \
            httpx.Client(base_url=router.url, timeout=10,
                         headers={"authorization": f"Bearer {TEST_KEY}"}) as http:
        streams = [http.send(http.build_request(
            "POST", "/v1/chat/completions",
            json={**CHAT, "max_tokens": 100, "stream": True}), stream=True) for _ in range(2)]
        try:
            assert stalled.streams_started == 1 and moving.streams_started == 1
            time.sleep(1.2)  # a's stream went silent after two events; b's keeps moving
            before = stalled.requests
            for _ in range(4):  # equal load: least-outstanding alone would send two to a
                assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            assert stalled.requests == before
            view = http.get("/console/fleet").json()
            assert [x["stalled"] for x in view["backends"]] == [True, False]
        finally:
            for stream in streams:
                stream.close()


# -- what held in the outside review, kept: real engine processes killed and stopped ----

@pytest.fixture
def engine_processes(tmp_path: Path) -> Iterator[list[ChildProcess]]:
    """Two fake engines in processes of their own, so that they can be killed and stopped."""
    engines = []
    for i in range(2):
        port = free_port()
        engine = ChildProcess(f"engine{i}", [sys.executable, "-m", "tests.helpers.fake_upstream",
                                             str(port)], tmp_path / f"engine{i}.log",
                              f"http://127.0.0.1:{port}/health")
        engine.start()
        engines.append(engine)
    try:
        for engine in engines:
            engine.wait_ready(timeout_s=60, poll_s=0.1)
        yield engines
    finally:
        for engine in engines:
            if engine.pid is not None and engine.alive():
                os.kill(engine.pid, signal.SIGCONT)
            engine.stop(grace_s=5)


def _stream_outcome(router: ServerThread) -> str:
    """One paced stream (~4 s): "done", or the error event's message."""
    body = {**CHAT, "max_tokens": 80, "stream": True, "fake_chunk_delay_s": 0.05}
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {TEST_KEY}"}) as resp:
        events = b"".join(resp.iter_bytes()).strip().split(b"\n\n")
    if events[-1] == b"data: [DONE]":
        return "done"
    return str(json.loads(events[-1].removeprefix(b"data: "))["error"]["message"])


def _under_16_streams(router: ServerThread, fault: Callable[[], None]) -> list[str]:
    begun = 'llmfleet_time_to_first_token_seconds_count{model="fake-model"} 16.0'
    with ThreadPoolExecutor(16) as pool:
        outcomes = [pool.submit(_stream_outcome, router) for _ in range(16)]
        assert wait_until(lambda: begun in httpx.get(router.url + "/metrics").text, 20)
        fault()
        return [o.result(timeout=30) for o in outcomes]  # a hung stream fails here


def test_an_engine_killed_under_16_streaming_clients_leaves_no_one_hanging(
        engine_processes: list[ChildProcess], make_router: RouterFactory) -> None:
    killed, _ = engine_processes
    urls = [e.health_url.removesuffix("/health") for e in engine_processes]
    with make_router(urls) as router:
        assert killed.pid is not None
        outcomes = _under_16_streams(router, lambda: os.kill(killed.pid or 0, signal.SIGKILL))
        broken = [o for o in outcomes if o != "done"]
        assert 1 <= len(broken) <= 15
        assert set(broken) == {"the engine failed mid-stream; the answer is incomplete"}
        for _ in range(4):  # and everything after goes to the engine left
            assert post(router, CHAT).status_code == 200


def test_an_engine_stopped_under_16_streaming_clients_leaves_no_one_hanging(
        engine_processes: list[ChildProcess], make_router: RouterFactory) -> None:
    stopped, _ = engine_processes
    urls = [e.health_url.removesuffix("/health") for e in engine_processes]
    with make_router(urls, stream_idle_timeout_s=1.0, stall_after_s=0.5,
                     health_interval_s=60) as router:
        assert stopped.pid is not None
        outcomes = _under_16_streams(router, lambda: os.kill(stopped.pid or 0, signal.SIGSTOP))
        broken = [o for o in outcomes if o != "done"]
        assert 1 <= len(broken) <= 15
        assert set(broken) == {"the engine stopped sending mid-stream; the answer is incomplete"}
        for _ in range(4):  # new work goes to the engine still moving
            assert post(router, CHAT).status_code == 200
        os.kill(stopped.pid, signal.SIGCONT)


def test_a_client_that_stops_reading_does_not_make_its_engine_look_stalled(
        fake: tuple[FakeControl, str], make_router: RouterFactory) -> None:
    """Regression (review): a stream blocked on a client that stopped reading counted as
    the engine's silence, so the only, healthy, engine got no new work (503 after the
    queue timeout) for as long as that client held on."""
    control, url = fake
    body = json.dumps({"model": "fake-model", "prompt": "hi", "max_tokens": 100_000,
                       "stream": True}).encode()
    with make_router([url], stall_after_s=0.3, queue_timeout_s=1.0) as router:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", router.port))
        with sock:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: r\r\n"
                         b"authorization: Bearer " + TEST_KEY.encode() +
                         b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                         % len(body) + body)  # and never read
            assert wait_until(lambda: control.streams_started == 1)
            time.sleep(1.0)  # its buffers are full; the relay waits on the client
            statuses = [post(router, CHAT).status_code for _ in range(3)]
            stalled = httpx.get(router.url + "/console/fleet").json()["backends"][0]["stalled"]
        # The client hung up: its stream ends before the engines go (a clean teardown).
        assert wait_until(lambda: control.streams_cancelled + control.streams_completed > 0)
    assert statuses == [200] * 3 and stalled is False
