"""The GPU collector against a fake NVML that fails the way the real one does."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from agent.gpu import GpuCollector


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


def test_every_field_read_and_converted() -> None:
    gpu = FakeGpu()
    collector = GpuCollector(fake_nvml([gpu]))
    collector.start()
    first = collector.read()[0]
    assert (first.utilization_pct, first.power_w, first.temperature_c, first.sm_clock_mhz) == (
        50, 150.0, 60, 1700)
    assert (first.memory_used_bytes, first.memory_total_bytes) == (10 * 2**30, 24 * 2**30)
    assert (first.energy_j, first.energy_source) == (0.0, "counter")
    gpu.energy_mj = 1_250_000  # +250 J since the agent started
    assert collector.read()[0].energy_j == 250.0


def test_an_unsupported_field_is_missing_and_the_rest_still_report(
        caplog: pytest.LogCaptureFixture) -> None:
    gpu = FakeGpu(unsupported={"temp"})
    collector = GpuCollector(fake_nvml([gpu]))
    collector.start()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            reading = collector.read()[0]
    assert reading.temperature_c is None and reading.utilization_pct == 50
    assert sum("temperature unavailable" in r.message for r in caplog.records) == 1


def test_energy_is_integrated_from_power_without_the_counter() -> None:
    now = [100.0]
    gpu = FakeGpu(energy_mj=None, power_mw=200_000)
    collector = GpuCollector(fake_nvml([gpu]), clock=lambda: now[0])
    collector.start()
    assert collector.read()[0].energy_j == 0.0
    now[0] += 10  # 200 W for 10 s
    reading = collector.read()[0]
    assert (reading.energy_j, reading.energy_source) == (2000.0, "integrated")


def test_a_lost_gpu_reports_nothing_but_the_others_continue() -> None:
    healthy, lost = FakeGpu(util=80), FakeGpu()
    collector = GpuCollector(fake_nvml([healthy, lost]))
    collector.start()
    lost.lost = True
    readings = collector.read()
    assert readings[0].utilization_pct == 80
    assert readings[1].utilization_pct is None and readings[1].power_w is None
    assert readings[1].energy_j is None


def test_no_driver_is_said_once_and_reads_nothing(caplog: pytest.LogCaptureFixture) -> None:
    collector = GpuCollector(fake_nvml([], init_error=LIBRARY_NOT_FOUND))
    with caplog.at_level(logging.WARNING):
        collector.start()
        assert collector.read() == [] and collector.read() == []
    assert sum("NVML unavailable" in r.message for r in caplog.records) == 1


def test_real_nvml_on_this_machine_does_not_crash() -> None:
    """Real pynvml: here (no GPU) it must degrade to nothing; on a GPU host it reads."""
    collector = GpuCollector()
    collector.start()
    readings = collector.read()
    assert collector.available == bool(readings)
    collector.stop()
