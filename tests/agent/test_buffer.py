"""The on-disk datapoint buffer: order, bound, and surviving a killed process."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.buffer import Datapoint, DatapointBuffer
from tests.helpers.disk import fill_up, make_read_only


def point(i: int) -> Datapoint:
    return Datapoint("GPUUtilization", float(i), "Percent", 1_700_000_000.0 + i,
                     (("AutoScalingGroupName", "fleet"),), 1)


def test_oldest_first_and_removed_once_accepted(tmp_path: Path) -> None:
    buffer = DatapointBuffer(tmp_path / "b.sqlite", max_points=100)
    buffer.add(point(i) for i in range(5))
    batch = buffer.oldest(3)
    assert [p.value for _, p in batch] == [0.0, 1.0, 2.0]
    assert batch[0][1] == point(0)  # round-trips exactly, timestamp and dimensions included
    buffer.remove(i for i, _ in batch)
    assert [p.value for _, p in buffer.oldest(10)] == [3.0, 4.0]
    assert len(buffer) == 2
    buffer.close()


def test_the_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    buffer = DatapointBuffer(tmp_path / "b.sqlite", max_points=4)
    assert buffer.add(point(i) for i in range(3)) == 0
    assert buffer.add(point(i) for i in range(3, 7)) == 3
    assert [p.value for _, p in buffer.oldest(10)] == [3.0, 4.0, 5.0, 6.0]
    assert buffer.dropped_total == 3
    buffer.close()


def test_contents_and_counter_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    first = DatapointBuffer(path, max_points=2)
    first.add(point(i) for i in range(3))
    first.close()
    again = DatapointBuffer(path, max_points=2)
    assert [p.value for _, p in again.oldest(10)] == [1.0, 2.0]
    assert again.dropped_total == 1
    again.close()


def test_a_killed_writer_loses_nothing_it_had_added(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    writer = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from agent.buffer import Datapoint, DatapointBuffer
        buffer = DatapointBuffer(Path({str(path)!r}), max_points=10_000)
        for i in range(500):
            buffer.add([Datapoint("X", float(i), "Count", float(i))])
        print("added", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "added"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    started = time.monotonic()
    survivor = DatapointBuffer(path, max_points=10_000)
    assert len(survivor) == 500
    assert [p.value for _, p in survivor.oldest(3)] == [0.0, 1.0, 2.0]
    assert time.monotonic() - started < 5
    survivor.close()


def test_disk_full_is_raised_not_masked_by_a_failed_rollback(tmp_path: Path) -> None:
    buffer = DatapointBuffer(tmp_path / "b.sqlite", max_points=10_000)
    buffer.add(point(i) for i in range(3))
    fill_up(buffer, small_writes_too=False)  # the insert itself needs pages, and fails
    # SQLite rolls the transaction back itself on SQLITE_FULL; a ROLLBACK after that
    # fails with "no transaction is active", which used to replace the real error.
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        buffer.add(point(i) for i in range(100))
    assert len(buffer) == 3  # all or nothing
    buffer.close()


def test_a_corrupt_buffer_file_is_moved_aside_and_a_fresh_one_started(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "b.sqlite"
    path.write_bytes(b"this is not an SQLite file\n" * 200)
    with caplog.at_level(logging.ERROR):
        buffer = DatapointBuffer(path, max_points=100)
    buffer.add([point(1)])
    assert [p.value for _, p in buffer.oldest(10)] == [1.0]
    (aside,) = tmp_path.glob("b.sqlite.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not an SQLite file")
    assert any(str(aside) in r.getMessage() for r in caplog.records)
    buffer.close()


def test_a_row_that_is_not_a_datapoint_is_skipped_deleted_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buffer = DatapointBuffer(path, max_points=100)
    buffer.add([point(0)])
    other = sqlite3.connect(path, isolation_level=None)  # what a bad write left behind
    other.executemany("INSERT INTO points (body) VALUES (?)",
                      [("{not json",), ('["X", "not a number", "Count", 1.0, [], 60]',)])
    other.close()
    buffer.add([point(1)])
    for _ in range(2):  # skipped for good, counted once
        assert [p.value for _, p in buffer.oldest(10)] == [0.0, 1.0]
    assert len(buffer) == 2
    assert buffer.corrupt_rows_total == 2
    buffer.close()


def test_points_removed_while_the_file_cannot_be_written_are_not_returned_again(
        tmp_path: Path) -> None:
    buffer = DatapointBuffer(tmp_path / "b.sqlite", max_points=100)
    buffer.add(point(i) for i in range(5))
    make_read_only(buffer)
    sent = buffer.oldest(2)
    buffer.remove(i for i, _ in sent)  # CloudWatch has them: they must not go twice
    assert [p.value for _, p in buffer.oldest(10)] == [2.0, 3.0, 4.0]
    assert len(buffer) == 3
    buffer._db.execute("PRAGMA query_only = OFF")  # writable again: the delete lands
    buffer.remove([])
    buffer.close()
    again = DatapointBuffer(tmp_path / "b.sqlite", max_points=100)
    assert [p.value for _, p in again.oldest(10)] == [2.0, 3.0, 4.0]
    again.close()
