"""The infrastructure's scaling settings, read from the files OpenTofu reads.

Owns the values an apply would give the scaling variables (`environments/<env>.tfvars`
over the defaults declared in `infrastructure/variables.tf`, read by
`simulator.tfvars`), and the fixed parts of the two policies the module can apply, read
from the JSON files `infrastructure/modules/compute/main.tf` reads: the GPU-utilisation
policy (`gpu_policies` builds it here) and queue-guard (`simulator.queue_guard_file`, built
by `simulator.serving_policies.queue_guard`). Each policy is defined once, in those files, and
both the module and the simulator use it.

Values convert as Terraform converts a variable to its type: a missing or null optional
attribute takes its optional() default, a missing required one is an error, and one the
type does not declare is dropped (silently, as Terraform does, so a misspelt `cooldown` is
ignored by both). Unlike Terraform, no string, number or bool is converted into another
(the files never need it; such a value is refused, not guessed). The result is validated by
pydantic models with the module's own bounds, so what `terraform plan` would refuse is
refused here too.

The module's fixed parts around `var.scaling` (metric, statistic, period, missing-data rule,
policy and adjustment types, each direction's adjustment and operator) are in
`infrastructure/modules/compute/scaling_policy.json`, which main.tf reads with
jsondecode(file()) and `module_scaling()` reads: one definition. The file ships inside the
package as `simulator/data/scaling_policy.json`, a symlink to the module's file, because
the instances install the wheel (non-editable); the wheel build copies the file the link
points to. It is read once, when a simulation first needs it, and validated: a value
PutMetricAlarm would refuse, or a policy type, adjustment type or direction the simulator
does not model (only SimpleScaling, ChangeInCapacity, scale_out adding above its threshold
and scale_in removing below), is refused naming the file and the field. What main.tf
keeps beside the file (datapoints_to_alarm unset so M = N, warm-up =
model.model_load_seconds, cooldown = var.scaling.cooldown_s) is checked by
`infrastructure/tests/compute.tftest.hcl`. queue-guard's file, queue_guard.json, is read
the same way by `simulator.queue_guard_file`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from llmfleet.core.invalid import problems
from llmfleet.core.routing import LengthRule, by_length, ordered
from simulator.autoscaling import DEFAULT_COOLDOWN_S, Group, SimpleScaling
from simulator.cloudwatch import (
    DEFAULT_PUBLICATION_DELAY_S,
    Alarm,
    AlarmConfig,
    Comparison,
    MetricStream,
    MissingData,
    Statistic,
    check_period,
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

MAX_ALARM_MINUTES = 1440  # an alarm's window of one-minute periods is at most a day

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


class QueueGuardScaling(_Settings):
    """var.scaling.queue_guard: queue-guard's SLO, threshold, windows and cooldown."""

    ttft_slo_s: float = Field(gt=0)
    waiting_per_instance: float = Field(ge=0)
    out_minutes: int = Field(ge=1, le=MAX_ALARM_MINUTES)
    quiet_minutes: int = Field(ge=1, le=MAX_ALARM_MINUTES)
    cooldown_s: float = Field(ge=60)


class ScheduledMinimum(_Settings):
    """One of var.scaling.scheduled_minimums: a cron window raising the group's minimum."""

    name: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    start: str
    end: str
    min_size: int = Field(ge=0)
    time_zone: str

    @field_validator("start", "end")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not re.fullmatch(r"\S+( \S+){4}", value):  # the module's own rule
            raise ValueError("must be a five-field cron expression (minute hour day month "
                             "weekday, one space apart)")
        return value


class Scaling(_Settings):
    policy: Literal["gpu", "queue-guard", "inflight-guard"]
    inflight_per_instance: float | None = Field(default=None, gt=0)
    scale_out_pct: float = Field(gt=0, le=100)
    scale_in_pct: float = Field(ge=0)
    evaluation_minutes: int = Field(ge=1)
    cooldown_s: float = Field(ge=60)
    queue_guard: QueueGuardScaling
    scheduled_minimums: tuple[ScheduledMinimum, ...]

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
    # Whole seconds, 30 to 3600: the compute module's bounds (the launch hook's timeout and
    # the group's instance warm-up).
    model_load_seconds: float = Field(ge=30, le=3600, multiple_of=1)


