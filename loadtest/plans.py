"""Plans files for `llmfleet bench`: the execution plans to compare and how to measure them.

A TOML file with one `[search]` table and one `[[plan]]` table per plan:

    [search]
    workload = "fixed:128:64"        # the requests every level sends (loadtest.workload)
    concurrency = [1, 4, 16]         # closed-loop concurrency levels to sweep
    requests_per_level = 32          # at least this many, and at least 2x the concurrency
    warmup_requests = 4
    sla = "e2e_p95_ms<=5000,error_rate<=0"   # loadtest.sla
    target_concurrency = 16          # the load plans are compared at when none is priced
    market = "on-demand"             # or "spot": which catalogue price applies

    [[plan]]
    name = "bf16-seqs32"
    model = ""                       # Hugging Face id or path; empty: the generated test model
    dtype = "bfloat16"
    max_num_seqs = 32
    max_model_len = 2048
    enable_prefix_caching = true
    kv_cache_dtype = "auto"
    cpu_threads = 2                  # CPU engines: cores the engine binds (0..N-1)
    tensor_parallel_size = 1         # GPU engines
    kv_cache_memory_bytes = 536870912
    extra_args = []                  # any other vLLM arguments
    instance_type = "g5.xlarge"      # optional: prices the plan from the catalogue
    price_usd_hr = 1.006             # optional: or price it directly
    endpoint = "https://..."         # optional: measure a running endpoint, start nothing
    api_key_env = "MY_KEY"           # optional: the variable holding that endpoint's key

Everything is checked when the file is read, so a typo fails in a second, not
after the first plan's engine took a minute to start.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from llmfleet.core import instances
from llmfleet.core.engine import EngineSpec
from loadtest import sla, workload


class PlansError(ValueError):
    """A plans file that cannot be used; the message names the file, the plan and the key."""


@dataclass(frozen=True)
class Search:
    workload_spec: str
    workload: workload.Workload
    concurrency: tuple[int, ...]
    requests_per_level: int
    warmup_requests: int
    sla_spec: str
    checks: tuple[sla.Check, ...]
    target_concurrency: int
    market: instances.Market

    def requests_at(self, concurrency: int) -> int:
        return max(self.requests_per_level, 2 * concurrency)


@dataclass(frozen=True)
class Plan:
    name: str
    model: str = ""
    dtype: str | None = None
    max_num_seqs: int | None = None
    max_model_len: int | None = None
    enable_prefix_caching: bool | None = None
    kv_cache_dtype: str | None = None
    cpu_threads: int | None = None
    tensor_parallel_size: int | None = None
    kv_cache_memory_bytes: int | None = None
    extra_args: tuple[str, ...] = ()
    instance_type: str | None = None
    price_usd_hr: float | None = None
    endpoint: str | None = None
    api_key_env: str | None = None
    market: instances.Market = field(default=instances.Market.ON_DEMAND)

    def price(self) -> float | None:
        """USD per hour: the plan's own price, else the catalogue's for its instance type."""
        if self.price_usd_hr is not None:
            return self.price_usd_hr
        if self.instance_type is None:
            return None
        return instances.instances()[self.instance_type].price_usd_hr(self.market)

    def engine_args(self) -> tuple[str, ...]:
        """vLLM arguments for this plan (beyond model, name, host and port)."""
        args: list[str] = []
        for flag, value in (("--dtype", self.dtype), ("--max-num-seqs", self.max_num_seqs),
                            ("--kv-cache-dtype", self.kv_cache_dtype),
                            ("--tensor-parallel-size", self.tensor_parallel_size),
                            ("--kv-cache-memory-bytes", self.kv_cache_memory_bytes)):
            if value is not None:
                args += [flag, str(value)]
        if self.enable_prefix_caching is not None:
            args.append("--enable-prefix-caching" if self.enable_prefix_caching
                        else "--no-enable-prefix-caching")
        return (*args, *self.extra_args)

    def engine_env(self) -> dict[str, str]:
        if self.cpu_threads is None:
            return {}
        return {"VLLM_CPU_OMP_THREADS_BIND": f"0-{self.cpu_threads - 1}"}

    def engine_spec(self, port: int) -> EngineSpec:
        """How to start this plan's engine on `port`."""
        from llmfleet.core.engine import TEST_MODEL_ARGS, engine_spec_for

        base = engine_spec_for(self.model, port)
        # The test model's own KV-cache size gives way to the plan's.
        extra = base.extra_args
        if self.kv_cache_memory_bytes is not None and extra[:2] == TEST_MODEL_ARGS:
            extra = extra[2:]
        return EngineSpec(base.model, base.served_name, port,
                          max_model_len=self.max_model_len or base.max_model_len,
                          extra_args=(*extra, *self.engine_args()), env=self.engine_env())


