"""The archive's spool and uploader (`server.archive`) against S3 in moto's server mode:
records grouped by date and model into gzip objects, an S3 outage and a restart losing
nothing, the spool's bound."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from llmfleet.core.net import free_port
from server.archive import Spool, Uploader, objects
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


def record(day: str, model: str, i: int) -> dict[str, Any]:
    return {"ts": f"{day}T10:00:{i:02d}Z", "model": model, "request_id": f"r{i}",
            "prompt_tokens": 5, "completion_tokens": 7}


def stored(client: Any) -> dict[str, list[dict[str, Any]]]:
    listing = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    found = {}
    for item in listing:
        body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        found[item["Key"]] = [json.loads(line) for line in gzip.decompress(body).splitlines()]
    return found


def test_records_reach_s3_grouped_by_date_and_model(tmp_path: Path, bucket: Any) -> None:
    spool = Spool(tmp_path / "spool")
    for i, (day, model) in enumerate([("2026-12-06", "tiny"), ("2026-12-07", "tiny"),
                                      ("2026-12-07", "wide"), ("2026-12-07", "tiny")]):
        assert spool.append(record(day, model, i))
    uploader = Uploader(spool, bucket, BUCKET, "archive", "i-0abc", segment_age_s=0)
    assert uploader.round() == 1
    found = stored(bucket)
    assert sorted(k.rsplit("/", 1)[0] for k in found) == [
        "archive/date=2026-12-06/model=tiny", "archive/date=2026-12-07/model=tiny",
        "archive/date=2026-12-07/model=wide"]
    by_group = {k.rsplit("/", 1)[0]: [r["request_id"] for r in v] for k, v in found.items()}
    assert by_group["archive/date=2026-12-07/model=tiny"] == ["r1", "r3"]
    assert all(k.split("/")[-1].startswith("i-0abc-seg-") for k in found)
    assert spool.sealed() == [] and spool.size == 0


def test_an_s3_outage_and_a_restart_lose_nothing(tmp_path: Path, bucket: Any) -> None:
    spool = Spool(tmp_path / "spool")
    for i in range(3):
        spool.append(record("2026-12-07", "tiny", i))
    down = Uploader(spool, s3(f"http://127.0.0.1:{free_port()}"), BUCKET, "a", "h",
                    segment_age_s=0)
    assert down.round() == 0  # nothing listens there: the segment stays
    assert len(spool.sealed()) == 1
    spool.append(record("2026-12-07", "tiny", 3))  # more arrive during the outage
    # The router restarts: a new spool over the same directory finds all of it.
    again = Spool(tmp_path / "spool")
    assert again.size == spool.size
    up = Uploader(again, bucket, BUCKET, "a", "h", segment_age_s=0)
    assert up.round() == 2  # the old segment, then the current one sealed
    ids = sorted(r["request_id"] for rows in stored(bucket).values() for r in rows)
    assert ids == ["r0", "r1", "r2", "r3"]


def test_a_segment_sent_twice_writes_the_same_objects(tmp_path: Path) -> None:
    """A crash between sending a segment and deleting it sends it again: the same keys and
    bytes, so S3 holds it once."""
    spool = Spool(tmp_path / "spool")
    spool.append(record("2026-12-07", "tiny", 0))
    segment = spool.seal()
    assert segment is not None
    assert objects(segment, "p/", "h") == objects(segment, "p/", "h")


def test_a_full_spool_drops_and_counts_rather_than_filling_the_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=300)
    kept = sum(spool.append(record("2026-12-07", "tiny", i)) for i in range(10))
    assert 0 < kept < 10 and spool.stats.dropped == 10 - kept
    assert spool.size <= 300


def test_odd_model_names_cannot_escape_their_prefix(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append(record("2026-12-07", "../../etc/passwd", 0))
    segment = spool.seal()
    assert segment is not None
    (key,) = objects(segment, "archive/", "h")
    assert key.startswith("archive/date=2026-12-07/model=.._.._etc_passwd/")