class Environment(_Settings):
    name: str
    environment: str
    instance_type: str
    capacity: Capacity
    scaling: Scaling
    spot: Spot
    model: ServedModel
    # How long a leaving instance's requests in flight may run: the load balancer's
    # deregistration delay and the agent's drain bound (infrastructure/variables.tf).
    drain_timeout_s: float = Field(ge=0, le=3600)
    # Read only to say that it is not simulated (docs/simulator.md, "What is not done yet").
    warm_pool: dict[str, Any] | None = None
    # With several pools: the one simulated, every pool's served name, and the alias's
    # length rules that split the traffic between them.
    pool: str | None = None
    served_models: frozenset[str] = frozenset()
    length_rules: tuple[LengthRule, ...] = ()  # in the order they are tried

    @field_validator("length_rules")
    @classmethod
    def _tried_in_order(cls, rules: tuple[LengthRule, ...]) -> tuple[LengthRule, ...]:
        return tuple(ordered(rules))  # once, not for every request `share` is asked about

    def share(self, prompt_tokens: int) -> bool:
        """Whether a request of `prompt_tokens` reaches this pool (always, with one pool):
        the router's own length rules, every pool serving."""
        if self.pool is None:
            return True
        chosen = by_length(prompt_tokens, self.length_rules, self.served_models)
        return chosen is not None and chosen[0] == served_name(self.model)

    @model_validator(mode="after")
    def _scheduled_within_capacity(self) -> Environment:
        for window in self.scaling.scheduled_minimums:
            if not self.capacity.min <= window.min_size <= self.capacity.max:
                raise ValueError(f"scheduled minimum {window.name!r} needs capacity.min <= "
                                 f"min_size <= capacity.max")
        return self


# --- The module's fixed policy: scaling_policy.json -----------------------------------

POLICY_FILE = Path(__file__).parent / "data" / "scaling_policy.json"


class PolicyFileError(Exception):
    """scaling_policy.json is unreadable, or a field is missing, unknown or out of bounds."""


def one_of(*allowed: Comparison) -> AfterValidator:
    def check(value: Comparison) -> Comparison:
        if value not in allowed:
            raise ValueError(f"must be {' or '.join(allowed)}, not {value}")
        return value
    return AfterValidator(check)


class PolicyFileModel(BaseModel):
    # Strict: "60" or 60.0 for a period is a mistake in this file, not something to convert.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


PolicyModelT = TypeVar("PolicyModelT", bound=PolicyFileModel)


class _ScaleOut(PolicyFileModel):
    adjustment: int = Field(gt=0)
    comparison_operator: Annotated[
        Comparison, one_of(Comparison.GREATER, Comparison.GREATER_OR_EQUAL)]


class _ScaleIn(PolicyFileModel):
    adjustment: int = Field(lt=0)
    comparison_operator: Annotated[Comparison, one_of(Comparison.LESS, Comparison.LESS_OR_EQUAL)]


class _PolicyFile(PolicyFileModel):
    description: str = ""
    metric_name: str = Field(min_length=1, max_length=255)
    statistic: Statistic
    period_s: int
    treat_missing_data: MissingData
    # What main.tf's policy resource (scaling_adjustment, cooldown) and `SimpleScaling` do.
    policy_type: Literal["SimpleScaling"]
    adjustment_type: Literal["ChangeInCapacity"]
    scale_out: _ScaleOut
    scale_in: _ScaleIn

    @field_validator("period_s")
    @classmethod
    def _period(cls, value: int) -> int:
        check_period(value)
        return value


@dataclass(frozen=True)
class ModuleScaling:
    """The fixed parts of main.tf's GPU policies, as scaling_policy.json states them."""

    metric_name: str
    period_s: int
    statistic: Statistic
    treat_missing_data: MissingData
    scale_out: tuple[int, Comparison]  # (adjustment, comparison_operator)
    scale_in: tuple[int, Comparison]


def load_module_scaling(path: Path = POLICY_FILE) -> ModuleScaling:
    """The policy in `path` (by default the module's own file).

    Raises:
        PolicyFileError: the file is unreadable or not JSON, a field is missing or unknown, or
            a value is one the module or the simulator cannot apply; the message names the
            file and each field at fault.
    """
    policy = read_policy_file(path, _PolicyFile)
    return ModuleScaling(
        policy.metric_name, policy.period_s, policy.statistic, policy.treat_missing_data,
        (policy.scale_out.adjustment, policy.scale_out.comparison_operator),
        (policy.scale_in.adjustment, policy.scale_in.comparison_operator))


