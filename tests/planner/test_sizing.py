"""The sizing search over a crafted catalogue: it must find the known-cheapest answer."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llmfleet.core.instances import Instance, Market, instances
from planner import catalog, report, sizing
from planner.memory import Precision
from planner.sizing import SEARCHED_PRECISIONS as SEARCHED
from planner.sizing import Question, Slo, search, tensor_parallel_sizes


def _instance(name: str, gpu: str, count: int, price: float,
              spot: float | None = None) -> Instance:
    return Instance(name=name, gpu=gpu, gpu_count=count, vcpu=8, ram_gib=64,
                    ondemand_usd_hr=price, spot_usd_hr_low=spot, spot_usd_hr_high=spot,
                    region="us-east-1", source="crafted for the test")


@pytest.fixture
def crafted(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {i.name: i for i in (
        _instance("small", "T4", 1, 0.30),  # cheapest, but an 8B fp16 model does not fit
        _instance("mid-a", "A10G", 1, 1.00, spot=0.40),
        _instance("mid-b", "A10G", 1, 1.20),  # the same GPU, dearer: never chosen
        _instance("big", "A100-80G", 1, 40.00),  # fast, but dear per token
    )}
    monkeypatch.setattr(sizing, "instances", lambda: table)


def _question(**changes: object) -> Question:
    base = {"arch": catalog.model("Llama-3.1-8B"), "input_len": 512, "output_len": 128,
            "precisions": (Precision.FP16,)}
    return Question(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.usefixtures("crafted")
def test_the_cheapest_feasible_instance_wins() -> None:
    ranked = search(_question(slo=Slo(tpot_ms=100)))
    assert [c.instance.name for c in ranked] == ["mid-a", "mid-b", "big", "small"]
    small = next(c for c in ranked if c.instance.name == "small")
    assert not small.feasible
    assert "exceed the 14.4 GiB usable" in small.why_not
    assert ranked.index(small) == len(ranked) - 1  # infeasible ones come last


@pytest.mark.usefixtures("crafted")
def test_a_tight_latency_target_moves_to_the_faster_gpu() -> None:
    ranked = search(_question(slo=Slo(tpot_ms=15)))
    assert ranked[0].instance.name == "big"
    a10g = next(c for c in ranked if c.instance.name == "mid-a")
    assert a10g.why_not.startswith("misses the SLO even at concurrency 1: TPOT")


@pytest.mark.usefixtures("crafted")
def test_a_request_rate_sets_the_instance_count_and_the_asg_bounds() -> None:
    ranked = search(_question(slo=Slo(tpot_ms=100), request_rate=30))
    best = ranked[0]
    per_instance = best.prediction.requests_s * best.replicas_per_instance
    assert best.instances_needed == -(-30 // per_instance)
    assert (best.instances_needed - 1) * per_instance < 30 <= best.instances_needed * per_instance
    cap = sizing.asg_capacity(best)
    assert cap.min == cap.desired == best.instances_needed < cap.max


@pytest.mark.usefixtures("crafted")
def test_spot_prices_rank_and_missing_ones_are_explained() -> None:
    ranked = search(_question(slo=Slo(tpot_ms=100), market=Market.SPOT))
    assert ranked[0].instance.name == "mid-a"
    assert ranked[0].price_usd_hr == 0.40
    big = next(c for c in ranked if c.instance.name == "big")
    assert big.why_not == "no spot price in the catalogue"


@pytest.mark.usefixtures("crafted")
def test_nothing_feasible_says_why_for_each() -> None:
    ranked = search(_question(slo=Slo(ttft_ms=1)))
    assert not any(c.feasible for c in ranked)
    assert all(c.why_not for c in ranked)


def test_tensor_parallel_sizes_divide_the_gpus_and_the_heads() -> None:
    llama = catalog.model("Llama-3.1-8B")  # 32 heads, 8 KV heads
    assert tensor_parallel_sizes(llama, 8) == [1, 2, 4, 8]
    assert tensor_parallel_sizes(llama, 4) == [1, 2, 4]
    assert tensor_parallel_sizes(catalog.model("Qwen2.5-7B-Instruct"), 8) == [1, 2, 4]  # 28 heads


def test_the_real_catalogue_is_searched_whole() -> None:
    ranked = search(_question())
    llama = catalog.model("Llama-3.1-8B")
    sizes = [len(tensor_parallel_sizes(llama, i.gpu_count)) for i in instances().values()]
    assert len(ranked) == sum(sizes)


def test_without_a_rate_an_8_gpu_instance_is_not_recommended_for_slightly_cheaper_tokens(
) -> None:
    """The explorer recommended a $21.96/hr p4d.24xlarge for an 8B model because its tokens
    were a few per cent cheaper than a one-GPU instance's; without a rate the fleet is now
    sized for the default load, and the answer says so."""
    q = Question(catalog.model("Llama-3.1-8B"), 512, 256)
    ranked = search(q)
    best = ranked[0]
    assert best.feasible and best.instance.gpu_count == 1 and best.instances_needed == 1
    assert best.fleet_usd_hr < 2
    text = report.recommendation(q, ranked)
    assert f"sized for {sizing.DEFAULT_RATE:g} requests/s" in text
    assert "give yours (--rate)" in text


@pytest.mark.usefixtures("crafted")
def test_a_fleet_within_a_few_per_cent_goes_to_the_smaller_instance(
        monkeypatch: pytest.MonkeyPatch) -> None:
    one = search(_question(slo=Slo(tpot_ms=100)))[0]
    rate = one.prediction.requests_s * 3.5  # four one-GPU instances, or one four-GPU one

    def ranked_with_quad_at(price: float) -> list[sizing.Candidate]:
        table = {i.name: i for i in (_instance("mid-a", "A10G", 1, 1.00),
                                     _instance("quad", "A10G", 4, price))}
        monkeypatch.setattr(sizing, "instances", lambda: table)
        return search(_question(slo=Slo(tpot_ms=100), request_rate=rate))

    close = ranked_with_quad_at(3.90)  # 2.5% less than four mid-a at $1.00
    assert [c.instance.name for c in close[:2]] == ["mid-a", "quad"]
    assert close[0].instances_needed == 4 and close[1].instances_needed == 1
    why = report.why(_question(request_rate=rate), close)
    assert "quad (4x A10G, fp16) would save 2.5%" in why and "smaller instance" in why
    assert ranked_with_quad_at(3.50)[0].instance.name == "quad"  # 12.5% is no tie


def test_a_precision_the_gpu_cannot_run_is_not_offered() -> None:
    """fp8 was offered, and recommended, on a T4, which vLLM cannot run it on."""
    t4 = next(i for i in instances().values() if i.gpu == "T4")
    q = _question(precisions=(Precision.FP8, Precision.INT8))
    fp8 = sizing.evaluate(q, t4, Precision.FP8, 1)
    assert fp8.why_not == ("T4 (compute capability 7.5) cannot run fp8: vLLM needs bfloat16 or "
                           "fp8 support, from 8.0")
    assert sizing.evaluate(q, t4, Precision.INT8, 1).feasible


@pytest.mark.usefixtures("crafted")
def test_latency_at_the_rate_is_what_the_fleet_sees_below_flat_out() -> None:
    flat_out = search(_question(slo=Slo(tpot_ms=100)))[0]
    light = search(_question(slo=Slo(tpot_ms=100), request_rate=0.5))[0]
    assert light.instance.name == flat_out.instance.name and light.instances_needed == 1
    assert light.at_load is not None
    assert light.at_load.requests_s >= 0.5
    assert light.at_load.ttft_s < light.prediction.ttft_s
    assert light.at_load.tpot_s < light.prediction.tpot_s


def test_a_gemma_recommendation_never_asks_vllm_for_float16() -> None:
    """vLLM refuses float16 for Gemma-2 and 3: the tfvars said `--dtype float16`, and a T4,
    which has no bfloat16, was offered for them at int8 and int4."""
    q = Question(catalog.model("Gemma-2-9B"), 512, 256, precisions=(Precision.FP16,),
                 request_rate=2)
    ranked = search(q)
    best = ranked[0]
    assert best.feasible
    assert "--dtype bfloat16" in report.vllm_args(q, best)
    assert "float16" not in report.vllm_args(q, best).replace("bfloat16", "")
    t4 = next(i for i in instances().values() if i.gpu == "T4")
    refused = sizing.evaluate(replace(q, precisions=SEARCHED), t4, Precision.INT4, 1)
    assert "cannot run gemma2 models" in refused.why_not


def test_a_mixture_s_answer_says_the_planner_over_predicts_it() -> None:
    q = Question(catalog.model("Qwen3-30B-A3B"), 512, 256)
    assert "Caution: this is a mixture of experts" in report.recommendation(q, search(q))
    dense = Question(catalog.model("Qwen3-32B"), 512, 256)
    assert "Caution" not in report.recommendation(dense, search(dense))
