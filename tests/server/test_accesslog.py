"""The buffered JSON access log."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import sys

import httpx
import pytest

from server.accesslog import LOGGER_NAME, AccessLog
from tests.helpers.fake_upstream import FakeControl
from tests.helpers.router import TEST_KEY, RouterFactory


@pytest.fixture
def access_enabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)


def test_lines_are_buffered_until_flush_then_one_json_object_each(access_enabled: None) -> None:
    out = io.StringIO()
    log = AccessLog(out)
    assert log.enabled
    log.record({"request_id": "r1", "status": 200})
    log.record({"request_id": "r2", "status": 429})
    assert out.getvalue() == ""
    log.flush()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["request_id"], x["status"], x["logger"]) for x in lines] == [
        ("r1", 200, LOGGER_NAME), ("r2", 429, LOGGER_NAME)]
    assert lines[0]["ts"].endswith("Z")


def test_a_full_buffer_is_written_at_once(access_enabled: None) -> None:
    out = io.StringIO()
    log = AccessLog(out, max_buffer_bytes=200)
    for i in range(3):
        log.record({"request_id": f"r{i}", "padding": "x" * 80})
    assert out.getvalue().count("\n") >= 2


def test_disabled_when_the_logger_is_above_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    assert not AccessLog(io.StringIO()).enabled


def test_stop_flushes_what_is_buffered(access_enabled: None) -> None:
    out = io.StringIO()

    async def run() -> None:
        log = AccessLog(out, flush_interval_s=60)
        await log.start()
        log.record({"request_id": "last"})
        await log.stop()

    asyncio.run(run())
    assert '"request_id": "last"' in out.getvalue()


def test_router_logs_each_request_with_key_id_never_key(
        access_enabled: None, fake: tuple[FakeControl, str], make_router: RouterFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, url = fake
    body = {"model": "fake-model", "prompt": "hi", "max_tokens": 3}
    with make_router([url]) as router:
        resp = httpx.post(router.url + "/v1/completions", json=body,
                          headers={"authorization": f"Bearer {TEST_KEY}"})
    # Leaving the router's context ran its shutdown, which flushes the log.
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()
             if f'"logger": "{LOGGER_NAME}"' in line]
    assert len(lines) == 1
    entry = lines[0]
    assert entry["request_id"] == resp.headers["x-request-id"]
    assert (entry["key_id"], entry["model"], entry["status"]) == ("tester", "fake-model", 200)
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (7, 3)
    assert TEST_KEY not in json.dumps(entry)


def test_refused_requests_are_counted_and_logged(
        access_enabled: None, fake: tuple[FakeControl, str], make_router: RouterFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, url = fake
    good = {"authorization": f"Bearer {TEST_KEY}"}
    with make_router([url]) as router:
        cases = [({"authorization": "Bearer nope"}, {"model": "fake-model", "prompt": "x"}),
                 (good, {"model": "no-such-model", "prompt": "x"}),
                 (good, {"model": "fake-model"})]
        statuses = [httpx.post(router.url + "/v1/completions", json=body, headers=headers
                               ).status_code for headers, body in cases]
        metrics = httpx.get(router.url + "/metrics").text
    assert statuses == [401, 404, 400]
    # None got as far as a valid request for a served model: all three are "(none)".
    assert 'llmfleet_requests_total{model="(none)",status="4xx"} 3.0' in metrics
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()
             if f'"logger": "{LOGGER_NAME}"' in line]
    assert [(x["status"], x["error"], x["key_id"]) for x in lines] == [
        (401, "invalid_api_key", None), (404, "model_not_found", "tester"),
        (400, "invalid_request_error", "tester")]


def test_a_full_disk_drops_access_log_lines_instead_of_failing_requests(
        access_enabled: None, fake: tuple[FakeControl, str], make_router: RouterFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a flush that raised OSError kept its lines and raised again inside every
    request's accounting, so all requests failed with 500 while /ready said 200."""
    _, url = fake
    body = {"model": "fake-model", "prompt": "hi", "max_tokens": 3}
    full = open("/dev/full", "w")  # noqa: SIM115  (every write to it fails with ENOSPC)
    with contextlib.closing(_Quiet(full)), make_router([url]) as router:
        monkeypatch.setattr(sys, "stderr", full)
        with httpx.Client(base_url=router.url, timeout=10,
                          headers={"authorization": f"Bearer {TEST_KEY}"}) as http:
            # 64 KiB of lines fills the buffer at least once: a flush on the request path.
            statuses = {http.post("/v1/completions", json=body).status_code
                        for _ in range(300)}
            metrics = http.get("/metrics").text
        monkeypatch.undo()
    assert statuses == {200}
    dropped = re.search(r"^llmfleet_access_log_dropped_lines_total (\S+)$", metrics, re.M)
    assert dropped is not None and float(dropped.group(1)) >= 100


class _Quiet:
    """Closes a file whose last flush may fail too (it is the full disk's)."""

    def __init__(self, file: io.TextIOBase) -> None:
        self.file = file

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


def test_the_log_writes_again_once_the_disk_has_room(access_enabled: None) -> None:
    class Flaky(io.StringIO):
        full = True

        def write(self, text: str) -> int:
            if self.full:
                raise OSError(28, "No space left on device")
            return super().write(text)

    out = Flaky()
    log = AccessLog(out)
    log.record({"request_id": "lost"})
    log.flush()
    out.full = False
    log.record({"request_id": "kept"})
    log.flush()
    assert log.dropped_total == 1
    assert '"kept"' in out.getvalue() and '"lost"' not in out.getvalue()