def read_policy_file(path: Path, model: type[PolicyModelT]) -> PolicyModelT:
    """`path` read and validated as `model`.

    Raises:
        PolicyFileError: the file is unreadable or not JSON, or a field is missing, unknown or
            refused; the message names the file and each field at fault.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read it: {exc.strerror}") from exc
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise PolicyFileError(f"{path}: {'; '.join(problems(exc, 'the file'))}") from exc


@functools.cache
def module_scaling() -> ModuleScaling:
    """The module's scaling_policy.json, read once, when first needed (not at import: every
    `llmfleet` command imports this module, and only `simulate` needs the file).

    Raises:
        PolicyFileError: as `load_module_scaling`.
    """
    return load_module_scaling()


def load_environment(root: Path, env: str, pool: str | None = None) -> Environment:
    """`environments/<env>.tfvars` of the repository at `root`, over the root defaults
    (`pool`: that pool's settings, for an environment of several)."""
    return read_environment(root / "environments" / f"{env}.tfvars",
                            root / "infrastructure" / "variables.tf", pool)


def pool_names(root: Path, env: str) -> list[str]:
    """The pools `environments/<env>.tfvars` deploys, by name; none for one pool.

    Raises:
        TfvarsError: as `read_environment`.
    """
    pools = read_values(root / "infrastructure" / "variables.tf",
                        root / "environments" / f"{env}.tfvars", ["pools"])["pools"]
    return sorted(pools) if isinstance(pools, dict) else []


POOL_FIELDS = ("instance_type", "capacity", "spot", "scaling", "model", "warm_pool")
DERIVED = ("pool", "served_models", "length_rules")  # from pools and routing, not variables


def variable_names() -> list[str]:
    """The root variables an environment is read from."""
    return [*(f for f in Environment.model_fields if f not in DERIVED), "pools", "routing"]


def served_name(model: ServedModel | Mapping[str, Any]) -> str:
    """The name clients ask for: the served name, else the id (as the compute module)."""
    if isinstance(model, ServedModel):
        return model.served_name or model.id
    return str(model.get("served_name") or model["id"])


def read_environment(tfvars: Path, variables: Path, pool: str | None = None) -> Environment:
    """Raises: TfvarsError: unreadable HCL, a variable missing, values plan would refuse, or
    a pool that is not there (or asked of an environment of one)."""
    values = read_values(variables, tfvars, variable_names())
    pools = values.pop("pools")
    routing = values.pop("routing")
    if isinstance(pools, dict):
        if isinstance(routing, dict) and routing.get("policy") == "scored":
            raise TfvarsError(f"{tfvars} routes by the scored policy: splitting traffic between "
                              "pools by its scores is not simulated (give length rules)")
        if pool not in pools:
            asked = "no pool named" if pool is None else f"not {pool!r}"
            raise TfvarsError(f"{tfvars} deploys the pools {', '.join(sorted(pools))}: {asked}")
        values.update({k: pools[pool][k] for k in POOL_FIELDS})
        values.update(name=f"{values['name']}-{pool}", pool=pool,
                      served_models=frozenset(served_name(p["model"]) for p in pools.values()),
                      length_rules=routing["length_rules"] if isinstance(routing, dict) else ())
    elif pool is not None:
        raise TfvarsError(f"{tfvars} deploys one pool: --pool is for an environment of several")
    try:
        return Environment.model_validate(values)
    except ValidationError as exc:
        raise TfvarsError(f"{tfvars}: {exc}") from exc


def build_group(env: Environment) -> Group:
    return Group(env.capacity.min, env.capacity.max, env.capacity.desired,
                 warmup_s=env.model.model_load_seconds, default_cooldown_s=DEFAULT_COOLDOWN_S)


def gpu_policies(scaling: Scaling, metric: MetricStream, *,
                 publication_delay_s: float = DEFAULT_PUBLICATION_DELAY_S,
                 module: ModuleScaling | None = None) -> list[SimpleScaling]:
    """main.tf's `aws_autoscaling_policy.gpu` and their alarms: high scales out, low in
    (`module`: the module's fixed parts, by default its file's)."""
    module = module or module_scaling()
    steps = {"gpu-high": (module.scale_out, scaling.scale_out_pct),
             "gpu-low": (module.scale_in, scaling.scale_in_pct)}
    policies = []
    for name, ((adjustment, comparison), threshold) in steps.items():
        config = AlarmConfig(threshold, comparison, scaling.evaluation_minutes,
                             period_s=module.period_s, statistic=module.statistic,
                             treat_missing_data=module.treat_missing_data,
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
