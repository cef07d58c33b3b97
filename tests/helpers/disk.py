"""Make the agent's on-disk buffer fail the way a full or read-only disk does, with no mocks."""

from __future__ import annotations

import sqlite3

from agent.buffer import DatapointBuffer


def fill_up(buffer: DatapointBuffer, *, small_writes_too: bool = True) -> None:
    """Make writes to the buffer fail as on a full disk: a real SQLITE_FULL, no mock.

    `max_page_count` caps the file at its current size and filler rows take the free
    pages, so a write that needs a page fails with "database or disk is full" (SQLite then
    rolls the transaction back itself, as on a real full disk). With `small_writes_too`,
    two temporary triggers make each insert into or delete from `points` also need pages:
    on a full disk in WAL mode every write needs new space (frames appended to the WAL),
    even one that would fit in a page's free space (seen on a full tmpfs). Reads work.
    """
    db = buffer._db  # the test reaches in: production has no reason for such a knob
    db.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
    if small_writes_too:
        for event in ("INSERT", "DELETE"):
            db.execute(f"CREATE TEMP TRIGGER fill_on_{event.lower()} AFTER {event} ON points "
                       "BEGIN INSERT INTO filler VALUES (zeroblob(65536)); END")
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")
    size = 4096
    while size:
        try:
            db.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
        except sqlite3.OperationalError:
            size //= 2


def make_read_only(buffer: DatapointBuffer) -> None:
    """Every write now fails as on a read-only file system ("attempt to write a readonly
    database", SQLITE_READONLY); reads work."""
    buffer._db.execute("PRAGMA query_only = ON")