class _Table(BaseModel):
    # Strict types: TOML has real types, so a quoted number or `true` for a count is
    # a mistake to name, not a value to coerce.
    model_config = ConfigDict(extra="forbid", strict=True)


class _SearchTable(_Table):
    workload: str = "fixed:128:64"
    concurrency: list[int] = Field(default_factory=lambda: [1, 4, 16])
    requests_per_level: int = Field(default=32, ge=1)
    warmup_requests: int = Field(default=4, ge=0)
    sla: str = ""
    target_concurrency: int | None = Field(default=None, ge=1)
    market: Annotated[instances.Market, pydantic.Strict(False)] = instances.Market.ON_DEMAND

    @model_validator(mode="after")
    def _consistent(self) -> _SearchTable:
        # WorkloadError and SlaError are ValueErrors: pydantic reports their messages.
        workload.parse(self.workload)
        sla.parse(self.sla)
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError("concurrency must be a list of positive whole numbers")
        self.concurrency = sorted(set(self.concurrency))
        if self.target_concurrency is not None and self.target_concurrency not in self.concurrency:
            raise ValueError(f"target_concurrency {self.target_concurrency} is not one of the "
                             f"concurrency levels {self.concurrency}")
        return self

    def search(self) -> Search:
        return Search(self.workload, workload.parse(self.workload), tuple(self.concurrency),
                      self.requests_per_level, self.warmup_requests, self.sla,
                      sla.parse(self.sla), self.target_concurrency or self.concurrency[-1],
                      self.market)


