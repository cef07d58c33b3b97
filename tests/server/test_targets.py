"""The backends file: engines join and drain while the router runs (server.targets)."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from server.backends import BackendPool, PoolLimits
from server.metrics import RouterMetrics
from server.settings import RouterSettings
from server.targets import (
    MAX_TARGETS_BYTES,
    TargetsError,
    TargetsFile,
    read_targets,
    write_targets,
)
from tests.helpers.fake_upstream import FakeControl, create_fake_upstream
from tests.helpers.router import TEST_KEY, start_router
from tests.helpers.servers import ServerThread

LIMITS = PoolLimits(max_inflight=4, max_queue=0, queue_timeout_s=1, health_interval_s=60,
                    health_timeout_s=1, unhealthy_threshold=1)


def write(path: Path, *urls: str) -> None:
    """Replace the file whole, as the module asks of whoever edits it."""
    write_targets(path, urls)


def test_the_file_lists_urls_once_in_order_without_comments(tmp_path: Path) -> None:
    path = tmp_path / "backends"
    path.write_text("# engines\n\nhttp://10.0.0.2:8001/  # the second\n"
                    "http://10.0.0.1:8001\nhttp://10.0.0.2:8001\n")
    assert read_targets(path) == ["http://10.0.0.2:8001", "http://10.0.0.1:8001"]


@pytest.mark.parametrize(("content", "says"), [
    (b"http://10.0.0.1:8001\nhttps://10.0.0.2:8001\n", "line 2"),
    (b"http://10.0.0.1:8001\n\xff\n", "not UTF-8"),
    (b"#" * (MAX_TARGETS_BYTES + 1), "over"),
])
def test_a_file_that_cannot_be_used_says_why_and_where(tmp_path: Path, content: bytes,
                                                        says: str) -> None:
    path = tmp_path / "backends"
    path.write_bytes(content)
    with pytest.raises(TargetsError, match=says):
        read_targets(path)
    with pytest.raises(TargetsError, match="cannot read"):
        read_targets(tmp_path / "missing")


def test_backends_and_a_backends_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        RouterSettings(backends=["http://10.0.0.1:8001"], backends_file=tmp_path / "b")


def test_the_router_will_not_start_on_a_file_it_cannot_read(tmp_path: Path) -> None:
    from server.app import create_app

    settings = RouterSettings(backends_file=tmp_path / "missing", allow_anonymous=True)
    with pytest.raises(ValueError, match="cannot read the backends file"):
        create_app(settings)


async def test_a_deregistered_backend_drains_its_requests_then_leaves(tmp_path: Path) -> None:
    path = tmp_path / "backends"
    registry = CollectorRegistry()
    with ServerThread(create_fake_upstream(FakeControl())) as one, \
            ServerThread(create_fake_upstream(FakeControl())) as two:
        write(path, one.url, two.url)
        async with httpx.AsyncClient() as client:
            pool = BackendPool([], client, LIMITS, RouterMetrics(registry),
                               targets=TargetsFile(path))
            await pool.check_all()
            first, second = pool.backends
            held = [await pool.acquire("fake-model") for _ in range(2)]
            assert {b.url for b in held} == {one.url, two.url}
            write(path, one.url)
            await pool.check_all()
            assert second.draining and not second.serving and second in pool.backends
            # New requests go to the one still registered, even with the other idle-er.
            assert [await pool.acquire("fake-model") for _ in range(2)] == [first, first]
            pool.release(next(b for b in held if b is second))
            assert pool.backends == [first]
            labels = {s.labels.get("backend") for m in registry.collect() for s in m.samples}
            assert two.url not in labels and one.url in labels


async def test_a_backend_added_to_the_file_serves_once_its_check_passes(tmp_path: Path) -> None:
    path = tmp_path / "backends"
    control = FakeControl()
    control.healthy = False  # still loading its model
    with ServerThread(create_fake_upstream(FakeControl())) as one, \
            ServerThread(create_fake_upstream(control)) as two:
        write(path, one.url)
        async with httpx.AsyncClient() as client:
            pool = BackendPool([], client, LIMITS, RouterMetrics(CollectorRegistry()),
                               targets=TargetsFile(path))
            await pool.check_all()
            write(path, one.url, two.url)
            await pool.check_all()
            added = pool.backends[1]
            assert added.url == two.url and not added.serving
            control.healthy = True
            await pool.check_all()
            assert added.serving
            picked = {(await pool.acquire("fake-model")).url for _ in range(2)}
            assert picked == {one.url, two.url}


async def test_a_broken_file_keeps_the_backends_and_warns_once(
        tmp_path: Path, fake: tuple[FakeControl, str], caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "backends"
    _, url = fake
    write(path, url)
    async with httpx.AsyncClient() as client:
        pool = BackendPool([], client, LIMITS, RouterMetrics(CollectorRegistry()),
                           targets=TargetsFile(path))
        await pool.check_all()
        path.write_text("ftp://10.0.0.9/\n")
        with caplog.at_level(logging.WARNING, logger="server.targets"):
            for _ in range(3):
                await pool.check_all()
        assert [b.url for b in pool.backends] == [url] and pool.backends[0].serving
        assert len([r for r in caplog.records if "keeping the backends" in r.message]) == 1


def test_requests_keep_being_served_while_engines_join_and_drain(tmp_path: Path) -> None:
    """Through the real router: every request answered while the file moves the traffic
    from one engine to another and back."""
    path = tmp_path / "backends"
    controls = [FakeControl(), FakeControl()]
    with ServerThread(create_fake_upstream(controls[0])) as one, \
            ServerThread(create_fake_upstream(controls[1])) as two:
        write(path, one.url)
        with start_router([], backends_file=path) as router:
            client = openai.OpenAI(base_url=f"{router.url}/v1", api_key=TEST_KEY,
                                   max_retries=0, timeout=10)

            def until_only(url: str) -> None:
                for _ in range(100):  # health rounds every 0.2 s: 20 s at most
                    ready = httpx.get(f"{router.url}/console/fleet",
                                      headers={"authorization": f"Bearer {TEST_KEY}"}).json()
                    serving = [b["url"] for b in ready["backends"]
                               if b["healthy"] and not b["draining"]]
                    if serving == [url]:
                        return
                    time.sleep(0.2)
                raise AssertionError(f"the router never served from {url} alone")

            for url in (two.url, one.url):
                write(path, url)
                until_only(url)
                before = [c.requests for c in controls]
                for _ in range(3):
                    answer = client.completions.create(model="fake-model", prompt="hi",
                                                       max_tokens=4)
                    assert answer.choices
                served = [c.requests - b for c, b in zip(controls, before, strict=True)]
                assert served == ([0, 3] if url == two.url else [3, 0])


def test_a_stream_in_flight_finishes_on_a_deregistered_engine_before_it_leaves(
        tmp_path: Path) -> None:
    """Through the real router: an answer being streamed when its engine is dropped from
    the file ends whole, while new requests go to the other engine; then the drained
    engine leaves the router's metrics."""
    path = tmp_path / "backends"
    slow, other = FakeControl(chunk_delay_s=0.2), FakeControl()
    with ServerThread(create_fake_upstream(slow)) as one, \
            ServerThread(create_fake_upstream(other)) as two:
        write(path, one.url)
        with start_router([], backends_file=path) as router:
            client = openai.OpenAI(base_url=f"{router.url}/v1", api_key=TEST_KEY,
                                   max_retries=0, timeout=10)
            stream = client.completions.create(model="fake-model", prompt="hi",
                                               max_tokens=16, stream=True)
            pieces = iter(stream)
            first = next(pieces)  # the answer has begun on `one`
            write(path, two.url)
            for _ in range(50):  # health rounds every 0.2 s: 10 s at most
                if other.requests == 0:
                    with contextlib.suppress(openai.APIStatusError):
                        client.completions.create(model="fake-model", prompt="x",
                                                  max_tokens=1)
                if other.requests:
                    break
                time.sleep(0.2)
            rest = list(pieces)
            assert first.choices and other.requests
            assert any(c.choices and c.choices[0].finish_reason == "length" for c in rest)
            assert slow.streams_completed == 1 and slow.streams_cancelled == 0
            for _ in range(50):  # the router releases the engine just after the answer ends
                metrics = httpx.get(f"{router.url}/metrics").text
                if f'backend="{one.url}"' not in metrics:
                    break
                time.sleep(0.1)
            assert f'backend="{one.url}"' not in metrics
            assert f'backend="{two.url}"' in metrics


async def test_a_draining_backend_listed_again_serves_again(tmp_path: Path) -> None:
    path = tmp_path / "backends"
    with ServerThread(create_fake_upstream(FakeControl())) as one, \
            ServerThread(create_fake_upstream(FakeControl())) as two:
        write(path, one.url, two.url)
        async with httpx.AsyncClient() as client:
            pool = BackendPool([], client, LIMITS, RouterMetrics(CollectorRegistry()),
                               targets=TargetsFile(path))
            await pool.check_all()
            held = await pool.acquire("fake-model")
            write(path, *(u for u in (one.url, two.url) if u != held.url))
            await pool.check_all()
            assert held.draining and held in pool.backends
            write(path, one.url, two.url)
            await pool.check_all()
            assert held.serving and not held.draining
            pool.release(held)
            assert held in pool.backends  # listed again: it stays when idle
