"""The archive (opt-in): completed requests kept as compressed JSON lines in S3.

Off the request path, and durable across outages and restarts: the router appends each
record to a spool on the instance's disk (`Spool`, one line a record, a plain file written
with one `write` per record), and an uploader (`Uploader`) seals the spool's current segment
when it is old or large enough and sends each sealed segment to S3, gzip-compressed, one
object per date and model: `<prefix>date=YYYY-MM-DD/model=<model>/<host>-<segment>.jsonl.gz`.
A segment is deleted only once every object of it is in S3; an object's key is the same
on every try, so a segment sent again after a crash or an outage overwrites what it had
sent, never duplicates it. The spool is bounded (`max_bytes`): past it, new records are
dropped and counted rather than filling the disk, because the archive must never be why a
request fails.

Records are what the caller gives; the router's own (what is kept, and what never is:
keys, credentials) are defined where they are made. Work in progress for issue 20: the
router does not write records yet.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

CURRENT = "current.jsonl"
SEALED = re.compile(r"seg-(\d{13})-(\d{6})\.jsonl")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class SpoolStats:
    dropped: int = 0  # records refused: the spool was full, or the disk failed


class Spool:
    """Records on disk, waiting for S3: `current.jsonl` takes appends; sealed segments
    (`seg-<ms>-<seq>.jsonl`, oldest first by name) wait to be sent."""

    def __init__(self, directory: Path, max_bytes: int = 1 << 30) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.stats = SpoolStats()
        directory.mkdir(parents=True, exist_ok=True)
        self._current = directory / CURRENT
        self._size = sum(p.stat().st_size for p in self._files())
        self._opened_s = time.time()
        self._seq = 0

    def _files(self) -> list[Path]:
        return [*self.sealed(), *([self._current] if self._current.exists() else [])]

    @property
    def size(self) -> int:
        """Bytes on disk, sealed and current."""
        return self._size

    def append(self, record: dict[str, Any]) -> bool:
        """Add a record; False when it was dropped (the spool full, or the disk failing)."""
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        if self._size + len(line) > self.max_bytes:
            self.stats.dropped += 1
            return False
        try:
            with self._current.open("ab") as out:  # one write: a line is whole or absent
                out.write(line)
        except OSError as exc:
            self.stats.dropped += 1
            log.warning("archive spool: a record could not be written: %s", exc.strerror)
            return False
        self._size += len(line)
        return True

    def current_bytes(self) -> int:
        return self._current.stat().st_size if self._current.exists() else 0

    def current_age_s(self) -> float:
        return time.time() - self._opened_s

    def seal(self) -> Path | None:
        """Close the current segment for sending; None when it holds nothing."""
        if self.current_bytes() == 0:
            return None
        self._seq = (self._seq + 1) % 1_000_000
        sealed = self.directory / f"seg-{int(time.time() * 1000):013d}-{self._seq:06d}.jsonl"
        os.replace(self._current, sealed)
        self._opened_s = time.time()
        return sealed

    def sealed(self) -> list[Path]:
        """Segments waiting to be sent, oldest first."""
        return sorted(p for p in self.directory.iterdir() if SEALED.fullmatch(p.name))

    def remove(self, segment: Path) -> None:
        size = segment.stat().st_size
        segment.unlink()
        self._size -= size


class S3Client(Protocol):
    def put_object(self, **kwargs: Any) -> Any: ...


def objects(segment: Path, prefix: str, host: str) -> dict[str, bytes]:
    """A sealed segment's objects: its records grouped by date and model, each group a
    gzip of its lines under a key that is the same on every try. A line that does not
    parse (a crash mid-line cannot make one: each is one write) goes to model `unknown`."""
    groups: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    for line in segment.read_bytes().splitlines(keepends=True):
        try:
            record = json.loads(line)
            day = str(record.get("ts", ""))[:10] or "unknown"
            model = str(record.get("model") or "unknown")
        except (ValueError, AttributeError):
            day, model = "unknown", "unknown"
        groups[(_safe(day), _safe(model))].append(line)
    name = segment.name.removesuffix(".jsonl")
    return {f"{prefix}date={day}/model={model}/{_safe(host)}-{name}.jsonl.gz":
            gzip.compress(b"".join(lines), mtime=0)
            for (day, model), lines in sorted(groups.items())}


def _safe(text: str) -> str:
    """A key segment with nothing but letters, digits, `.`, `_` and `-`."""
    return _UNSAFE.sub("_", text)[:200] or "_"


class Uploader:
    """Seals the spool's segment when it is old or large enough and sends what is sealed."""

    def __init__(self, spool: Spool, client: S3Client, bucket: str, prefix: str, host: str,
                 segment_bytes: int = 8 << 20, segment_age_s: float = 60.0) -> None:
        self.spool, self.client, self.bucket = spool, client, bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.host = host
        self.segment_bytes, self.segment_age_s = segment_bytes, segment_age_s
        self.sent_segments = 0

    def round(self) -> int:
        """One round (run it in a thread: boto3 blocks): seal if due, send every sealed
        segment, oldest first, stopping at the first failure (S3 down: the next round tries
        again). Returns the segments sent."""
        if (self.spool.current_bytes() >= self.segment_bytes
                or (self.spool.current_bytes() and
                    self.spool.current_age_s() >= self.segment_age_s)):
            self.spool.seal()
        sent = 0
        for segment in self.spool.sealed():
            try:
                for key, body in objects(segment, self.prefix, self.host).items():
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                           ContentType="application/gzip")
            except Exception as exc:  # S3 down, throttled, refused: the segment stays
                log.warning("archive: %s not sent yet: %s", segment.name, type(exc).__name__)
                break
            self.spool.remove(segment)
            sent += 1
        self.sent_segments += sent
        return sent
