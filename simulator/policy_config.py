"""The infrastructure's scaling settings, read from the files OpenTofu reads.

Owns the values an apply would give the scaling variables (`environments/<env>.tfvars`
over the defaults declared in `infrastructure/variables.tf`, read by
`simulator.tfvars`), and building the group and the two GPU-utilisation policies
exactly as `infrastructure/modules/compute/main.tf` configures them: the policy is defined
once, in those files, and both the module and the simulator use it.

Values convert as Terraform converts a variable to its type: a missing or null optional
attribute takes its optional() default, a missing required one is an error, and one the
type does not declare is dropped (silently, as Terraform does, so a misspelt `cooldown` is
ignored by both). Unlike Terraform, no string, number or bool is converted into another
(the files never need it; such a value is refused, not guessed). The result is validated by
pydantic models with the module's own bounds, so what `terraform plan` would refuse is
refused here too.

The module's literals around `var.scaling` (SimpleScaling, ChangeInCapacity +1/-1, period
60 s, Average, notBreaching, datapoints_to_alarm unset so M = N, warm-up =
model.model_load_seconds, no default_cooldown) are repeated in `MODULE`; a test reads
main.tf to keep the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator.autoscaling import DEFAULT_COOLDOWN_S, Group, SimpleScaling
from simulator.cloudwatch import (
    DEFAULT_PUBLICATION_DELAY_S,
    Alarm,
    AlarmConfig,
    Comparison,
    MetricStream,
    MissingData,
    Statistic,
)
from simulator.tfvars import (
    REQUIRED,
    TfvarsError,
    Variable,
    VarType,
    read_tfvars,
    read_variables,
)

# --- Settings ------------------------------------------------------------------

class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Capacity(_Settings):
    min: int = Field(ge=0)
    max: int
    desired: int

    @model_validator(mode="after")
    def _ordered(self) -> Capacity:
        if not self.min <= self.desired <= self.max:
            raise ValueError("capacity needs min <= desired <= max")
        return self


class Scaling(_Settings):
    scale_out_pct: float = Field(gt=0, le=100)
    scale_in_pct: float = Field(ge=0)
    evaluation_minutes: int = Field(ge=1)
    cooldown_s: float = Field(ge=60)

    @model_validator(mode="after")
    def _ordered(self) -> Scaling:
        if self.scale_in_pct >= self.scale_out_pct:
            raise ValueError("scaling needs scale_in_pct < scale_out_pct")
        return self


class Spot(_Settings):
    on_demand_base: int = Field(ge=0)
    spot_percentage: float = Field(ge=0, le=100)
    extra_instance_types: tuple[str, ...]


class ServedModel(_Settings):
    model_config = ConfigDict(frozen=True, extra="ignore")  # vLLM's settings are not ours
    id: str
    served_name: str | None
    max_model_len: int | None
    model_load_seconds: float = Field(ge=0)


class Environment(_Settings):
    name: str
    environment: str
    instance_type: str
    capacity: Capacity
    scaling: Scaling
    spot: Spot
    model: ServedModel


@dataclass(frozen=True)
class ModuleScaling:
    """What main.tf writes as literals around `var.scaling`."""

    metric_name: str = "GPUUtilization"
    period_s: int = 60
    statistic: Statistic = Statistic.AVERAGE
    treat_missing_data: MissingData = MissingData.NOT_BREACHING
    scale_out: tuple[int, Comparison] = (1, Comparison.GREATER)
    scale_in: tuple[int, Comparison] = (-1, Comparison.LESS)


MODULE = ModuleScaling()


def load_environment(root: Path, env: str) -> Environment:
    """`environments/<env>.tfvars` of the repository at `root`, over the root defaults."""
    return read_environment(root / "environments" / f"{env}.tfvars",
                            root / "infrastructure" / "variables.tf")


def read_environment(tfvars: Path, variables: Path) -> Environment:
    """Raises: TfvarsError: unreadable HCL, a variable missing, or values plan would refuse."""
    values = read_values(variables, tfvars, Environment.model_fields)
    try:
        return Environment.model_validate(values)
    except ValidationError as exc:
        raise TfvarsError(f"{tfvars}: {exc}") from exc


def build_group(env: Environment) -> Group:
    return Group(env.capacity.min, env.capacity.max, env.capacity.desired,
                 warmup_s=env.model.model_load_seconds, default_cooldown_s=DEFAULT_COOLDOWN_S)


def gpu_policies(scaling: Scaling, metric: MetricStream, *,
                 publication_delay_s: float = DEFAULT_PUBLICATION_DELAY_S) -> list[SimpleScaling]:
    """main.tf's `aws_autoscaling_policy.gpu` and their alarms: high adds one, low removes one."""
    steps = {"gpu-high": (MODULE.scale_out, scaling.scale_out_pct),
             "gpu-low": (MODULE.scale_in, scaling.scale_in_pct)}
    policies = []
    for name, ((adjustment, comparison), threshold) in steps.items():
        config = AlarmConfig(threshold, comparison, scaling.evaluation_minutes,
                             period_s=MODULE.period_s, statistic=MODULE.statistic,
                             treat_missing_data=MODULE.treat_missing_data,
                             publication_delay_s=publication_delay_s)
        policies.append(SimpleScaling(name, Alarm(config), metric, adjustment, scaling.cooldown_s))
    return policies


