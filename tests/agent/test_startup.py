"""Time to serving: boot to the first ready answer, once per boot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.fetch import PageFetcher
from agent.startup import StartupClock, boot_id, boot_time
from tests.helpers.servers import ServerThread

BOOTED_AT = 1_000_000.0


class Readiness:
    ready = False

    def app(self) -> Starlette:
        async def ready(request: Request) -> Response:
            return JSONResponse({"status": "ready"}, status_code=200 if self.ready else 503)

        return Starlette(routes=[Route("/ready", ready)])


@pytest.fixture
def router() -> Iterator[tuple[Readiness, str]]:
    readiness = Readiness()
    with ServerThread(readiness.app()) as server:
        yield readiness, server.url + "/ready"


def clock(url: str, marker: Path, boot: str, now: list[float]) -> StartupClock:
    return StartupClock(url, PageFetcher(2.0, 65536), marker, lambda: now[0], BOOTED_AT, boot)


def test_the_first_ready_answer_of_a_boot_gives_its_time_to_serving_once(
        router: tuple[Readiness, str], tmp_path: Path) -> None:
    readiness, url = router
    marker, now = tmp_path / "served-boot", [BOOTED_AT + 30]
    first = clock(url, marker, "boot-1", now)
    assert first.check() is None  # 503: not serving yet
    readiness.ready, now[0] = True, BOOTED_AT + 95.5
    assert first.check() == 95.5
    now[0] += 10
    assert first.check() is None  # once
    assert marker.read_text().strip() == "boot-1"


def test_an_agent_restarted_on_the_same_boot_does_not_publish_its_uptime(
        router: tuple[Readiness, str], tmp_path: Path) -> None:
    readiness, url = router
    readiness.ready = True
    marker, now = tmp_path / "served-boot", [BOOTED_AT + 95.5]
    assert clock(url, marker, "boot-1", now).check() == 95.5
    now[0] = BOOTED_AT + 86_400  # the agent restarts a day later
    assert clock(url, marker, "boot-1", now).check() is None
    # A warm pool's instance started again boots again: its start counts from that boot.
    assert clock(url, marker, "boot-2", now).check() == 86_400


def test_without_a_router_or_a_boot_time_nothing_is_measured(tmp_path: Path) -> None:
    fetcher = PageFetcher(1.0, 1024)
    assert StartupClock(None, fetcher, tmp_path / "m", lambda: 5.0, 1.0, "b").check() is None
    assert StartupClock("http://127.0.0.1:9/ready", fetcher, tmp_path / "m", lambda: 5.0,
                        None, "b").check() is None


def test_boot_time_and_id_come_from_proc(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nbtime 1733500000\nprocesses 42\n")
    assert boot_time(stat) == 1733500000.0
    assert boot_time(tmp_path / "missing") is None
    (tmp_path / "boot_id").write_text("6f0c\n")
    assert boot_id(tmp_path / "boot_id") == "6f0c"
    assert boot_id(tmp_path / "none") is None
    assert boot_time() is not None  # this machine's own /proc/stat
