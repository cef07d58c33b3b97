"""What each GPU's kernels reach of its peaks: the timing model's efficiency factors.

Kept in `planner/data/efficiency.csv`, one row per GPU with where its numbers came
from: fitted to the fitting half of the validation table (`llmfleet plan validate
--fit` rewrites the file), or, for GPUs without public measurements, the defaults of
the nearest GPU family, said so in the row. Measurements of our own (the plan search's
profiles) correct a row further through `planner.calibrate`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path

from planner.timing import Efficiency

DATA = "data/efficiency.csv"
COLUMNS = ["gpu", "prefill_mfu", "decode_mfu", "bandwidth", "step_overhead_ms", "link",
           "allreduce_latency_us", "source"]


@dataclass(frozen=True)
class Row:
    gpu: str
    efficiency: Efficiency
    source: str


@cache
def table() -> dict[str, Row]:
    """Every GPU's factors by lower-case name."""
    text = resources.files("planner").joinpath(DATA).read_text()
    return {row.gpu.lower(): row for row in _parse(text)}


def for_gpu(name: str) -> Efficiency:
    """The factors for a GPU; the generic defaults when the table has no row for it."""
    row = table().get(name.lower())
    return row.efficiency if row else Efficiency()


def resources_path() -> Path:
    """The package's own table, which `llmfleet plan validate --fit` rewrites."""
    return Path(str(resources.files("planner").joinpath(DATA)))


def loader(path: Path) -> Callable[[str], Efficiency]:
    """`for_gpu` over another table (a refit written elsewhere)."""
    rows = {row.gpu.lower(): row for row in _parse(path.read_text())}
    return lambda name: rows[name.lower()].efficiency if name.lower() in rows else Efficiency()


def _parse(text: str) -> list[Row]:
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        rows.append(Row(gpu=raw["gpu"], source=raw["source"], efficiency=Efficiency(
            prefill_mfu=float(raw["prefill_mfu"]), decode_mfu=float(raw["decode_mfu"]),
            bandwidth=float(raw["bandwidth"]),
            step_overhead_s=float(raw["step_overhead_ms"]) / 1000, link=float(raw["link"]),
            allreduce_latency_s=float(raw["allreduce_latency_us"]) / 1e6)))
    return rows


def write(rows: list[Row], path: Path) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        e = row.efficiency
        writer.writerow([row.gpu, f"{e.prefill_mfu:.3f}", f"{e.decode_mfu:.3f}",
                         f"{e.bandwidth:.3f}", f"{e.step_overhead_s * 1000:.2f}", f"{e.link:.2f}",
                         f"{e.allreduce_latency_s * 1e6:.1f}", row.source])
    path.write_text(out.getvalue())
    table.cache_clear()


def describe(eff: Efficiency) -> str:
    return ", ".join(f"{f.name} {getattr(eff, f.name):.3g}" for f in fields(eff))
