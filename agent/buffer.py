"""Datapoints waiting for CloudWatch, kept on disk so that nothing is lost.

Datapoints CloudWatch did not take when they were produced (an outage,
throttling, an older backlog ahead of them) are written to a SQLite file and
removed only after CloudWatch accepted them, so an outage or a restart of the
agent loses nothing: the next publish sends what is left, oldest first, with
its original timestamp. The buffer is bounded; when the bound is reached the
oldest datapoints go first and `dropped_total` (kept in the same file) says how
many, because silently losing data is what this exists to prevent.

The disk can fail too, and the buffer must never be why the agent stops:

- A write that fails (a full disk, a read-only file system) raises SQLite's
  own error. The transaction is rolled back only if SQLite has not already
  done so itself (it does on SQLITE_FULL), so a failing ROLLBACK can never
  replace the real error. What to do with the datapoints is the caller's call.
- Removing datapoints CloudWatch accepted cannot wait for the disk: when the
  delete fails, their ids are kept in memory, `oldest()` skips them and the
  next write that works deletes them, so nothing is sent twice (unless the
  agent restarts first). Past `MAX_UNREMOVED` ids, `oldest()` returns nothing
  until the disk takes writes again, which bounds that memory.
- A file that is not a database, or fails SQLite's quick check, is renamed
  aside (`<name>.corrupt-<unix time>`) and a fresh one started: an agent that
  starts is worth more than an old backlog, and the renamed file is kept for
  a person to look at. A row that does not parse as a datapoint is deleted
  and counted (`corrupt_rows_total`), never allowed to block the rows after it.

SQLite is in the standard library, survives a killed process (each change is
one transaction), and at tens of datapoints per interval costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped_total', 0);
"""
MAX_UNREMOVED = 50_000  # ~3 MB of ids at most; a full backlog is 250,000 rows


@dataclass(frozen=True)
class Datapoint:
    """One CloudWatch datapoint, as it will be sent."""

    name: str
    value: float
    unit: str
    timestamp: float  # seconds since the epoch, when it was measured
    dimensions: tuple[tuple[str, str], ...] = ()
    storage_resolution: int = 60  # 1 for high-resolution metrics

    def to_json(self) -> str:
        return json.dumps([self.name, self.value, self.unit, self.timestamp,
                           self.dimensions, self.storage_resolution])

    @classmethod
    def from_json(cls, text: str) -> Datapoint:
        """Raises ValueError for anything `to_json` did not write."""
        try:
            name, value, unit, timestamp, dimensions, resolution = json.loads(text)
            point = cls(name, float(value), unit, float(timestamp),
                        tuple((k, v) for k, v in dimensions), int(resolution))
        except (TypeError, RecursionError) as exc:
            raise ValueError(f"not a datapoint: {exc}") from exc
        strings = [point.name, point.unit, *(s for pair in point.dimensions for s in pair)]
        if not all(isinstance(s, str) for s in strings):
            raise ValueError("not a datapoint: a name, unit or dimension is not a string")
        return point


