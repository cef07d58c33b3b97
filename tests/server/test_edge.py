"""The router's HTTP edge over raw sockets: size limits, deadlines, the connection cap and
keep-alive, each a finding of the outside review reproduced against a real router."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack

import httpx
import pytest

from server.edge import uvicorn_options
from server.settings import RouterSettings
from tests.helpers.fake_upstream import FakeControl
from tests.helpers.router import TEST_KEY, RouterFactory
from tests.helpers.servers import ServerThread

BODY = json.dumps({"model": "fake-model", "prompt": "hi", "max_tokens": 2}).encode()
HEAD = (b"POST /v1/completions HTTP/1.1\r\nhost: router\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + TEST_KEY.encode() + b"\r\n")


def request(extra_headers: bytes = b"", body: bytes = BODY) -> bytes:
    return HEAD + extra_headers + b"content-length: %d\r\n\r\n" % len(body) + body


def connect(router: ServerThread, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", router.port), timeout=timeout_s)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """One answer's status and body (content-length framed); (0, b"") at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ", 2)[1]), body


def trickle(sock: socket.socket, pieces: Iterable[bytes],
            pause_s: float = 0.05) -> tuple[int, bytes]:
    """Send `pieces` one by one until the router answers; its answer, or (0, b"")."""
    for piece in pieces:
        sock.sendall(piece)
        if select.select([sock], [], [], pause_s)[0]:
            return read_answer(sock)
    return 0, b""


def bytewise(data: bytes) -> list[bytes]:
    return [bytes([b]) for b in data]


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def router(make_router: RouterFactory, fake: tuple[FakeControl, str]) -> Iterator[ServerThread]:
    with make_router([fake[1]], header_timeout_s=0.5, body_timeout_s=0.5,
                     max_connections=8) as server:
        yield server


def test_a_1_mib_header_line_is_refused_with_431(router: ServerThread) -> None:
    """Regression: a 1 MiB header line was answered 200."""
    with connect(router) as sock:
        sock.sendall(request(b"x-filler: " + b"a" * (1 << 20) + b"\r\n"))
        status, body = read_answer(sock)
    assert status == 431
    assert json.loads(body)["error"]["code"] == "request_header_fields_too_large"


