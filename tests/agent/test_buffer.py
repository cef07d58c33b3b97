"""The on-disk datapoint buffer: order, bound, and surviving a killed process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from agent.buffer import Datapoint, DatapointBuffer


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
