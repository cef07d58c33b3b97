"""One round as a table for a person at a terminal (`llmfleet agent --once --print`)."""

from __future__ import annotations

from agent.collect import Round
from agent.datapoints import gpu_values
from agent.specs import SERVING, MetricSpec

MISSING = "-"


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return MISSING
    if unit == "Bytes":
        return f"{value / 2**30:.2f} GiB"
    if unit == "Seconds":
        return f"{value * 1000:.1f} ms"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def rows(result: Round) -> list[tuple[str, str, str]]:
    """(metric, value, unit) for every figure, present or not, in publishing order."""
    out: list[tuple[str, str, str]] = []
    for field_name, spec in SERVING.items():
        value = getattr(result.serving, field_name)
        out.append(_row(spec, None if value is None else value * spec.scale))
    gpu_and_cost = {**gpu_values(result.gpus), **result.values}
    out.extend(_row(spec, value) for spec, value in gpu_and_cost.items())
    return out


def _row(spec: MetricSpec, value: float | None) -> tuple[str, str, str]:
    return spec.name, _number(value, spec.unit), _shown(spec.unit)


def _shown(unit: str) -> str:
    """The unit as printed: `None` metrics carry theirs in the name (Watts, USD)."""
    return {"Seconds": "ms", "Bytes": "GiB", "None": ""}.get(unit, unit)


def render(result: Round) -> str:
    where = result.where
    header = [
        f"AutoScalingGroupName={where.asg}  InstanceId={where.instance_id or MISSING}  "
        f"InstanceType={where.instance_type or MISSING}  Model={where.model or MISSING}",
        f"{len(result.points)} datapoints ({len(where.dimension_sets())} dimension sets, "
        f"Model set for serving figures); {len(result.gpus)} GPU(s) read",
        "",
    ]
    table = rows(result)
    width = max(len(name) for name, _, _ in table)
    body = [f"{name:<{width}}  {value:>14}  {unit}" for name, value, unit in table]
    return "\n".join(header + body)
