"""Plans files: what they hold, how each plan launches vLLM, and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmfleet.core import instances
from llmfleet.core.engine import TEST_MODEL_NAME
from loadtest.plans import Plan, PlansError, load
from loadtest.sla import Check
from loadtest.workload import Fixed
from tests.helpers.vllm_args import vllm_parses

FULL = """
[search]
workload = "fixed:64:32"
concurrency = [8, 1, 4]
requests_per_level = 10
warmup_requests = 0
sla = "e2e_p95_ms<=3000"
target_concurrency = 4
market = "spot"

[[plan]]
name = "everything"
dtype = "bfloat16"
max_num_seqs = 8
max_model_len = 1024
enable_prefix_caching = false
kv_cache_dtype = "fp8"
cpu_threads = 1
kv_cache_memory_bytes = 268435456
extra_args = ["--seed", "7"]
instance_type = "g5.xlarge"

[[plan]]
name = "remote"
endpoint = "https://llm.example.com"
api_key_env = "REMOTE_KEY"
price_usd_hr = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plans.toml"
    path.write_text(text)
    return path


def test_a_full_file_reads_back(tmp_path: Path) -> None:
    search, plans = load(write(tmp_path, FULL))
    assert search.workload == Fixed(64, 32)
    assert search.concurrency == (1, 4, 8)  # sorted
    assert search.checks == (Check("e2e_p95_ms", "<=", 3000),)
    assert (search.target_concurrency, search.market) == (4, instances.Market.SPOT)
    assert search.requests_at(1) == 10 and search.requests_at(8) == 16  # at least 2x
    assert [p.name for p in plans] == ["everything", "remote"]
    spot = instances.instances()["g5.xlarge"].price_usd_hr(instances.Market.SPOT)
    assert plans[0].price() == spot
    assert plans[1].price() == 2.0


def test_defaults_for_a_minimal_file(tmp_path: Path) -> None:
    search, plans = load(write(tmp_path, '[[plan]]\nname = "only"\n'))
    assert (search.concurrency, search.target_concurrency, search.checks) == ((1, 4, 16), 16, ())
    assert plans == [Plan(name="only")]
    assert plans[0].price() is None


def test_the_plan_becomes_a_vllm_command_line_vllm_accepts(tmp_path: Path) -> None:
    _, plans = load(write(tmp_path, FULL))
    spec = plans[0].engine_spec(port=8123)
    assert spec.served_name == TEST_MODEL_NAME
    assert spec.env == {"VLLM_CPU_OMP_THREADS_BIND": "0-0"}
    # The plan's KV-cache size replaces the test model's own.
    assert spec.extra_args.count("--kv-cache-memory-bytes") == 1
    args = vllm_parses(spec.command()[3:])
    assert (args["dtype"], args["max_num_seqs"], args["max_model_len"]) == ("bfloat16", 8, 1024)
    assert (args["enable_prefix_caching"], args["kv_cache_dtype"]) == (False, "fp8")
    assert (args["kv_cache_memory_bytes"], args["seed"], args["port"]) == (268435456, 7, 8123)


@pytest.mark.parametrize(("text", "message"), [
    ("[[plan]]\nname = 'a'\n[[plan]]\nname = 'a'\n",
     r"plan names must be unique; repeated: \['a'\]"),
    ("[search]\nworkload = 'fixed:1'\n[[plan]]\nname = 'a'\n", r"\[search\]: unknown workload"),
    ("[search]\nsla = 'fast'\n[[plan]]\nname = 'a'\n", "is not METRIC<=LIMIT"),
    ("[search]\nconcurrency = [0]\n[[plan]]\nname = 'a'\n", "positive whole numbers"),
    ("[search]\nconcurrency = [1, 2]\ntarget_concurrency = 3\n[[plan]]\nname = 'a'\n",
     r"target_concurrency 3 is not one of the concurrency levels \[1, 2\]"),
    ("[search]\nmarket = 'reserved'\n[[plan]]\nname = 'a'\n", "on-demand or spot"),
    ("[search]\nconcurrency = [1, true]\n[[plan]]\nname = 'a'\n",
     r"\[search\]: concurrency item 2 has the wrong type \(bool\)"),
    ("[search]\nwarmup_requests = -1\n[[plan]]\nname = 'a'\n",
     "warmup_requests must be at least 0"),
    ("search = 3\n[[plan]]\nname = 'a'\n", r"\[search\]: not a table"),
    ("plan = [1]\n", "plan 1: not a table"),
    ("[[plan]]\nname = ''\n", "plan 1: needs a name"),
    ("[search]\nrequests = 5\n[[plan]]\nname = 'a'\n", r"unknown key\(s\) \['requests'\]"),
    ("[serch]\n[[plan]]\nname = 'a'\n", r"unknown table\(s\) \['serch'\]"),
    ("[search]\n", r"no \[\[plan\]\] tables"),
    # Regression: with problems in both, the plan's was named first; [search] comes first.
    ("[search]\nrequests = 5\n[[plan]]\nname = 'a'\nmax_num_seqs = 0\n",
     r"\[search\]: unknown key\(s\) \['requests'\]"),
    ("[[plan]]\nmodel = 'x'\n", "plan 1: needs a name"),
    ("[[plan]]\nname = 'a'\nmax_num_seq = 4\n", r"plan 'a': unknown key\(s\) \['max_num_seq'\]"),
    ("[[plan]]\nname = 'a'\nmax_num_seqs = '4'\n", "max_num_seqs has the wrong type"),
    ("[[plan]]\nname = 'a'\nmax_num_seqs = true\n", "max_num_seqs has the wrong type"),
    ("[[plan]]\nname = 'a'\nprice_usd_hr = true\n", r"price_usd_hr has the wrong type \(bool\)"),
    ("[[plan]]\nname = 'a'\n[[plan]]\nname = 'b'\nmax_num_seqs = 0\n",
     "plan 'b': max_num_seqs must be at least 1"),
    ("[[plan]]\nname = 'a'\nmax_num_seqs = 0\n", "max_num_seqs must be at least 1"),
    ("[[plan]]\nname = 'a'\ndtype = 'fp4'\n", "dtype 'fp4' is not one of auto"),
    ("[[plan]]\nname = 'a'\nkv_cache_dtype = 'int2'\n", "kv_cache_dtype 'int2' is not one of"),
    ("[[plan]]\nname = 'a'\ncpu_threads = 4096\n", "more than this machine's"),
    ("[[plan]]\nname = 'a'\ninstance_type = 'g9.huge'\n", "'g9.huge' is not in the catalogue"),
    ("[[plan]]\nname = 'a'\nprice_usd_hr = -1\n", "price_usd_hr must be positive"),
    ("[[plan]]\nname = 'a'\nendpoint = 'localhost:8000'\n", "http:// or https:// URL"),
    ("[[plan]]\nname = 'a'\napi_key_env = 'K'\n", "only applies to a plan with an endpoint"),
    ("[[plan]\nname = 'a'\n", "not valid TOML"),
])
def test_bad_files_say_what_and_where(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PlansError, match=message):
        load(write(tmp_path, text))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PlansError, match=r"cannot read plans file .*nope\.toml: No such file"):
        load(tmp_path / "nope.toml")


@pytest.mark.parametrize("name", ["cpu-plans.toml", "g5-plans.toml"])
def test_the_example_plans_files_are_valid(name: str) -> None:
    search, plans = load(Path(__file__).resolve().parents[2] / "loadtest" / "examples" / name)
    assert len(plans) >= 3 and search.checks
    if name.startswith("g5"):
        assert all(p.price() is not None and p.endpoint for p in plans)  # ranked by cost
