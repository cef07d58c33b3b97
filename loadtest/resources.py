"""Peak memory and energy of an engine while it is measured.

Locally the engine is a process tree (vLLM's API server and its engine-core
child): its memory is the sum of their resident sets, sampled in a thread a
few times a second, keeping the peak. Summed RSS counts pages the processes
share more than once, so it errs high, which is the safe side for sizing.
Where NVML sees a GPU, the peak GPU memory in use and the energy the GPUs
used over the level (NVML's energy counter) are recorded too; elsewhere they
are None, never a guess.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType

import psutil

from llmfleet.core.gpu import GpuCollector


@dataclass(frozen=True)
class Usage:
    peak_rss_bytes: int | None
    peak_gpu_memory_bytes: float | None
    energy_j: float | None


class ResourceSampler:
    """Samples one process tree (and the GPUs, if any) from `__enter__` to `__exit__`."""

    def __init__(self, pid: int | None, gpu: GpuCollector | None = None,
                 interval_s: float = 0.2) -> None:
        self._pid = pid
        self._gpu = gpu
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._peak_rss: int | None = None
        self._peak_gpu: float | None = None
        self._energy_start: float | None = None
        self.usage: Usage | None = None

    def __enter__(self) -> ResourceSampler:
        self._energy_start = self._energy()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        end = self._energy()
        energy = (end - self._energy_start
                  if end is not None and self._energy_start is not None else None)
        self.usage = Usage(self._peak_rss, self._peak_gpu, energy)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        if (rss := tree_rss(self._pid)) is not None:
            self._peak_rss = max(self._peak_rss or 0, rss)
        if self._gpu is not None and self._gpu.available:
            used = [r.memory_used_bytes for r in self._gpu.read()
                    if r.memory_used_bytes is not None]
            if used:
                self._peak_gpu = max(self._peak_gpu or 0.0, sum(used))

    def _energy(self) -> float | None:
        if self._gpu is None or not self._gpu.available:
            return None
        readings = [r.energy_j for r in self._gpu.read()]
        if not readings or any(e is None for e in readings):
            return None
        return sum(e for e in readings if e is not None)


def tree_rss(pid: int | None) -> int | None:
    """Resident memory of a process and all its descendants; None when it is gone."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue  # a child that exited between listing and reading
    return total
