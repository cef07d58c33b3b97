"""What each serving engine adds to the GPU's work (`planner.timing.EngineCosts`).

Kept in `planner/data/engines.csv`, one row per engine generation, written by
`llmfleet plan validate --fit`: TensorRT-LLM is the zero point (the GPU factors are fitted
on its measurements), and each vLLM generation (`GENERATIONS`: V0 before 0.6, V0 0.6 and
0.7, V1) is fitted on its own share of the vLLM rows. The planner sizes deployments for
`SERVING`, the engine the platform runs.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path

from planner.timing import EngineCosts

DATA = "data/engines.csv"
SERVING = "vllm-v1"
COLUMNS = ["engine", "compute", "step_ms", "per_sequence_ms", "attention", "source"]


@dataclass(frozen=True)
class Row:
    engine: str
    costs: EngineCosts
    source: str


GENERATIONS = ("vllm-v0.4", "vllm-v0.6", SERVING)


def generation(engine: str) -> str:
    """A measurement's engine (`trtllm-nim`, `vllm-0.4.3`, `vllm`) as its generation:
    `trtllm`; `vllm-v0.4`, vLLM's V0 engine with its API server in the engine's process
    (before 0.6); `vllm-v0.6`, the V0 engine with the API server apart (0.6 and 0.7);
    `vllm-v1`, the V1 engine (0.8 on, and a version unsaid)."""
    if engine.startswith("trtllm"):
        return "trtllm"
    parts = engine.split("+")[0].removeprefix("vllm").lstrip("-").split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        version = (int(parts[0]), int(parts[1]))
        return "vllm-v0.4" if version < (0, 6) else "vllm-v0.6" if version < (0, 8) \
            else SERVING
    return SERVING


@cache
def table() -> dict[str, Row]:
    return {row.engine: row for row in _parse(
        resources.files("planner").joinpath(DATA).read_text())}


# A server that streams each token from the engine's own loop, costing the engine a little
# per sequence and step; vLLM's own server has no such cost to fit (tried on 320 concurrent
# requests through it, the cost fitted to happy_vllm's runs under-predicted them by 40-50%).
IN_LOOP_SERVERS = ("+happy_vllm",)


def for_engine(engine: str) -> EngineCosts:
    """The costs of a measurement's engine (and its server); TensorRT-LLM's (none) for one
    not in the table."""
    row = table().get(generation(engine))
    return adapt(row.costs, engine) if row else EngineCosts()


def adapt(costs: EngineCosts, engine: str) -> EngineCosts:
    """A generation's costs as `engine`'s server pays them: the per-sequence cost only for a
    server in the engine's loop. The fit and the report both go through here."""
    if any(server in engine for server in IN_LOOP_SERVERS):
        return costs
    return replace(costs, per_sequence_s=0.0)


def serving() -> EngineCosts:
    """The costs of the engine the platform deploys, which the sizing search assumes."""
    return for_engine(SERVING)


def _parse(text: str) -> list[Row]:
    """The table's rows; a share of throughput or bandwidth at or below zero (a hand edit)
    would divide by zero in every step, so it is refused here, by name."""
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        costs = EngineCosts(compute=float(raw["compute"]),
                            step_s=float(raw["step_ms"]) / 1000,
                            per_sequence_s=float(raw["per_sequence_ms"]) / 1000,
                            attention=float(raw["attention"]))
        if costs.compute <= 0 or costs.attention <= 0:
            raise ValueError(f"{DATA}: {raw['engine']}: compute and attention must be above "
                             f"0, not {costs.compute} and {costs.attention}")
        rows.append(Row(raw["engine"], costs, raw["source"]))
    return rows


def write(rows: list[Row], path: Path) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        c = row.costs
        writer.writerow([row.engine, f"{c.compute:.3f}", f"{c.step_s * 1000:.2f}",
                         f"{c.per_sequence_s * 1000:.3f}", f"{c.attention:.3f}", row.source])
    path.write_text(out.getvalue())
    table.cache_clear()


def resources_path() -> Path:
    return Path(str(resources.files("planner").joinpath(DATA)))
