"""The router's archive (`server.archiving`): a real router in front of the fake engine,
writing its spool and sending it to S3 in moto's server mode. What a record keeps in each
setting and never keeps (the key), an S3 outage and a restart losing nothing, the drain
waiting for the last records, and the generated text assembled from answers and streams."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import httpx
import openai
import pytest
from botocore.config import Config
from prometheus_client import CollectorRegistry

from llmfleet.core.archive import Spool
from llmfleet.core.net import free_port
from llmfleet.core.wire.drain import DRAIN_HEADER, DRAIN_HEADER_VALUE
from server.accounting import Exchange, keep_answer
from server.archiving import Archive, ArchiveContent, RecordMeta
from server.metrics import RouterMetrics
from server.protocol import Endpoint
from tests.helpers.balancer import create_balancer
from tests.helpers.fake_upstream import FakeControl, create_fake_upstream
from tests.helpers.moto import start_moto
from tests.helpers.prometheus import scrape
from tests.helpers.router import TEST_KEY, RouterFactory, eventually, lists, start_router
from tests.helpers.servers import ServerThread

BUCKET = "llmfleet-archive"
AUTH = {"authorization": f"Bearer {TEST_KEY}"}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """moto's S3 with the archive's bucket; the router finds its credentials in the
    environment, as boto3 does anywhere."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    port = free_port()
    server = start_moto(port)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              config=Config(retries={"max_attempts": 1}))
        client.create_bucket(Bucket=BUCKET)
        yield client, endpoint
    finally:
        server.stop()


def archive_settings(spool: Path, endpoint: str | None,
                     content: str = "full") -> dict[str, Any]:
    return {"archive_dir": spool, "archive_bucket": BUCKET if endpoint else None,
            "archive_endpoint_url": endpoint, "archive_region": "us-east-1",
            "archive_content": content, "archive_host": "test-host",
            "archive_flush_s": 0.05, "archive_send_s": 0.1, "archive_segment_age_s": 0.1}


def archived(client: Any) -> tuple[list[dict[str, Any]], list[str], bytes]:
    """Every record in the bucket (by request id order of arrival), the keys, and all
    the objects' bytes unpacked."""
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    raw = b"".join(gzip.decompress(client.get_object(Bucket=BUCKET, Key=k)["Body"].read())
                   for k in keys)
    return [json.loads(line) for line in raw.splitlines()], keys, raw


def spooled(spool: Path) -> list[bytes]:
    """Every record in a spool, sealed or not."""
    return [line for path in sorted(spool.glob("*.jsonl")) for line in
            path.read_bytes().splitlines()]


def wait_records(client: Any, count: int) -> list[dict[str, Any]]:
    eventually(lambda: len(archived(client)[0]) >= count)
    return archived(client)[0]


def ask(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=TEST_KEY, max_retries=0, timeout=10)


def test_full_records_keep_prompt_and_generated_text_and_never_the_key(
        tmp_path: Path, s3: tuple[Any, str], make_router: RouterFactory,
        fake: tuple[FakeControl, str]) -> None:
    client, endpoint = s3
    with make_router([fake[1]], **archive_settings(tmp_path / "spool", endpoint)) as router, \
            ask(router.url) as api:
        chat = api.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        streamed = "".join(
            (c.choices[0].delta.content or "") for c in api.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "go"}],
                max_tokens=4, stream=True) if c.choices)
        text = api.completions.create(model="fake-model", prompt="once", max_tokens=2,
                                      stream=True)
        completion = "".join(c.choices[0].text for c in text if c.choices)
        answer = api.responses.create(model="fake-model", input="hello", max_output_tokens=2)
        api.embeddings.create(model="fake-model", input="vector me")
        httpx.post(router.url + "/tokenize", headers=AUTH,
                   json={"model": "fake-model", "prompt": "not archived"}).raise_for_status()
        records = wait_records(client, 5)
        _, keys, raw = archived(client)
        families = scrape(router.url)
    assert len(records) == 5  # the tokenizer route reads no model: not archived
    by_endpoint = {r["endpoint"]: r for r in records if not r["stream"]}
    one = by_endpoint["/v1/chat/completions"]
    assert one["request"]["messages"] == [{"role": "user", "content": "hi"}]
    assert one["output"] == [{"index": 0, "text": chat.choices[0].message.content,
                              "finish_reason": "length"}]
    assert (one["model"], one["status"], one["key_id"], one["stream"]) == (
        "fake-model", 200, "tester", False)
    assert one["prompt_tokens"] == 7 and one["completion_tokens"] == 3
    assert one["request_id"] and one["latency_s"] > 0 and one["ts"].endswith("Z")
    streams = [r for r in records if r["stream"]]
    assert sorted(r["output"][0]["text"] for r in streams) == sorted([streamed, completion])
    assert all(r["ttft_s"] is not None for r in streams)
    response = by_endpoint["/v1/responses"]
    assert response["output"][0]["text"] == answer.output_text
    embedding = by_endpoint["/v1/embeddings"]
    assert embedding["request"]["input"] == "vector me" and "output" not in embedding
    assert TEST_KEY.encode() not in raw and b"Bearer" not in raw
    day = records[0]["ts"][:10]
    assert all(k.startswith(f"archive/date={day}/model=fake-model/test-host-seg-")
               for k in keys)
    assert families.total("llmfleet_archive_records_total", result="spooled") == 5
    assert families.total("llmfleet_archive_segments_sent_total") >= 1


