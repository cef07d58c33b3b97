"""GPU readings through NVML (`nvidia-ml-py`, imported as `pynvml`).

Per GPU and interval: utilisation (%), memory used and total (bytes), power
(W), energy since the agent started (J), temperature (°C) and SM clock (MHz).
Any single read may fail on some GPU (not supported, or the GPU fell off the
bus): that field is None and the others still report. Energy uses NVML's
total-energy counter (Volta and newer); where a GPU lacks it, power is
integrated over time instead, and `energy_source` says which. With no driver
or no GPU the collector says so once and reports nothing.

The NVML module is injected, so machines without a GPU test this code with a
fake that raises the same `NVMLError`s.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class GpuReading:
    index: int
    utilization_pct: float | None
    memory_used_bytes: float | None
    memory_total_bytes: float | None
    power_w: float | None
    energy_j: float | None
    energy_source: str | None  # "counter" or "integrated"
    temperature_c: float | None
    sm_clock_mhz: float | None


class GpuCollector:
    def __init__(self, nvml: ModuleType | Any | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if nvml is None:
            import pynvml as nvml_module

            nvml = nvml_module
        self._nvml = nvml
        self._clock = clock
        self._handles: list[Any] = []
        self._energy_start: dict[int, float] = {}
        self._integrated: dict[int, tuple[float, float]] = {}  # index -> (joules, at)
        self._failed_fields: set[tuple[int, str]] = set()
        self.available = False

    def start(self) -> None:
        """Initialise NVML; without a driver or a GPU, log once and stay unavailable."""
        try:
            self._nvml.nvmlInit()
            count = self._nvml.nvmlDeviceGetCount()
            self._handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except self._nvml.NVMLError as exc:
            log.warning("no GPU metrics: NVML unavailable (%s)", exc)
            return
        self.available = bool(self._handles)
        if not self.available:
            log.warning("no GPU metrics: NVML sees no GPU")

    def stop(self) -> None:
        if self.available:
            self.available = False
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()

    def _read(self, index: int, field: str, call: Callable[..., T], *args: Any) -> T | None:
        try:
            return call(*args)
        except self._nvml.NVMLError as exc:
            if (index, field) not in self._failed_fields:  # once per field, not per interval
                self._failed_fields.add((index, field))
                log.warning("GPU %d: %s unavailable (%s)", index, field, exc)
            return None

    def _energy(self, index: int, handle: Any, power_w: float | None) -> tuple[float | None,
                                                                              str | None]:
        nvml = self._nvml
        total_mj = self._read(index, "energy counter",
                              nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
        if total_mj is not None:
            start = self._energy_start.setdefault(index, float(total_mj))
            return (float(total_mj) - start) / 1000.0, "counter"
        now = self._clock()
        if power_w is None:  # nothing to integrate: report what was integrated so far, if any
            known = self._integrated.get(index)
            return (known[0], "integrated") if known else (None, None)
        joules, at = self._integrated.get(index, (0.0, now))
        joules += power_w * (now - at)  # this read's power, held since the last read
        self._integrated[index] = (joules, now)
        return joules, "integrated"

    def read(self) -> list[GpuReading]:
        """One reading per GPU; empty when NVML is unavailable."""
        if not self.available:
            return []
        return [self._reading(index, handle) for index, handle in enumerate(self._handles)]

    def _reading(self, index: int, handle: Any) -> GpuReading:
        nvml = self._nvml
        util = self._read(index, "utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = self._read(index, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
        power_mw = self._read(index, "power", nvml.nvmlDeviceGetPowerUsage, handle)
        power_w = None if power_mw is None else power_mw / 1000.0
        energy, source = self._energy(index, handle, power_w)
        temp = self._read(index, "temperature", nvml.nvmlDeviceGetTemperature, handle,
                          nvml.NVML_TEMPERATURE_GPU)
        clock = self._read(index, "SM clock", nvml.nvmlDeviceGetClockInfo, handle,
                           nvml.NVML_CLOCK_SM)
        return GpuReading(
            index=index, utilization_pct=_float(util.gpu if util is not None else None),
            memory_used_bytes=_float(memory.used if memory is not None else None),
            memory_total_bytes=_float(memory.total if memory is not None else None),
            power_w=power_w, energy_j=energy, energy_source=source,
            temperature_c=_float(temp), sm_clock_mhz=_float(clock))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
