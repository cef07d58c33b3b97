"""A fake NVML for the GPU collector: the slice of pynvml it calls, failing as the real one does.

The real library cannot be made to lose a GPU or refuse a field on demand; this can.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


NOT_SUPPORTED, GPU_IS_LOST, LIBRARY_NOT_FOUND = 3, 15, 12


@dataclass
class FakeGpu:
    util: int = 50
    used: int = 10 * 2**30
    total: int = 24 * 2**30
    power_mw: int = 150_000
    energy_mj: int | None = 1_000_000
    temp: int = 60
    clock: int = 1_700
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False


class FakeNvml:
    """The slice of pynvml the collector uses, failing as the real one does."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error

    @staticmethod
    def _check(gpu: FakeGpu, name: str) -> None:
        if gpu.lost:
            raise NVMLError(GPU_IS_LOST)
        if name in gpu.unsupported:
            raise NVMLError(NOT_SUPPORTED)

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetUtilizationRates(self, g: FakeGpu) -> Any:
        self._check(g, "util")
        return SimpleNamespace(gpu=g.util, memory=0)

    def nvmlDeviceGetMemoryInfo(self, g: FakeGpu) -> Any:
        self._check(g, "memory")
        return SimpleNamespace(used=g.used, total=g.total, free=g.total - g.used)

    def nvmlDeviceGetPowerUsage(self, g: FakeGpu) -> int:
        self._check(g, "power")
        return g.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, g: FakeGpu) -> int:
        self._check(g, "energy")
        if g.energy_mj is None:
            raise NVMLError(NOT_SUPPORTED)
        return g.energy_mj

    def nvmlDeviceGetTemperature(self, g: FakeGpu, sensor: int) -> int:
        self._check(g, "temp")
        return g.temp

    def nvmlDeviceGetClockInfo(self, g: FakeGpu, kind: int) -> int:
        self._check(g, "clock")
        return g.clock


def fake_nvml(gpus: list[FakeGpu], init_error: int | None = None) -> FakeNvml:
    return FakeNvml(gpus, init_error)

