"""The request-path HTTP/1.1 client against a real (fake) engine over TCP."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmfleet.fake_upstream import FakeControl, Mode
from llmfleet.testing import free_port
from server.upstream import (
    MAX_BUFFER_BYTES,
    ConnectRefused,
    ReadTimeout,
    Timeouts,
    UpstreamPool,
)

HEADERS = {"content-type": "application/json"}
TIMEOUTS = Timeouts(connect_s=2, read_s=5, keepalive_s=30)


def body(**fields: object) -> bytes:
    return json.dumps({"model": "fake-model", "prompt": "x", **fields}).encode()


async def test_answers_are_read_and_connections_reused(fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    pool = UpstreamPool(url, TIMEOUTS)
    for _ in range(3):
        resp = await pool.post("/v1/completions", body(max_tokens=4), HEADERS)
        assert resp.status == 200 and resp.content_type == "application/json"
        assert json.loads(await resp.read())["usage"]["completion_tokens"] == 4
        resp.release()
    assert len(set(control.peers)) == 1  # one keep-alive connection served all three
    pool.close()


async def test_chunked_stream_arrives_piece_by_piece(fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    control.chunk_delay_s = 0.01
    pool = UpstreamPool(url, TIMEOUTS)
    resp = await pool.post("/v1/completions", body(max_tokens=5, stream=True), HEADERS)
    assert resp.content_type.startswith("text/event-stream")
    pieces = []
    while (chunk := await resp.next_chunk()) is not None:
        pieces.append(chunk)
    resp.release()
    assert len(pieces) >= 5  # not buffered into one
    assert b"".join(pieces).endswith(b"data: [DONE]\n\n")
    pool.close()


async def test_idle_connections_expire(fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    pool = UpstreamPool(url, Timeouts(connect_s=2, read_s=5, keepalive_s=0.05))
    for _ in range(2):
        resp = await pool.post("/v1/completions", body(max_tokens=1), HEADERS)
        await resp.read()
        resp.release()
        await asyncio.sleep(0.1)
    assert len(set(control.peers)) == 2
    pool.close()


async def test_an_answer_not_read_to_its_end_closes_its_connection(
        fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    control.chunk_delay_s = 0.01
    pool = UpstreamPool(url, TIMEOUTS)
    resp = await pool.post("/v1/completions", body(max_tokens=50, stream=True), HEADERS)
    await resp.next_chunk()
    resp.release()  # not at the end: must not be reused mid-answer
    resp = await pool.post("/v1/completions", body(max_tokens=1), HEADERS)
    await resp.read()
    resp.release()
    assert len(set(control.peers)) == 2
    for _ in range(100):  # the engine sees its stream abandoned
        if control.streams_cancelled:
            break
        await asyncio.sleep(0.02)
    assert control.streams_cancelled == 1
    pool.close()


async def test_connection_close_answers_are_not_reused(fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    pool = UpstreamPool(url, TIMEOUTS)
    for _ in range(2):
        resp = await pool.post("/v1/completions", body(max_tokens=1),
                               {**HEADERS, "connection": "close"})
        await resp.read()
        resp.release()
    assert len(set(control.peers)) == 2
    pool.close()


async def test_a_body_larger_than_the_buffer_flows_through_backpressure(
        fake: tuple[FakeControl, str]) -> None:
    _, url = fake
    pool = UpstreamPool(url, TIMEOUTS)
    tokens = 400_000  # ~2.8 MB of "tN" words, more than twice the buffer bound
    resp = await pool.post("/v1/completions", body(max_tokens=tokens), HEADERS)
    await asyncio.sleep(0.3)  # let the engine push while nobody reads
    assert resp._buffered <= MAX_BUFFER_BYTES + 256 * 1024  # paused near the bound
    answer = json.loads(await resp.read())
    resp.release()
    assert answer["usage"]["completion_tokens"] == tokens
    assert answer["choices"][0]["text"].endswith(f"t{tokens - 1}")
    pool.close()


async def test_refused_and_silent_engines_raise_distinct_errors(
        fake: tuple[FakeControl, str]) -> None:
    with pytest.raises(ConnectRefused):
        await UpstreamPool(f"http://127.0.0.1:{free_port()}", TIMEOUTS).post(
            "/v1/completions", body(), HEADERS)
    control, url = fake
    control.mode = Mode.HANG
    with pytest.raises(ReadTimeout):
        await UpstreamPool(url, Timeouts(2, 0.2, 30)).post("/v1/completions", body(), HEADERS)


def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError, match="plain HTTP"):
        UpstreamPool("https://engine:8001", TIMEOUTS)
    pool = UpstreamPool("http://[::1]:8001", TIMEOUTS)
    assert (pool.host, pool.port) == ("::1", 8001)
    assert UpstreamPool("http://engine", TIMEOUTS).port == 80


async def test_read_timeout_counts_silence_not_total_time(
        fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    control.chunk_delay_s = 0.1  # 10 events over ~1 s, never silent for 0.3 s
    pool = UpstreamPool(url, Timeouts(connect_s=2, read_s=0.3, keepalive_s=30))
    resp = await pool.post("/v1/completions", body(max_tokens=9, stream=True), HEADERS)
    assert (await resp.read()).endswith(b"data: [DONE]\n\n")
    resp.release()
    control.mode, control.fail_after = Mode.HANG_MIDSTREAM, 3
    resp = await pool.post("/v1/completions", body(max_tokens=9, stream=True), HEADERS)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ReadTimeout):
        await resp.read()
    assert asyncio.get_running_loop().time() - started < 1.5  # 3 x 0.1 s + 0.3 s of silence
    resp.close()
    pool.close()