class DatapointBuffer:
    def __init__(self, path: Path | None, max_points: int) -> None:
        """Open (or create) the buffer at `path`; None keeps it in memory only.

        Raises:
            sqlite3.Error, OSError: the file can be neither opened nor, where it is
                corrupt, moved aside and created afresh (a full or read-only disk).
        """
        self.path = path
        self.max_points = max_points
        self.corrupt_rows_total = 0
        self._unremoved: set[int] = set()
        self._db = _open(path) if path is not None else _connect(":memory:")

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        """Datapoints waiting to be sent."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM points").fetchone()
        return max(0, int(count) - len(self._unremoved))

    @property
    def dropped_total(self) -> int:
        (value,) = self._db.execute(
            "SELECT value FROM meta WHERE key = 'dropped_total'").fetchone()
        return int(value)

    def add(self, points: Iterable[Datapoint]) -> int:
        """Store datapoints; returns how many old ones the bound pushed out.

        Raises:
            sqlite3.OperationalError: the file cannot be written (full, read-only);
                nothing was stored.
        """
        rows = [(p.to_json(),) for p in points]
        unremoved = list(self._unremoved)
        with self._transaction():
            self._delete(unremoved)  # the disk takes writes: settle what was sent meanwhile
            self._db.executemany("INSERT INTO points (body) VALUES (?)", rows)
            (count,) = self._db.execute("SELECT COUNT(*) FROM points").fetchone()
            excess = int(count) - self.max_points
            if excess > 0:
                self._db.execute("DELETE FROM points WHERE id IN "
                                 "(SELECT id FROM points ORDER BY id LIMIT ?)", (excess,))
                self._db.execute("UPDATE meta SET value = value + ? "
                                 "WHERE key = 'dropped_total'", (excess,))
        self._settled(unremoved)
        return max(0, excess)

    def oldest(self, limit: int) -> list[tuple[int, Datapoint]]:
        """Up to `limit` datapoints waiting to be sent, oldest first.

        Rows already sent (but not yet deleted) are skipped; rows that are not
        datapoints are deleted and counted.
        """
        if len(self._unremoved) >= MAX_UNREMOVED:
            return []
        found: list[tuple[int, Datapoint]] = []
        after = 0
        while len(found) < limit:
            rows = self._db.execute("SELECT id, body FROM points WHERE id > ? ORDER BY id "
                                    "LIMIT ?", (after, limit)).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            found += self._parse(rows)
        return found[:limit]

    def remove(self, ids: Iterable[int]) -> None:
        """Forget datapoints CloudWatch has accepted (or refused for good).

        Never fails for a disk that cannot be written: the ids are then kept in
        memory, skipped by `oldest()`, and deleted by the next write that works.
        """
        pending = [*self._unremoved, *ids]
        if not pending:
            return
        try:
            with self._transaction():
                self._delete(pending)
        except sqlite3.OperationalError as exc:
            if not self._unremoved:  # said once, not at every round
                log.error("cannot delete sent datapoints from the buffer (%s); they are "
                          "skipped until the disk takes writes again", exc)
            self._unremoved.update(pending)
            return
        self._settled(pending)

    def _parse(self, rows: list[tuple[int, str]]) -> list[tuple[int, Datapoint]]:
        found, bad = [], []
        for row_id, body in rows:
            if row_id in self._unremoved:
                continue
            try:
                found.append((row_id, Datapoint.from_json(body)))
            except ValueError as exc:
                bad.append(row_id)
                log.error("buffer row %d is not a datapoint (%s): deleted", row_id, exc)
        if bad:
            self.corrupt_rows_total += len(bad)
            self.remove(bad)
        return found

    def _delete(self, ids: list[int]) -> None:
        self._db.executemany("DELETE FROM points WHERE id = ?", [(i,) for i in ids])

    def _settled(self, ids: list[int]) -> None:
        if self._unremoved:
            self._unremoved.difference_update(ids)
            if not self._unremoved:
                log.info("the buffer takes writes again; sent datapoints deleted")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction; on any error the original error is what propagates.

        After SQLITE_FULL or an I/O error SQLite may already have rolled the
        transaction back, and a ROLLBACK then fails with "no transaction is active";
        so roll back only when one is open, and never let that replace the real error.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise


def _connect(target: Path | str) -> sqlite3.Connection:
    """Raises sqlite3.DatabaseError for a file that is not a sound database."""
    db = sqlite3.connect(target, isolation_level=None)  # autocommit; explicit transactions
    try:
        db.execute("PRAGMA journal_mode=WAL")
        problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"quick_check: {'; '.join(problems)}")
        db.executescript(SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _connect(path)
    except sqlite3.OperationalError:
        raise  # full, read-only, locked: the file may well be sound, keep it
    except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
        aside = _move_aside(path)
        log.error("the buffer %s is corrupt (%s): moved to %s; starting a fresh one",
                  path, exc, aside)
        return _connect(path)


def _move_aside(path: Path) -> Path:
    """Rename the file and its WAL companions; returns the new name of the file."""
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    for suffix in ("-wal", "-shm", ""):  # the file last: a crash in between leaves it found
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(aside.with_name(aside.name + suffix))
    return aside
