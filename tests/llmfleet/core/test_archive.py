"""The archive's spool and uploader (`llmfleet.core.archive`) against S3 in moto's server mode:
records grouped by date and model into gzip objects, an S3 outage and a restart losing
nothing, the spool's bound."""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from llmfleet.core.archive import Spool, SpoolBusy, Uploader, objects, seal, seal_abandoned
from llmfleet.core.net import free_port
from tests.helpers.moto import start_moto

BUCKET = "llmfleet-archive-test"


def s3(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"},
                                      connect_timeout=1, read_timeout=5))


@pytest.fixture
def bucket() -> Iterator[Any]:
    port = free_port()
    server = start_moto(port)
    try:
        client = s3(f"http://127.0.0.1:{port}")
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        server.stop()


def record(day: str, model: str, i: int) -> bytes:
    return json.dumps({"ts": f"{day}T10:00:{i:02d}Z", "model": model, "request_id": f"r{i}",
                       "prompt_tokens": 5, "completion_tokens": 7}).encode() + b"\n"


def sealed_now(spool: Spool) -> Path:
    segment = spool.seal_if_due(max_bytes=1, max_age_s=0)
    assert segment is not None
    return segment


def stored(client: Any) -> dict[str, list[dict[str, Any]]]:
    listing = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    found = {}
    for item in listing:
        body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        found[item["Key"]] = [json.loads(line) for line in gzip.decompress(body).splitlines()]
    return found


def test_records_reach_s3_grouped_by_date_and_model(tmp_path: Path, bucket: Any) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.write([record(day, model, i) for i, (day, model) in enumerate(
        [("2026-12-06", "tiny"), ("2026-12-07", "tiny"), ("2026-12-07", "wide"),
         ("2026-12-07", "tiny")])]) == 4
    sealed_now(spool)
    uploader = Uploader(spool.directory, bucket, BUCKET, "archive", "i-0abc")
    assert uploader.round() == 1
    found = stored(bucket)
    assert sorted(k.rsplit("/", 1)[0] for k in found) == [
        "archive/date=2026-12-06/model=tiny", "archive/date=2026-12-07/model=tiny",
        "archive/date=2026-12-07/model=wide"]
    by_group = {k.rsplit("/", 1)[0]: [r["request_id"] for r in v] for k, v in found.items()}
    assert by_group["archive/date=2026-12-07/model=tiny"] == ["r1", "r3"]
    assert all(k.split("/")[-1].startswith("i-0abc-seg-") for k in found)
    assert spool.sealed() == [] and spool.size() == 0


def test_an_s3_outage_and_a_restart_lose_nothing(tmp_path: Path, bucket: Any) -> None:
    spool = Spool(tmp_path / "spool")
    spool.write([record("2026-12-07", "tiny", i) for i in range(3)])
    sealed_now(spool)
    down = Uploader(spool.directory, s3(f"http://127.0.0.1:{free_port()}"), BUCKET, "a", "h")
    assert down.round() == 0  # nothing listens there: the segment stays
    assert down.failures == 1 and down.last_error == "EndpointConnectionError"
    assert len(spool.sealed()) == 1
    spool.write([record("2026-12-07", "tiny", 3)])  # more arrive during the outage
    # The process restarts: a new spool over the same directory finds all of it.
    again = Spool(tmp_path / "spool")
    assert again.size() == spool.size() > 0
    sealed_now(again)
    up = Uploader(again.directory, bucket, BUCKET, "a", "h")
    assert up.round() == 2  # the old segment, then the current one sealed
    ids = sorted(r["request_id"] for rows in stored(bucket).values() for r in rows)
    assert ids == ["r0", "r1", "r2", "r3"]
    assert up.last_error is None and again.size() == 0


def test_a_segment_sent_twice_writes_the_same_objects(tmp_path: Path) -> None:
    """A crash between sending a segment and deleting it sends it again: the same keys and
    bytes, so S3 holds it once."""
    spool = Spool(tmp_path / "spool")
    spool.write([record("2026-12-07", "tiny", 0)])
    segment = sealed_now(spool)
    assert objects(segment, "p/", "h") == objects(segment, "p/", "h")


def test_a_full_spool_drops_and_counts_rather_than_filling_the_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=300)
    kept = sum(spool.write([record("2026-12-07", "tiny", i)]) for i in range(10))
    assert 0 < kept < 10 and spool.stats.dropped == 10 - kept
    assert spool.size() <= 300
    # Sealed segments count too, until the sender deletes them: then there is room again.
    segment = sealed_now(spool)
    assert spool.write([record("2026-12-07", "tiny", 11)]) == 0
    segment.unlink()
    assert spool.write([record("2026-12-07", "tiny", 12)]) == 1


def test_a_segment_is_sealed_by_age_or_size_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.seal_if_due(max_bytes=1000, max_age_s=0) is None  # nothing to seal
    spool.write([record("2026-12-07", "tiny", 0)])
    assert spool.seal_if_due(max_bytes=1000, max_age_s=3600) is None
    assert spool.seal_if_due(max_bytes=10, max_age_s=3600) is not None
    spool.write([record("2026-12-07", "tiny", 1)])
    assert spool.seal_if_due(max_bytes=1000, max_age_s=0) is not None
    assert len(spool.sealed()) == 2 and spool.current_bytes() == 0


def test_spool_files_are_readable_by_the_sender_s_group_whatever_the_umask(
        tmp_path: Path) -> None:
    """On an instance the agent (in the directory's group) sends what the router writes,
    and the router runs with umask 0077."""
    old = os.umask(0o077)
    try:
        spool = Spool(tmp_path / "spool", file_mode=0o640)
        spool.write([record("2026-12-07", "tiny", 0)])
    finally:
        os.umask(old)
    assert stat.S_IMODE(sealed_now(spool).stat().st_mode) == 0o640


