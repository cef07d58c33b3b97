"""Sizing several pools: the mix split by the router's own length rules, each pool sized
for its share, and the tfvars `pools` and `routing` blocks that deploy them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from llmfleet.cli import main
from llmfleet.core.lengths import FixedLengths, LogNormalLengths
from llmfleet.core.routing import LengthRule
from planner import catalog
from planner.pools import PoolPlanError, PoolSpec, size, split
from planner.sizing import Question, Slo
from simulator.tfvars import read_tfvars

SMALL = PoolSpec("small", catalog.model("Qwen2.5-1.5B-Instruct"), "Qwen/Qwen2.5-1.5B-Instruct",
                 "g5.xlarge")
LARGE = PoolSpec("large", catalog.model("Llama-3.1-8B-Instruct"),
                 "meta-llama/Llama-3.1-8B-Instruct")
RULES = [LengthRule(model="large"), LengthRule(model="small", max_prompt_tokens=512)]
MIX = LogNormalLengths(512, 256)


def test_the_mix_is_split_as_the_router_would_split_it() -> None:
    small, large = split([SMALL, LARGE], RULES, MIX, samples=5000)
    assert small.share + large.share == pytest.approx(1.0)
    assert 0.45 < small.share < 0.55  # half the draws of a log-normal fall under its median
    assert small.input_len <= 512 < large.input_len
    assert small.max_len <= 512 + 256 * 8  # prompts within the bound, outputs clamped at x8
    assert large.max_len > small.max_len
    # The same seed, the same split.
    assert split([SMALL, LARGE], RULES, MIX, samples=5000) == [small, large]


def test_a_pool_no_request_reaches_or_a_rule_for_no_pool_is_refused() -> None:
    with pytest.raises(PoolPlanError, match="no request of this mix reaches pool"):
        split([SMALL, LARGE], RULES, FixedLengths(100, 100))
    with pytest.raises(PoolPlanError, match="not given: medium"):
        split([SMALL, LARGE], [*RULES, LengthRule(model="medium", max_prompt_tokens=2048)], MIX)


def test_each_pool_is_sized_for_its_share_on_its_instance_type() -> None:
    shares = split([SMALL, LARGE], RULES, MIX, samples=5000)
    base = Question(arch=SMALL.arch, input_len=1, output_len=1, slo=Slo(2000, 100),
                    request_rate=40.0)
    small, large = size(shares, base)
    assert small.question.request_rate == pytest.approx(40.0 * shares[0].share)
    assert (small.question.input_len, small.question.output_len) == \
        (shares[0].input_len, shares[0].output_len)
    assert small.best is not None and small.best.instance.name == "g5.xlarge"
    assert large.best is not None  # the cheapest that meets the SLO
    # Twice the rate: never fewer instances.
    doubled = size(shares, replace(base, request_rate=80.0))
    assert all(d.best is not None and s.best is not None
               and d.best.instances_needed >= s.best.instances_needed
               for d, s in zip(doubled, (small, large), strict=True))
    assert small.inflight_target == int(small.best.concurrency * 0.75)


def test_plan_pools_prints_each_pool_and_tfvars_terraform_reads(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["plan", "pools", "--pool", "small=Qwen/Qwen2.5-1.5B-Instruct@g5.xlarge",
                 "--pool", "large=meta-llama/Llama-3.1-8B-Instruct@g6e.xlarge",
                 "--rule", "small:512", "--rule", "large", "--rate", "20",
                 "--ttft-ms", "2000", "--tpot-ms", "100"])
    out = capsys.readouterr().out
    assert code == 0, out
    table, _, snippet = out.partition("environments/<env>.tfvars:\n")
    assert "small" in table and "g5.xlarge" in table and "g6e.xlarge" in table
    (tmp_path / "pools.tfvars").write_text(snippet)
    values = read_tfvars(tmp_path / "pools.tfvars")
    pools, routing = values["pools"], values["routing"]
    assert isinstance(pools, dict) and isinstance(routing, dict)
    assert pools["large"]["instance_type"] == "g6e.xlarge"
    assert pools["small"]["model"]["id"] == "Qwen/Qwen2.5-1.5B-Instruct"
    # Room for the router's estimate falling short of the tokenizer, within the context.
    assert pools["small"]["model"]["max_model_len"] % 1024 == 0
    assert 512 < pools["small"]["model"]["max_model_len"] <= SMALL.arch.max_position_embeddings
    assert "spot" not in pools["small"]  # on demand unless --market spot
    assert routing["length_rules"] == [
        {"model": "Qwen/Qwen2.5-1.5B-Instruct", "max_prompt_tokens": 512},
        {"model": "meta-llama/Llama-3.1-8B-Instruct"}]


@pytest.mark.parametrize(("argv", "message"), [
    (["--pool", "Small=Qwen2.5-1.5B-Instruct", "--rule", "Small"], "NAME=MODEL"),
    (["--pool", "small=no-such-model", "--rule", "small"], "no-such-model"),
    (["--pool", "small=Qwen2.5-1.5B-Instruct", "--rule", "small:many"], "NAME:MAX_PROMPT"),
    (["--pool", "small=Qwen2.5-1.5B-Instruct", "--rule", "small",
      "--lengths", "uniform:1:2"], "unknown workload"),
])
def test_bad_pools_or_rules_are_refused_with_a_clear_error(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "pools", *argv, "--rate", "1"]) == 2
    assert message in capsys.readouterr().err


def test_a_pool_on_a_named_instance_type_gets_the_search_s_preference() -> None:
    """The pool was given the cheapest candidate left after keeping its instance type, in
    the search's raw cost order: int4 for a 1.5B model whose fp16 fleet costs the same, where
    the search's tie rule prefers the precision that needs no quantised checkpoint."""
    shares = split([SMALL, LARGE], RULES, MIX, samples=5000)
    base = Question(arch=SMALL.arch, input_len=1, output_len=1, slo=Slo(2000, 100),
                    request_rate=20.0)
    small, _ = size(shares, base)
    assert small.best is not None and small.best.instance.name == "g5.xlarge"
    assert small.best.precision.value == "fp16"