def test_metadata_records_keep_no_prompt_and_no_text(
        tmp_path: Path, s3: tuple[Any, str], make_router: RouterFactory,
        fake: tuple[FakeControl, str]) -> None:
    client, endpoint = s3
    settings = archive_settings(tmp_path / "spool", endpoint, content="metadata")
    with make_router([fake[1]], **settings) as router, ask(router.url) as api:
        api.chat.completions.create(model="fake-model", max_tokens=2,
                                    messages=[{"role": "user", "content": "secret plan"}])
        (record,) = wait_records(client, 1)
        _, _, raw = archived(client)
    assert "request" not in record and "output" not in record
    assert record["completion_tokens"] == 2 and b"secret plan" not in raw


def test_an_s3_outage_then_a_restart_loses_no_record(
        tmp_path: Path, s3: tuple[Any, str], make_router: RouterFactory,
        fake: tuple[FakeControl, str]) -> None:
    """While S3 cannot be reached the records wait in the spool; a router started again on
    the same spool, with S3 back, sends every one of them."""
    client, endpoint = s3
    spool = tmp_path / "spool"
    down = archive_settings(spool, f"http://127.0.0.1:{free_port()}")  # nothing listens
    with make_router([fake[1]], **down) as router, ask(router.url) as api:
        for i in range(3):
            api.completions.create(model="fake-model", prompt=f"p{i}", max_tokens=1)
        eventually(lambda: len(Spool(spool).sealed()) >= 1)
        eventually(lambda: scrape(router.url).total(
            "llmfleet_archive_records_total", result="spooled") == 3)
    assert archived(client)[0] == []
    with make_router([fake[1]], **archive_settings(spool, endpoint)):
        records = wait_records(client, 3)
    assert sorted(r["request"]["prompt"] for r in records) == ["p0", "p1", "p2"]
    assert Spool(spool).size() == 0