# --- Values as Terraform converts them ---------------------------------------------------

_SCALARS: dict[str, tuple[type, ...]] = {"number": (int, float), "string": (str,), "bool": (bool,)}


def read_values(variables: Path, tfvars: Path, names: Iterable[str]) -> dict[str, object]:
    """The named variables' values: the tfvars' over the declared defaults, converted.

    Raises:
        TfvarsError: unreadable HCL, an undeclared variable, a required one left unset, or
            a value that does not fit its type.
    """
    declared, assigned = read_variables(variables), read_tfvars(tfvars)
    return {name: resolve(declared, assigned, name) for name in names}


def resolve(declared: Mapping[str, Variable], assigned: Mapping[str, object], name: str) -> object:
    """A variable's value as Terraform converts it to its type."""
    if name not in declared:
        raise TfvarsError(f"no variable {name!r} is declared")
    var = declared[name]
    value = assigned.get(name, var.default)
    if value is REQUIRED:
        raise TfvarsError(f"variable {name!r} has no default and the tfvars does not set it")
    return _conform(value, var.type, name)


def _conform(value: object, typ: VarType, where: str) -> object:
    if value is None or typ.name == "any":
        return value
    if typ.name == "object":
        return _conform_object(value, typ, where)
    if typ.element is not None:
        return _conform_collection(value, typ.name, typ.element, where)
    if isinstance(value, bool) != (typ.name == "bool") or not isinstance(value, _SCALARS[typ.name]):
        raise TfvarsError(f"{where}: expected a {typ.name}, got {value!r}")
    return value


def _conform_collection(value: object, kind: str, element: VarType, where: str) -> object:
    if kind == "map" and isinstance(value, dict):
        return {k: _conform(v, element, f"{where}.{k}") for k, v in value.items()}
    if kind != "map" and isinstance(value, list):
        return [_conform(v, element, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TfvarsError(f"{where}: expected a {kind}, got {value!r}")


def _conform_object(value: object, typ: VarType, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise TfvarsError(f"{where}: expected an object, got {value!r}")
    out: dict[str, object] = {}
    for name, attribute in typ.attributes.items():
        if name not in value and not attribute.optional:
            raise TfvarsError(f"{where}: attribute {name!r} is required")
        item = value.get(name)
        out[name] = _conform(attribute.default if item is None and attribute.optional else item,
                             attribute.type, f"{where}.{name}")
    return out  # attributes the type does not declare are dropped, as Terraform drops them
