"""The request-path HTTP/1.1 client against a real (fake) engine over TCP."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import pytest

from llmfleet.core.net import free_port
from server.upstream import (
    MAX_BUFFER_BYTES,
    ConnectRefused,
    Disconnected,
    ReadTimeout,
    Timeouts,
    UpstreamPool,
)
from tests.helpers.fake_upstream import FakeControl, Mode
from tests.helpers.servers import Answer, RawEngine, json_answer

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


async def test_a_connection_handed_back_after_its_pool_closed_is_dropped(
        fake: tuple[FakeControl, str]) -> None:
    """Regression: when a drained engine's pool closed while its last answer was still in
    hand, the connection handed back afterwards went into the closed pool's idle list and
    stayed open (and was reused)."""
    control, url = fake
    pool = UpstreamPool(url, TIMEOUTS)
    resp = await pool.post("/v1/completions", body(max_tokens=2), HEADERS)
    await resp.read()
    pool.close()
    resp.release()
    again = await pool.post("/v1/completions", body(max_tokens=2), HEADERS)
    await again.read()
    again.release()
    assert len(set(control.peers)) == 2
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


# -- answers that once reached the wrong request (a misbehaving engine at the byte level) --

def _stray_later(first: dict[str, int], stray: bytes) -> Answer:
    """A complete answer, then more bytes a little later, while the connection is idle."""
    answer = json_answer(first)

    def send(conn: socket.socket) -> bool:
        answer(conn)
        time.sleep(0.1)
        conn.sendall(stray)
        return True

    return send


STRAY = b'HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{"n": 66}'


async def _ask(pool: UpstreamPool) -> tuple[int, bytes]:
    resp = await pool.post("/v1/completions", body(), HEADERS)
    answer = await resp.read()
    resp.release()
    return resp.status, answer


async def test_a_100_continue_in_its_own_packet_is_skipped_not_taken_for_the_answer() -> None:
    """Regression: status 100 was returned as the answer, and every later answer on the
    connection went to the request after its own."""
    continue_first = json_answer({"n": 1}, before=b"HTTP/1.1 100 Continue\r\n\r\n")
    with RawEngine([continue_first, json_answer({"n": 2})]) as engine:
        pool = UpstreamPool(engine.url, TIMEOUTS)
        assert await _ask(pool) == (200, b'{"n": 1}')
        assert await _ask(pool) == (200, b'{"n": 2}')
        pool.close()


@pytest.mark.parametrize("first", [
    json_answer({"n": 1}, after=STRAY),  # in the same packet as the answer
    _stray_later({"n": 1}, STRAY),  # while the connection waits in the pool
], ids=["same-packet", "while-idle"])
async def test_bytes_after_a_complete_answer_reach_no_later_request(first: Answer) -> None:
    """Regression: bytes behind a complete answer were handed to the next request."""
    with RawEngine([first, json_answer({"n": 2})]) as engine:
        pool = UpstreamPool(engine.url, TIMEOUTS)
        assert await _ask(pool) == (200, b'{"n": 1}')
        await asyncio.sleep(0.6)  # the stray bytes come 0.1 s after the answer
        assert await _ask(pool) == (200, b'{"n": 2}')
        assert engine.connections == 2  # the first connection was discarded
        pool.close()


async def test_a_204_followed_by_bytes_stays_a_204_and_the_bytes_reach_nobody() -> None:
    """Regression: a 204 with bytes behind it turned into a 200 for the next request."""
    def no_content(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n" + STRAY)
        return True

    with RawEngine([no_content, json_answer({"n": 2})]) as engine:
        pool = UpstreamPool(engine.url, TIMEOUTS)
        assert await _ask(pool) == (204, b"")
        assert await _ask(pool) == (200, b'{"n": 2}')
        pool.close()


async def test_a_body_delimited_by_the_connection_closing_completes() -> None:
    """Regression: an answer without content-length or chunking never completed."""
    def close_delimited(conn: socket.socket) -> bool:
        conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"n": 1}')
        return False  # and close

    with RawEngine([close_delimited]) as engine:
        pool = UpstreamPool(engine.url, TIMEOUTS)
        assert await _ask(pool) == (200, b'{"n": 1}')
        pool.close()


async def test_an_oversized_answer_head_is_refused() -> None:
    """Regression: header size was unbounded (16 MB held the event loop for 5 s)."""
    def huge_head(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nx-filler: " + b"a" * (1 << 20) + b"\r\n"
                     b"content-length: 2\r\n\r\n{}")
        return True

    with RawEngine([huge_head]) as engine:
        pool = UpstreamPool(engine.url, TIMEOUTS)
        with pytest.raises(Disconnected, match="head is over"):
            await pool.post("/v1/completions", body(), HEADERS)
        pool.close()


async def test_a_body_without_a_length_cut_by_a_reset_is_not_taken_as_complete() -> None:
    """Regression (review): a close-delimited body ended by a reset passed as a whole 200."""
    def reset_midway(conn: socket.socket) -> bool:
        conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"n": ')
        time.sleep(0.05)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False  # closing with linger 0 sends a reset

    with RawEngine([reset_midway]) as engine:
        pool = UpstreamPool(engine.url, TIMEOUTS)
        resp = await pool.post("/v1/completions", body(), HEADERS)
        with pytest.raises(Disconnected):
            await resp.read()
        resp.close()
        pool.close()


async def test_an_upgrade_answer_from_an_engine_fails_the_request_cleanly(
        caplog: pytest.LogCaptureFixture) -> None:
    """Regression (review): a 101 from an engine escaped as an unhandled parser upgrade."""
    def upgrade(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n"
                     b"connection: upgrade\r\n\r\nxyz")
        return True

    with RawEngine([upgrade]) as engine:
        pool = UpstreamPool(engine.url, Timeouts(connect_s=2, read_s=2, keepalive_s=30))
        with pytest.raises(Disconnected, match="unparsable"):
            await pool.post("/v1/completions", body(), HEADERS)
        pool.close()
    assert "Fatal error" not in caplog.text