def test_odd_model_names_cannot_escape_their_prefix(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.write([record("2026-12-07", "../../etc/passwd", 0)])
    (key,) = objects(sealed_now(spool), "archive/", "h")
    assert key.startswith("archive/date=2026-12-07/model=.._.._etc_passwd/")


def test_a_torn_last_line_is_kept_under_unknown(tmp_path: Path) -> None:
    """A crash in the middle of a write can leave half a line: it is sent, not lost with
    the segment or blocking it."""
    spool = Spool(tmp_path / "spool")
    spool.write([record("2026-12-07", "tiny", 0), record("2026-12-07", "tiny", 1)[:20]])
    keys = sorted(objects(sealed_now(spool), "", "h"))
    assert [k.rsplit("/", 1)[0] for k in keys] == ["date=2026-12-07/model=tiny",
                                                  "date=unknown/model=unknown"]


def test_send_all_gives_up_at_its_deadline(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.write([record("2026-12-07", "tiny", 0)])
    sealed_now(spool)
    down = Uploader(spool.directory, s3(f"http://127.0.0.1:{free_port()}"), BUCKET, "a", "h")
    assert down.send_all(time.monotonic() + 0.5, pause_s=0.2) is False
    assert len(spool.sealed()) == 1


def test_a_record_cut_short_by_a_crash_is_removed_before_the_next_is_written(
        tmp_path: Path) -> None:
    """Regression: a half-written line (the process died in a write) took the next record
    with it, glued to its end: two lost instead of one."""
    spool = Spool(tmp_path / "spool")
    spool.write([record("2026-12-07", "tiny", 0)])
    with (tmp_path / "spool" / "current.jsonl").open("ab") as out:
        out.write(record("2026-12-07", "tiny", 1)[:25])  # the crash
    again = Spool(tmp_path / "spool")
    assert again.repair() == 25
    again.write([record("2026-12-07", "tiny", 2)])
    lines = (tmp_path / "spool" / "current.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["r0", "r2"]


def test_a_write_the_disk_refuses_half_way_leaves_no_half_record(tmp_path: Path) -> None:
    """A full disk takes part of a write and refuses the rest: the part is cut off again, and
    the records are counted as dropped (the file-size limit stands in for the full disk)."""
    spool = Spool(tmp_path / "spool")
    spool.write([record("2026-12-07", "tiny", 0)])
    size = spool.current_bytes()
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, hard))
    try:
        written = spool.write([record("2026-12-07", "tiny", i) for i in range(1, 4)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert written == 0 and spool.stats.dropped == 3
    assert spool.current_bytes() == size
    spool.write([record("2026-12-07", "tiny", 4)])
    lines = (tmp_path / "spool" / "current.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["r0", "r4"]


def test_a_spool_directory_deleted_under_the_writer_is_made_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    shutil.rmtree(tmp_path / "spool")
    assert spool.write([record("2026-12-07", "tiny", 0)]) == 1


def test_an_unreadable_segment_does_not_hold_up_the_others(tmp_path: Path,
                                                           bucket: Any) -> None:
    spool = Spool(tmp_path / "spool")
    (tmp_path / "spool" / "seg-0000000000001-000001.jsonl").mkdir()  # cannot be read
    spool.write([record("2026-12-07", "tiny", 0)])
    sealed_now(spool)
    uploader = Uploader(spool.directory, bucket, BUCKET, "a", "h")
    assert uploader.round() == 1
    assert uploader.failures == 1 and uploader.last_error is None  # the next one went
    assert [r["request_id"] for rows in stored(bucket).values() for r in rows] == ["r0"]


def test_sealing_never_overwrites_a_sealed_segment(tmp_path: Path) -> None:
    names = iter(["seg-0000000000001-000001.jsonl", "seg-0000000000001-000001.jsonl",
                  "seg-0000000000002-000001.jsonl"])
    (tmp_path / "current.jsonl").write_bytes(b"first\n")
    assert seal(tmp_path, lambda: next(names)) == tmp_path / "seg-0000000000001-000001.jsonl"
    (tmp_path / "current.jsonl").write_bytes(b"second\n")
    assert seal(tmp_path, lambda: next(names)) == tmp_path / "seg-0000000000002-000001.jsonl"
    assert (tmp_path / "seg-0000000000001-000001.jsonl").read_bytes() == b"first\n"
    assert seal(tmp_path) is None  # nothing current


def test_the_sender_seals_a_spool_only_once_its_writer_is_gone(tmp_path: Path) -> None:
    """A router that does not answer may be only slow: while it holds the spool's lock, the
    agent leaves its current segment alone; once it is gone, the agent seals it."""
    writer = Spool(tmp_path / "spool")
    writer.hold()
    writer.write([record("2026-12-07", "tiny", 0)])
    assert seal_abandoned(tmp_path / "spool") is None
    assert writer.current_bytes() > 0
    with pytest.raises(SpoolBusy):  # nor may a second writer take it
        Spool(tmp_path / "spool").hold(wait_s=0.1)
    writer.release()
    sealed = seal_abandoned(tmp_path / "spool")
    assert sealed is not None and b'"r0"' in sealed.read_bytes()


def test_a_spool_no_writer_ever_locked_is_sealed_by_the_sender(tmp_path: Path) -> None:
    (tmp_path / "current.jsonl").write_bytes(record("2026-12-07", "tiny", 0))
    assert seal_abandoned(tmp_path) is not None
    assert seal_abandoned(tmp_path) is None  # nothing current any more