class _PlanTable(_Table):
    name: str = Field(min_length=1)
    model: str = ""
    dtype: Literal["auto", "float32", "bfloat16", "float16", "half", "float"] | None = None
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_model_len: int | None = Field(default=None, ge=1)
    enable_prefix_caching: bool | None = None
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16"] | None = None
    cpu_threads: int | None = Field(default=None, ge=1)
    tensor_parallel_size: int | None = Field(default=None, ge=1)
    kv_cache_memory_bytes: int | None = Field(default=None, ge=1)
    extra_args: tuple[str, ...] = ()
    instance_type: str | None = None
    price_usd_hr: float | None = Field(default=None, gt=0)
    endpoint: str | None = None
    api_key_env: str | None = None

    @field_validator("extra_args", mode="before")
    @classmethod
    def _args_as_text(cls, value: Any) -> Any:
        # vLLM reads its command line: `["--seed", 7]` means "--seed 7".
        return tuple(str(a) for a in value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _usable(self) -> _PlanTable:
        cores, catalogue = os.cpu_count() or 1, instances.instances()
        if self.cpu_threads is not None and self.cpu_threads > cores:
            raise ValueError(f"cpu_threads {self.cpu_threads} is more than this machine's "
                             f"{cores} cores")
        if self.instance_type is not None and self.instance_type not in catalogue:
            raise ValueError(f"instance_type {self.instance_type!r} is not in the catalogue "
                             f"({', '.join(sorted(catalogue))})")
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http:// or https:// URL")
        if self.api_key_env is not None and self.endpoint is None:
            raise ValueError("api_key_env only applies to a plan with an endpoint")
        return self


class _PlansFile(_Table):
    search: _SearchTable = Field(default_factory=_SearchTable)
    plan: list[_PlanTable] = Field(min_length=1)


def load(path: Path) -> tuple[Search, list[Plan]]:
    """The search settings and plans in a plans file.

    Raises:
        PlansError: the file is missing, not TOML, or a value is wrong.
    """
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PlansError(f"cannot read plans file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PlansError(f"{path}: not valid TOML: {exc}") from exc
    try:
        parsed = _PlansFile.model_validate(data)
    except ValidationError as exc:
        raise PlansError(_first_problem(exc, path, data)) from None
    search = parsed.search.search()
    plans = [Plan(**table.model_dump(), market=search.market) for table in parsed.plan]
    names = [p.name for p in plans]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise PlansError(f"{path}: plan names must be unique; repeated: {dupes}")
    return search, plans


def _first_problem(exc: ValidationError, path: Path, data: dict[str, Any]) -> str:
    """One line naming the file, the table (`[search]`, the plan's name or number) and the
    key: the first table's unknown keys if it has any, else its first problem."""
    errors = sorted(exc.errors(), key=_reading_order)
    first = errors[0]
    table, rest = _table(first["loc"]), first["loc"][len(_table(first["loc"])):]
    where = (f"{path} [search]" if table == ("search",) else
             f"{path} plan {_plan_label(data['plan'], int(table[1]))}" if table else str(path))
    if first["type"] == "extra_forbidden":
        unknown = sorted(str(e["loc"][-1]) for e in errors
                         if e["type"] == "extra_forbidden" and _table(e["loc"]) == table)
        if not table:
            return f"{where}: unknown table(s) {unknown}; use [search] and [[plan]]"
        known = sorted((_SearchTable if table == ("search",) else _PlanTable).model_fields)
        return f"{where}: unknown key(s) {unknown}; known: {known}"
    if rest[:1] == ("plan",):
        return f"{where}: no [[plan]] tables"
    return f"{where}: {_problem(first, rest)}"


def _reading_order(error: ErrorDetails) -> tuple[int, tuple[int | str, ...], bool]:
    """The file as it is checked: top level, then [search], then each plan in turn; in a
    table, unknown keys before bad values."""
    table = _table(error["loc"])
    rank = 0 if not table else 1 if table == ("search",) else 2
    return rank, table, error["type"] != "extra_forbidden"


def _table(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Where in the file: () for the top level, ("search",), or ("plan", index)."""
    if loc[:1] == ("search",):
        return loc[:1]
    return loc[:2] if loc[:1] == ("plan",) and len(loc) > 1 else ()


def _plan_label(plans: list[Any], index: int) -> str:
    name = plans[index].get("name") if isinstance(plans[index], dict) else None
    return repr(name) if isinstance(name, str) and name else str(index + 1)


def _problem(error: ErrorDetails, rest: tuple[int | str, ...]) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error["input"]
    if kind == "value_error":
        return str(ctx["error"])  # our validators' messages name the key themselves
    if not rest:
        return "not a table"
    key = str(rest[0]) + "".join(f" item {i + 1}" for i in rest[1:2] if isinstance(i, int))
    if kind in ("missing", "string_too_short"):
        return f"needs a {key}"
    if kind.endswith("_type") or (kind in ("literal_error", "enum")
                                  and not isinstance(value, str)):
        return f"{key} has the wrong type ({type(value).__name__})"
    if kind in ("literal_error", "enum"):
        return f"{key} {value!r} is not one of {ctx['expected'].replace(chr(39), '')}"
    if kind == "greater_than_equal":
        return f"{key} must be at least {ctx['ge']}"
    if kind == "greater_than" and ctx["gt"] == 0:
        return f"{key} must be positive"
    return f"{key}: {error['msg']}"
