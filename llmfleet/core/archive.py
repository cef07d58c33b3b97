"""The archive's storage: records as JSON lines in a spool on disk, sent to S3 as gzip.

Two sides, which may be two processes (on an instance, the router writes and the agent
sends: the router, which faces the network, holds no AWS credentials):
- the writer (`Spool.write`, `Spool.seal_if_due`) appends whole lines to `current.jsonl`
  and seals it, by age or size, into `seg-<ms>-<seq>.jsonl`; sealed segments never change;
- the sender (`Uploader.round`) sends each sealed segment to S3, oldest first, as gzip
  objects, one per date and model (`<prefix>date=YYYY-MM-DD/model=<model>/<host>-<segment>
  .jsonl.gz`), and deletes a segment only once every object of it is stored. A key is the
  same on every try, so a segment sent again after a crash or an outage overwrites what it
  had sent, never duplicates it.

Durable across restarts and S3 outages: whatever reached the spool stays there until S3 has
it. Bounded (`max_bytes`, sealed and current together): past it, new records are dropped and
counted rather than filling the disk, because the archive must never be why a request fails.
Records are what the writer gives; the router's (what is kept, and what never is: keys,
credentials) are defined where they are made (`server/archiving.py`).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

CURRENT = "current.jsonl"
SEALED = re.compile(r"seg-(\d{13})-(\d{6})\.jsonl")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class SpoolStats:
    written: int = 0  # records on disk
    dropped: int = 0  # records refused: the spool was full, or the disk failed


class Spool:
    """Records on disk, waiting for S3: `current.jsonl` takes appends; sealed segments
    (`seg-<ms>-<seq>.jsonl`, oldest first by name) wait to be sent.

    `file_mode` is what the files are made with, whatever the process's umask: 0o640 where
    another user (the agent, in the directory's group) sends them.
    """

    def __init__(self, directory: Path, max_bytes: int = 1 << 30,
                 file_mode: int = 0o600) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.file_mode = file_mode
        self.stats = SpoolStats()
        directory.mkdir(parents=True, exist_ok=True)
        self._current = directory / CURRENT
        # A segment left by the last run is as old as its last write, at least.
        self._opened_s = self._current.stat().st_mtime if self._current.exists() else 0.0
        self._seq = 0

    # -- what is on disk ---------------------------------------------------------------

    def size(self) -> int:
        """Bytes on disk, sealed and current (the sender may delete while this reads)."""
        total = 0
        for path in [*self.sealed(), self._current]:
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def current_bytes(self) -> int:
        try:
            return self._current.stat().st_size
        except FileNotFoundError:
            return 0

    def sealed(self) -> list[Path]:
        """Segments waiting to be sent, oldest first."""
        return sorted(p for p in self.directory.iterdir() if SEALED.fullmatch(p.name))

    # -- the writer --------------------------------------------------------------------

    def write(self, lines: Sequence[bytes]) -> int:
        """Append whole lines (each ends in a newline) in one write; those that would pass
        the bound are dropped and counted, as all are when the disk fails. Returns how many
        were written."""
        room = self.max_bytes - self.size()
        kept: list[bytes] = []
        for line in lines:
            if len(line) > room:
                self.stats.dropped += 1
                continue
            kept.append(line)
            room -= len(line)
        if not kept:
            return 0
        try:
            self._append(b"".join(kept))
        except OSError as exc:
            self.stats.dropped += len(kept)
            log.warning("archive spool: %d records could not be written: %s", len(kept),
                        exc.strerror)
            return 0
        self.stats.written += len(kept)
        return len(kept)

    def _append(self, data: bytes) -> None:
        fd = os.open(self._current, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.file_mode)
        try:
            if os.fstat(fd).st_size == 0:  # made now: the mode regardless of the umask
                os.fchmod(fd, self.file_mode)
                self._opened_s = time.time()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def seal_if_due(self, max_bytes: int, max_age_s: float) -> Path | None:
        """Seal the current segment once it holds `max_bytes` or has been open `max_age_s`;
        None when nothing was sealed."""
        size = self.current_bytes()
        if size == 0 or (size < max_bytes and time.time() - self._opened_s < max_age_s):
            return None
        self._seq = (self._seq + 1) % 1_000_000
        sealed = self.directory / f"seg-{int(time.time() * 1000):013d}-{self._seq:06d}.jsonl"
        os.replace(self._current, sealed)
        return sealed


class S3Client(Protocol):
    def put_object(self, **kwargs: Any) -> Any: ...


def s3_client(region: str | None, endpoint_url: str | None = None) -> S3Client:
    """An S3 client for the sender: credentials from the usual chain, bounded timeouts and
    retries (a round that fails is tried again at the next one)."""
    import boto3
    from botocore.config import Config

    client: S3Client = boto3.client(
        "s3", region_name=region, endpoint_url=endpoint_url,
        config=Config(connect_timeout=5, read_timeout=30,
                      retries={"max_attempts": 3, "mode": "standard"}))
    return client


def objects(segment: Path, prefix: str, host: str) -> dict[str, bytes]:
    """A sealed segment's objects: its records grouped by date and model, each group a
    gzip of its lines under a key that is the same on every try. A line that does not
    parse (a crash in the middle of a write can leave one) goes to model `unknown`."""
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
    """Sends a spool's sealed segments to S3 (blocking: run it in a thread)."""

    def __init__(self, directory: Path, client: S3Client, bucket: str, prefix: str,
                 host: str) -> None:
        self.directory, self.client, self.bucket = directory, client, bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.host = host
        self.sent_segments = 0
        self.failures = 0
        self.last_error: str | None = None  # the error's type: never a key or a body

    def pending(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if SEALED.fullmatch(p.name))

    def round(self) -> int:
        """Send every sealed segment, oldest first, stopping at the first failure (S3 down:
        the next round tries again). Returns the segments sent."""
        sent = 0
        for segment in self.pending():
            try:
                for key, body in objects(segment, self.prefix, self.host).items():
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                           ContentType="application/gzip")
            except FileNotFoundError:
                continue  # another sender took it
            except Exception as exc:  # S3 down, throttled, refused: the segment stays
                self.failures += 1
                self.last_error = type(exc).__name__
                log.warning("archive: %s not sent yet: %s", segment.name, self.last_error)
                break
            segment.unlink(missing_ok=True)
            sent += 1
        self.sent_segments += sent
        if sent:
            self.last_error = None
        return sent

    def send_all(self, deadline: float, pause_s: float = 1.0) -> bool:
        """Rounds until nothing sealed is left or `deadline` (time.monotonic) passes: an
        instance leaving the fleet, whose disk goes with it. True when all was sent."""
        while self.pending():
            self.round()
            if not self.pending():
                break
            if time.monotonic() + pause_s >= deadline:
                return False
            time.sleep(pause_s)
        return True