def test_a_drain_waits_for_the_archive_s_last_records_to_be_sealed(
        tmp_path: Path, make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    """On an instance the agent sends the spool; the router, told to drain, seals what it
    holds at once, and says how much is not sealed yet until it is none."""
    spool = tmp_path / "spool"
    settings = {**archive_settings(spool, None), "archive_segment_age_s": 3600.0}
    with make_router([fake[1]], **settings) as router, ask(router.url) as api:
        api.completions.create(model="fake-model", prompt="last words", max_tokens=1)
        eventually(lambda: Spool(spool).current_bytes() > 0)  # written, not sealed: an hour
        status = httpx.get(router.url + "/drain").json()
        assert status["archive_unsealed_bytes"] > 0
        httpx.post(router.url + "/drain", headers={DRAIN_HEADER: DRAIN_HEADER_VALUE})
        eventually(lambda: httpx.get(router.url + "/drain").json()[
            "archive_unsealed_bytes"] == 0)
    (segment,) = Spool(spool).sealed()
    assert json.loads(segment.read_bytes())["request"]["prompt"] == "last words"


def meta(request_id: str = "r") -> RecordMeta:
    return RecordMeta(request_id=request_id, engine_request_id="e", key_id="k", model="m",
                      endpoint=Endpoint.CHAT, status=200, stream=False, prompt_tokens=1,
                      completion_tokens=1, ttft_s=None, latency_s=0.1, route=None,
                      retried=False)


def bounded(tmp_path: Path, content: ArchiveContent) -> tuple[Archive, CollectorRegistry]:
    registry = CollectorRegistry()
    return Archive(Spool(tmp_path), content, RouterMetrics(registry).archive,
                   draining=lambda: False, max_pending_bytes=4096), registry


def dropped(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("llmfleet_archive_records_total", {"result": "dropped"})


def test_memory_waiting_for_the_spool_is_bounded_and_what_is_past_it_counted(
        tmp_path: Path) -> None:
    archive, registry = bounded(tmp_path, ArchiveContent.FULL)
    for _ in range(5):  # ~1.5 KB each: two fit
        archive.record(meta(), b"x" * 1000, [b"{}"])
    assert dropped(registry) == 3
    assert 3000 < archive.unsealed_bytes() <= 4096


def test_a_metadata_record_weighs_something_so_the_bound_and_the_drain_see_it(
        tmp_path: Path) -> None:
    archive, registry = bounded(tmp_path, ArchiveContent.METADATA)
    archive.record(meta(), b"{}", None)
    assert archive.unsealed_bytes() > 0  # a drain waits for it
    for _ in range(9):
        archive.record(meta(), b"{}", None)
    assert dropped(registry) == 2  # 512 bytes each: eight fit in 4 KiB


def test_a_long_stream_keeps_its_first_events_and_says_it_was_cut(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("server.accounting.MAX_ANSWER_BYTES", 100)
    ex = Exchange.__new__(Exchange)
    ex.answer, ex.answer_bytes, ex.answer_truncated, ex.via_peer = [], 0, False, False
    event = b'data: {"choices":[{"index":0,"text":"ab","finish_reason":null}]}\n\n'
    for _ in range(5):
        keep_answer(ex, event)
    assert ex.answer_truncated and ex.answer == [event]  # what fits of 100 bytes
    archive, _ = bounded(tmp_path, ArchiveContent.FULL)
    archive.record(replace(meta(), endpoint=Endpoint.COMPLETIONS, stream=True), b"{}",
                   ex.answer, ex.answer_truncated)

    async def written() -> None:
        await archive.flush()

    asyncio.run(written())
    record = json.loads((tmp_path / "current.jsonl").read_bytes())
    assert record["output"] == [{"index": 0, "text": "ab", "finish_reason": None}]
    assert record["output_truncated"] is True


def test_a_request_another_pool_serves_is_archived_once_by_the_router_that_served_it(
        tmp_path: Path) -> None:
    """Regression: the router that sent a request on archived it too when the hop failed
    after the post began (a load balancer's 502, a timeout, the client leaving)."""
    small, large = FakeControl(models=("small",)), FakeControl(models=("large",))
    targets: dict[str, str] = {}
    with ServerThread(create_fake_upstream(small)) as small_engine, \
            ServerThread(create_fake_upstream(large)) as large_engine, \
            ServerThread(create_balancer(targets, [])) as balancer:
        peers = {"small": balancer.url, "large": balancer.url}
        with start_router([small_engine.url], pool="small", peers=peers,
                          **archive_settings(tmp_path / "small", None)) as small_router, \
                start_router([large_engine.url], pool="large", peers=peers,
                             **archive_settings(tmp_path / "large", None)) as large_router:
            targets.update(small=small_router.url, large=large_router.url)
            eventually(lists(small_router, {"small", "large"}))
            body = {"model": "large", "prompt": "hop", "max_tokens": 2}
            served = httpx.post(small_router.url + "/v1/completions", json=body,
                                headers=AUTH, timeout=10)
            assert served.status_code == 200
            targets["large"] = f"http://127.0.0.1:{free_port()}"  # the hop fails: a 502
            failed = httpx.post(small_router.url + "/v1/completions", json=body,
                                headers=AUTH, timeout=10)
            assert failed.status_code == 502
            eventually(lambda: Spool(tmp_path / "large").size() > 0)
            time.sleep(0.3)  # several of the small router's flushes
    kept = {pool: spooled(tmp_path / pool) for pool in ("small", "large")}
    assert kept["small"] == []
    (record,) = kept["large"]
    assert json.loads(record)["pool"] == "large"


class SlowSpool(Spool):
    """A spool whose writes take a while: a batch is still being written when the router
    stops."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.began = threading.Event()

    def write(self, lines: Sequence[bytes]) -> int:
        self.began.set()
        time.sleep(0.3)
        return super().write(lines)


def test_a_batch_being_written_when_the_router_stops_is_not_lost(tmp_path: Path) -> None:
    """Regression: stopping cancelled the writer's task while its thread still held a batch,
    and the process exited under the thread: the last second's records were lost (found by
    `make bench-archive`, 1,279 of 4,800)."""
    spool = SlowSpool(tmp_path)
    archive = Archive(spool, ArchiveContent.METADATA, RouterMetrics(CollectorRegistry()).archive,
                      draining=lambda: False, flush_s=0.01)

    async def scenario() -> bytes:
        await archive.start()
        archive.record(meta("last"), b"{}", None)
        await asyncio.to_thread(spool.began.wait, 5)
        await archive.stop()
        # What is on disk once stop returns (not once the loop's threads are joined, which
        # the process did not wait for).
        return (tmp_path / "current.jsonl").read_bytes() if spool.current_bytes() else b""

    assert b'"request_id":"last"' in asyncio.run(scenario())


def test_a_record_whose_answer_cannot_be_read_is_kept_without_it_and_the_batch_written(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(*_: object) -> None:
        raise RecursionError("a body nested too deep")

    monkeypatch.setattr("server.archiving.output", broken)
    archive, _ = bounded(tmp_path, ArchiveContent.FULL)
    archive.record(meta("bad"), b"{}", [b"{}"])
    archive.record(replace(meta("good"), endpoint=Endpoint.EMBEDDINGS), b"{}", None)
    asyncio.run(archive.flush())
    records = [json.loads(line) for line in spooled(tmp_path)]
    assert [r["request_id"] for r in records] == ["bad", "good"]
    assert records[0]["output_omitted"] == "the answer could not be read"
    assert "request" not in records[0]
