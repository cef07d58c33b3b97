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

import contextlib
import fcntl
import gzip
import json
import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

CURRENT = "current.jsonl"
WRITER_LOCK = ".writer.lock"
SEALED = re.compile(r"seg-(\d{13})-(\d{6})\.jsonl")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class SpoolBusy(Exception):
    """Another process holds the spool's writer lock."""


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
        self._lock_fd: int | None = None

    def hold(self, wait_s: float = 5.0) -> None:
        """Take the spool's writer lock for as long as this process runs (the lock file's
        descriptor stays open): the sender seals what a writer left only once the lock is
        free (`seal_abandoned`), never under a writer that is alive but slow.

        Raises:
            SpoolBusy: another writer holds it for longer than `wait_s`.
        """
        fd = os.open(self.directory / WRITER_LOCK, os.O_RDWR | os.O_CREAT, self.file_mode)
        os.fchmod(fd, self.file_mode)  # the sender opens it too
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:  # the sender looking, for a moment; or a writer
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise SpoolBusy(f"another process writes the spool in "
                                    f"{self.directory}") from exc
                time.sleep(0.05)
        self._lock_fd = fd

    def release(self) -> None:
        """Give the writer lock up (the writer stops: what is current is the sender's to
        seal should this process not come back)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def repair(self) -> int:
        """Cut a line the last run left half-written (it died in a write) off the current
        segment, so that the next record does not land glued to it; the writer calls this
        once, before its first write. Returns the bytes cut."""
        try:
            data = self._current.read_bytes()
        except FileNotFoundError:
            return 0
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            os.truncate(self._current, whole)
            log.warning("archive spool: cut a half-written record (%d bytes) left by the last "
                        "run", len(data) - whole)
        return len(data) - whole

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
        """Segments waiting to be sent, oldest first (none when the directory is gone)."""
        try:
            return sealed_segments(self.directory)
        except FileNotFoundError:
            return []

    # -- the writer --------------------------------------------------------------------

    def write(self, lines: Sequence[bytes]) -> int:
        """Append whole lines (each ends in a newline) in one write; those that would pass
        the bound are dropped and counted, as all are when the disk fails. Returns how many
        were written."""
        kept = list(lines)  # all lost if the spool cannot even be measured
        try:
            room = self.max_bytes - self.size()
            kept = []
            for line in lines:
                if len(line) > room:
                    self.stats.dropped += 1
                    continue
                kept.append(line)
                room -= len(line)
            if kept:
                self._append(b"".join(kept))
        except OSError as exc:  # the disk full or failing, the directory gone
            self.stats.dropped += len(kept)
            log.warning("archive spool: %d records could not be written: %s", len(kept),
                        exc.strerror)
            return 0
        self.stats.written += len(kept)
        return len(kept)

    def _append(self, data: bytes) -> None:
        """Append `data` whole or not at all: a write that fails half-way (a full disk) is
        cut back off, so that no record is left glued to half of another."""
        if not self.directory.is_dir():  # deleted under us: made again, but say so
            log.warning("archive spool: %s was missing and is made again (its group and mode "
                        "are this process's: a sender of another user may not read it)",
                        self.directory)
            self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._current, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.file_mode)
        try:
            start = os.fstat(fd).st_size
            if start == 0:  # made now: the mode regardless of the umask
                os.fchmod(fd, self.file_mode)
                self._opened_s = time.time()
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view):]
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)

    def seal_if_due(self, max_bytes: int, max_age_s: float) -> Path | None:
        """Seal the current segment once it holds `max_bytes` or has been open `max_age_s`;
        None when nothing was sealed."""
        size = self.current_bytes()
        if size == 0 or (size < max_bytes and time.time() - self._opened_s < max_age_s):
            return None
        return seal(self.directory, self._next_name)

    def _next_name(self) -> str:
        self._seq = (self._seq + 1) % 1_000_000
        return f"seg-{int(time.time() * 1000):013d}-{self._seq:06d}.jsonl"


def seal_abandoned(directory: Path) -> Path | None:
    """Seal the current segment of a spool whose writer is gone (its lock is free, or was
    never taken); None when a writer still holds it or nothing is current. For a sender
    whose instance leaves while its router does not answer: dead, or only slow."""
    try:
        fd = os.open(directory / WRITER_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return seal(directory)  # no writer ever ran here
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # alive: it seals its own once it drains
        return seal(directory)
    finally:
        os.close(fd)  # and with it the lock


def sealed_segments(directory: Path) -> list[Path]:
    """A spool's segments waiting to be sent, oldest first."""
    return sorted(p for p in directory.iterdir() if SEALED.fullmatch(p.name))


def seal(directory: Path, name: Callable[[], str] | None = None) -> Path | None:
    """Seal `directory`'s current segment under a new name (never over a sealed one, even
    after the clock stepped back); None when there is none. The writer seals its own; the
    sender seals what a writer that is gone left (the agent, for a router that stopped
    answering while its instance leaves)."""
    current = directory / CURRENT
    made = name or (lambda: f"seg-{int(time.time() * 1000):013d}-000000.jsonl")
    while True:
        sealed = directory / made()
        if not sealed.exists():
            break
        time.sleep(0.001)
    try:
        os.rename(current, sealed)
    except FileNotFoundError:
        return None
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
        return sealed_segments(self.directory)

    def round(self) -> int:
        """Send every sealed segment, oldest first, stopping at the first one S3 does not
        take (down, throttled, refused: the next round tries again); a segment that cannot
        be read is left for the next round without holding up the others. Returns the
        segments sent."""
        sent = 0
        for segment in self.pending():
            try:
                parts = objects(segment, self.prefix, self.host)
            except FileNotFoundError:
                continue  # another sender took it
            except OSError as exc:
                self._failed(segment, f"unreadable ({exc.strerror})")
                continue
            try:
                for key, body in parts.items():
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                           ContentType="application/gzip")
            except Exception as exc:  # the edge of S3: whatever it raises, the segment stays
                self._failed(segment, type(exc).__name__)
                break
            try:
                segment.unlink(missing_ok=True)
            except OSError as exc:  # sent; sent again (the same keys) until it can go
                log.warning("archive: %s is in S3 but cannot be deleted: %s", segment.name,
                            exc.strerror)
            sent += 1
        self.sent_segments += sent
        if sent:
            self.last_error = None
        return sent

    def _failed(self, segment: Path, error: str) -> None:
        self.failures += 1
        self.last_error = error
        log.warning("archive: %s not sent yet: %s", segment.name, error)

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
