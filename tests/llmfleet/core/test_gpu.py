"""The GPU collector against a fake NVML that fails the way the real one does."""

from __future__ import annotations

import logging

import pytest

from llmfleet.core.gpu import GpuCollector
from tests.helpers.nvml import (
    LIBRARY_NOT_FOUND,
    FakeGpu,
    fake_nvml,
)


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
