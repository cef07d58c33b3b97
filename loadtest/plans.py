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
from typing import Any

from llmfleet.core import instances
from llmfleet.core.engine import EngineSpec
from loadtest import sla, workload

DTYPES = ("auto", "float32", "bfloat16", "float16", "half", "float")
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16")


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


_SEARCH_KEYS = {"workload", "concurrency", "requests_per_level", "warmup_requests", "sla",
                "target_concurrency", "market"}
_PLAN_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str, "model": str, "dtype": str, "max_num_seqs": int, "max_model_len": int,
    "enable_prefix_caching": bool, "kv_cache_dtype": str, "cpu_threads": int,
    "tensor_parallel_size": int, "kv_cache_memory_bytes": int, "extra_args": list,
    "instance_type": str, "price_usd_hr": (int, float), "endpoint": str, "api_key_env": str}


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
    unknown = set(data) - {"search", "plan"}
    if unknown:
        raise PlansError(f"{path}: unknown table(s) {sorted(unknown)}; use [search] and "
                         "[[plan]]")
    search = _search(data.get("search", {}), path)
    raw_plans = data.get("plan")
    if not isinstance(raw_plans, list) or not raw_plans:
        raise PlansError(f"{path}: no [[plan]] tables")
    plans = [_plan(raw, i, path, search.market) for i, raw in enumerate(raw_plans, 1)]
    names = [p.name for p in plans]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise PlansError(f"{path}: plan names must be unique; repeated: {dupes}")
    return search, plans


def _search(raw: dict[str, Any], path: Path) -> Search:
    where = f"{path} [search]"
    if unknown := set(raw) - _SEARCH_KEYS:
        raise PlansError(f"{where}: unknown key(s) {sorted(unknown)}; known: "
                         f"{sorted(_SEARCH_KEYS)}")
    spec = _typed(raw, "workload", str, where, "fixed:128:64")
    concurrency = raw.get("concurrency", [1, 4, 16])
    if (not isinstance(concurrency, list) or not concurrency
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0
                       for c in concurrency)):
        raise PlansError(f"{where}: concurrency must be a list of positive whole numbers")
    sla_spec = _typed(raw, "sla", str, where, "")
    try:
        load_shape = workload.parse(spec)
        checks = sla.parse(sla_spec)
    except (workload.WorkloadError, sla.SlaError) as exc:
        raise PlansError(f"{where}: {exc}") from exc
    levels = tuple(sorted(set(concurrency)))
    target = _positive(raw, "target_concurrency", where, levels[-1])
    if target not in levels:
        raise PlansError(f"{where}: target_concurrency {target} is not one of the "
                         f"concurrency levels {list(levels)}")
    market = _typed(raw, "market", str, where, "on-demand")
    if market not in {m.value for m in instances.Market}:
        raise PlansError(f"{where}: market must be on-demand or spot")
    return Search(spec, load_shape, levels, _positive(raw, "requests_per_level", where, 32),
                  _positive(raw, "warmup_requests", where, 4, minimum=0), sla_spec, checks,
                  target, instances.Market(market))


def _plan(raw: Any, index: int, path: Path, market: instances.Market) -> Plan:
    if not isinstance(raw, dict):
        raise PlansError(f"{path} plan {index}: not a table")
    where = f"{path} plan {raw.get('name', index)!r}"
    if unknown := set(raw) - set(_PLAN_TYPES):
        raise PlansError(f"{where}: unknown key(s) {sorted(unknown)}; known: "
                         f"{sorted(_PLAN_TYPES)}")
    for key, kind in _PLAN_TYPES.items():
        if key in raw and (not isinstance(raw[key], kind) or (isinstance(raw[key], bool)
                           and kind is not bool)):
            raise PlansError(f"{where}: {key} has the wrong type ({type(raw[key]).__name__})")
    if not raw.get("name"):
        raise PlansError(f"{path} plan {index}: needs a name")
    values = dict(raw)
    values["extra_args"] = tuple(str(a) for a in raw.get("extra_args", []))
    if "price_usd_hr" in values:
        values["price_usd_hr"] = float(values["price_usd_hr"])
    plan = Plan(**values, market=market)
    _check_plan(plan, where)
    return plan


def _check_plan(plan: Plan, where: str) -> None:
    if plan.dtype is not None and plan.dtype not in DTYPES:
        raise PlansError(f"{where}: dtype {plan.dtype!r} is not one of {', '.join(DTYPES)}")
    if plan.kv_cache_dtype is not None and plan.kv_cache_dtype not in KV_CACHE_DTYPES:
        raise PlansError(f"{where}: kv_cache_dtype {plan.kv_cache_dtype!r} is not one of "
                         f"{', '.join(KV_CACHE_DTYPES)}")
    for key in ("max_num_seqs", "max_model_len", "tensor_parallel_size", "cpu_threads",
                "kv_cache_memory_bytes"):
        value = getattr(plan, key)
        if value is not None and value < 1:
            raise PlansError(f"{where}: {key} must be at least 1")
    if plan.cpu_threads is not None and plan.cpu_threads > (os.cpu_count() or 1):
        raise PlansError(f"{where}: cpu_threads {plan.cpu_threads} is more than this "
                         f"machine's {os.cpu_count()} cores")
    if plan.instance_type is not None and plan.instance_type not in instances.instances():
        raise PlansError(f"{where}: instance_type {plan.instance_type!r} is not in the "
                         f"catalogue ({', '.join(sorted(instances.instances()))})")
    if plan.price_usd_hr is not None and plan.price_usd_hr <= 0:
        raise PlansError(f"{where}: price_usd_hr must be positive")
    if plan.endpoint is not None and not plan.endpoint.startswith(("http://", "https://")):
        raise PlansError(f"{where}: endpoint must be an http:// or https:// URL")
    if plan.api_key_env is not None and plan.endpoint is None:
        raise PlansError(f"{where}: api_key_env only applies to a plan with an endpoint")


def _typed(raw: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = raw.get(key, default)
    if not isinstance(value, kind):
        raise PlansError(f"{where}: {key} must be a {kind.__name__}")
    return value


def _positive(raw: dict[str, Any], key: str, where: str, default: int,
              minimum: int = 1) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise PlansError(f"{where}: {key} must be a whole number >= {minimum}")
    return value
