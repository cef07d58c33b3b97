"""Datapoints waiting for CloudWatch, kept on disk so that nothing is lost.

Every datapoint is written to a SQLite file when it is produced and removed
only after CloudWatch accepted it, so an outage, throttling or a restart of
the agent loses nothing: the next publish sends what is left, oldest first,
with its original timestamp. The buffer is bounded; when the bound is reached
the oldest datapoints go first and `dropped_total` (kept in the same file)
says how many, because silently losing data is what this exists to prevent.

SQLite is in the standard library, survives a killed process (each change is
one transaction), and at tens of datapoints per interval costs nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped_total', 0);
"""


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
        name, value, unit, timestamp, dimensions, resolution = json.loads(text)
        return cls(name, value, unit, timestamp, tuple(tuple(d) for d in dimensions),
                   resolution)


class DatapointBuffer:
    def __init__(self, path: Path, max_points: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit; explicit txns
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self.max_points = max_points

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM points").fetchone()
        return int(count)

    @property
    def dropped_total(self) -> int:
        (value,) = self._db.execute(
            "SELECT value FROM meta WHERE key = 'dropped_total'").fetchone()
        return int(value)

    def add(self, points: Iterable[Datapoint]) -> int:
        """Store datapoints; returns how many old ones the bound pushed out."""
        rows = [(p.to_json(),) for p in points]
        with self._transaction():
            self._db.executemany("INSERT INTO points (body) VALUES (?)", rows)
            excess = len(self) - self.max_points
            if excess > 0:
                self._db.execute("DELETE FROM points WHERE id IN "
                                 "(SELECT id FROM points ORDER BY id LIMIT ?)", (excess,))
                self._db.execute("UPDATE meta SET value = value + ? "
                                 "WHERE key = 'dropped_total'", (excess,))
        return max(0, excess)

    def oldest(self, limit: int) -> list[tuple[int, Datapoint]]:
        rows = self._db.execute("SELECT id, body FROM points ORDER BY id LIMIT ?", (limit,))
        return [(row_id, Datapoint.from_json(body)) for row_id, body in rows]

    def remove(self, ids: Iterable[int]) -> None:
        """Forget datapoints CloudWatch has accepted."""
        with self._transaction():
            self._db.executemany("DELETE FROM points WHERE id = ?", [(i,) for i in ids])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