def test_an_unfinished_huge_head_is_cut_off_at_the_cap(router: ServerThread) -> None:
    """Regression: connections sending unfinished 20 MiB headers were buffered whole
    (20 of them held 559 MiB) before any key was checked."""
    line = b"x-more: " + b"a" * 4000 + b"\r\n"
    with connect(router) as sock:
        sock.sendall(HEAD)
        status, _ = trickle(sock, (line for _ in range((20 << 20) // len(line))), 0.01)
        assert status == 431 and closed_by_peer(sock)


def test_a_large_body_in_the_same_reads_as_its_head_is_not_taken_for_headers(
        router: ServerThread) -> None:
    """Regression (found by the token-limit test): the bytes of a read that held a head
    and the start of a large body were all counted as head, and the request got 431."""
    body = json.dumps({"model": "fake-model", "prompt": "x" * (2 << 20),
                       "max_tokens": 1}).encode()
    with connect(router) as sock:
        sock.sendall(request(body=body))
        assert read_answer(sock)[0] == 200


def test_too_many_headers_are_refused(router: ServerThread) -> None:
    with connect(router) as sock:
        sock.sendall(request(b"".join(b"x-h%d: 1\r\n" % i for i in range(150))))
        assert read_answer(sock)[0] == 431


def test_an_overlong_url_is_refused_with_414(router: ServerThread) -> None:
    with connect(router) as sock:
        sock.sendall(b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nhost: r\r\n\r\n")
        assert read_answer(sock)[0] == 414


def test_headers_sent_a_byte_at_a_time_are_timed_out(router: ServerThread) -> None:
    """Regression: 500 connections sending headers at one byte a second stayed open."""
    with connect(router) as sock:
        status, body = trickle(sock, bytewise(request()))
        assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
        assert closed_by_peer(sock)


def test_a_silent_connection_is_closed(router: ServerThread) -> None:
    """Regression: a connection that never sent a byte stayed open."""
    with connect(router) as sock:
        status, _ = read_answer(sock)
        assert status == 408 and closed_by_peer(sock)


def test_a_body_sent_a_byte_at_a_time_is_timed_out(router: ServerThread) -> None:
    """Regression: a chunked body at one byte a second was held open."""
    with connect(router) as sock:
        sock.sendall(HEAD + b"transfer-encoding: chunked\r\n\r\n")
        status, _ = trickle(sock, [b"1\r\n{\r\n"] * 100)
        assert status == 408 and closed_by_peer(sock)


def test_connections_over_the_cap_are_answered_503_and_closed(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    with make_router([fake[1]], max_connections=8) as router, ExitStack() as stack:
        for _ in range(8):
            stack.enter_context(connect(router))
        extra = stack.enter_context(connect(router))
        status, body = read_answer(extra)
        assert status == 503 and json.loads(body)["error"]["code"] == "server_overloaded"


def test_a_kept_connection_serves_requests_one_after_another(router: ServerThread) -> None:
    with connect(router) as sock:
        for _ in range(3):
            sock.sendall(request())
            assert read_answer(sock)[0] == 200
            time.sleep(1.0)  # idle between requests is keep-alive, not the 0.5 s head timeout


@pytest.mark.parametrize(("second", "status"), [
    (request(b"x-filler: " + b"a" * 9000 + b"\r\n"), 431),
    (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nhost: r\r\n\r\n", 414),
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (HEAD, 408),  # a head that never ends
], ids=["431", "414", "400", "408"])
def test_a_refusal_is_answered_on_a_kept_connection_too(
        router: ServerThread, second: bytes, status: int) -> None:
    """Regression (review): after a first request on a connection, refusals were dropped
    and the connection closed without an answer (a 502 behind the load balancer)."""
    with connect(router) as sock:
        sock.sendall(request())
        assert read_answer(sock)[0] == 200
        sock.sendall(second)
        assert read_answer(sock)[0] == status


def test_a_stray_crlf_during_a_stream_does_not_cut_it(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    """Regression (review): bytes that arrived while a stream was being answered started
    the next request's head deadline, which cut the stream in the middle."""
    control, url = fake
    control.chunk_delay_s = 0.1
    body = json.dumps({"model": "fake-model", "prompt": "hi", "max_tokens": 15,
                       "stream": True}).encode()
    with make_router([url], header_timeout_s=0.5) as router, connect(router) as sock:
        sock.sendall(request(body=body))
        time.sleep(0.2)
        sock.sendall(b"\r\n")  # in a packet of its own, while the stream is answered
        received = b""
        while not received.endswith(b"0\r\n\r\n"):  # the chunked body's end, ~1.5 s later
            chunk = sock.recv(65536)
            assert chunk, "the stream was cut"
            received += chunk
    assert b"data: [DONE]" in received


def test_a_client_that_stops_reading_is_disconnected_and_frees_the_engine(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    """A stream to a client that no longer reads held its engine slot for ever."""
    control, url = fake
    control.chunk_delay_s = 0.0001  # the fake engine yields to its loop between events
    body = json.dumps({"model": "fake-model", "prompt": "hi", "max_tokens": 400_000,
                       "stream": True}).encode()
    cancelled = 'llmfleet_requests_total{model="fake-model",status="cancelled"} 1.0'
    with make_router([url], send_timeout_s=0.5) as router:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", router.port))
        with sock:
            sock.sendall(request(body=body))  # and never read
            for _ in range(200):
                time.sleep(0.05)
                if cancelled in (metrics := httpx.get(router.url + "/metrics").text):
                    break
            assert cancelled in metrics
            assert f'llmfleet_requests_in_flight{{backend="{url}"}} 0.0' in metrics
            for _ in range(100):  # the engine saw its stream abandoned
                if control.streams_cancelled:
                    break
                time.sleep(0.05)
            assert control.streams_cancelled == 1 and control.streams_completed == 0


def test_keepalive_outlasts_the_load_balancers_idle_timeout(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    """Regression: the router closed idle connections after 5 s (uvicorn's default) while
    the load balancer keeps them 600 s; a request sent at about 5 s of idle got EOF."""
    settings = RouterSettings(backends=["http://e:1"], allow_anonymous=True)
    assert uvicorn_options(settings.edge())["timeout_keep_alive"] == 620
    with make_router([fake[1]], keepalive_s=1.5) as router, connect(router) as sock:
        sock.sendall(request())
        assert read_answer(sock)[0] == 200
        time.sleep(0.8)  # idle, within the keep-alive: the connection serves again
        sock.sendall(request())
        assert read_answer(sock)[0] == 200
        time.sleep(2.0)  # idle past it: closed
        assert closed_by_peer(sock)
