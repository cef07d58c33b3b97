"""The engine probe: which steps it measures, and what their times say."""

from __future__ import annotations

import asyncio

import pytest

from llmfleet.core.wire.profile import EngineLimits
from loadtest.probe import ProbePlan, engine_limits, probe, published_kv_tokens, samples_of
from loadtest.sweep import EndpointError, Target
from tests.helpers.fake_upstream import FakeControl, Mode

LIMITS = EngineLimits(max_num_seqs=16, max_num_batched_tokens=512, kv_tokens=4096,
                      max_model_len=1024)


def test_prefills_are_capped_by_the_step_budget_and_the_context() -> None:
    plan = ProbePlan(prefill_lengths=(16, 256, 2048))
    assert plan.prefills(LIMITS) == [16, 256, 512]
    short = LIMITS.model_copy(update={"max_model_len": 100})
    assert plan.prefills(short) == [16, 99]


def test_bursts_fit_the_batch_the_budget_and_the_cache() -> None:
    plan = ProbePlan(batches=(1, 4, 16, 32), contexts=(16, 1024), long_output=40)
    bursts = plan.bursts(LIMITS)
    assert (32, 16) not in bursts  # more than max_num_seqs
    assert (4, 128) in bursts  # 1,024-token prompts cut to the budget shared by four
    assert (16, 32) in bursts
    for count, prompt in bursts:
        assert count * prompt <= LIMITS.max_num_batched_tokens
    # Each sequence holds its prompt and output in whole 16-token blocks: 16 + 40 tokens
    # take four blocks, so four sequences need 256 tokens of cache.
    assert max(c for c, _ in plan.bursts(LIMITS.model_copy(update={"kv_tokens": 256}))) == 4
    assert max(c for c, _ in plan.bursts(LIMITS.model_copy(update={"kv_tokens": 255}))) == 1


def test_the_plan_size_counts_every_request_it_sends() -> None:
    plan = ProbePlan(prefill_lengths=(16, 64), batches=(1, 2), contexts=(16,), repeats=2,
                     warmup=3)
    assert plan.size(LIMITS) == 3 + 2 * (2 + 2 * (1 + 2))


def test_a_burst_step_is_the_difference_of_its_two_lengths_per_extra_token() -> None:
    plan = ProbePlan(short_output=8, long_output=40, batches=(4,), contexts=(16,))
    found = samples_of(plan, LIMITS, {16: [0.05, 0.01, 0.02]},
                       {(4, 16, 8): [0.3, 0.1, 0.1, 0.1], (4, 16, 40): [0.42, 0.42, 0.9, 0.42]})
    prefill, decode = found
    assert prefill.seconds == pytest.approx(0.02) and prefill.prefill_tokens == 16
    assert decode.decode_seqs == 4
    assert decode.seconds == pytest.approx((0.42 - 0.1) / 32)  # medians, not means
    assert decode.decode_context == pytest.approx(16 + 24)


def test_a_burst_that_took_no_longer_for_more_tokens_is_refused() -> None:
    plan = ProbePlan(batches=(1,), contexts=(16,))
    with pytest.raises(EndpointError, match="no longer"):
        samples_of(plan, LIMITS, {}, {(1, 16, 8): [0.2], (1, 16, 72): [0.2]})


VLLM_METRICS = """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",num_gpu_blocks="2048"} 1.0
"""


def test_the_kv_cache_size_is_read_from_vllms_cache_config_info() -> None:
    assert published_kv_tokens(VLLM_METRICS) == 16 * 2048
    assert published_kv_tokens("Not Found") is None
    assert published_kv_tokens("# TYPE x gauge\nx 1\n") is None


def test_limits_come_from_the_endpoint_unless_given(fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    control.models_body = {"data": [{"id": "fake-model", "max_model_len": 777}]}
    limits = asyncio.run(engine_limits(Target(url), 8, 256, kv_tokens=1000))
    assert limits == EngineLimits(max_num_seqs=8, max_num_batched_tokens=256,
                                  kv_tokens=1000, max_model_len=777)
    with pytest.raises(EndpointError, match="--kv-tokens"):  # the fake has no /metrics
        asyncio.run(engine_limits(Target(url), 8, 256))


def test_probing_a_paced_engine_measures_its_pace(fake: tuple[FakeControl, str]) -> None:
    # The fake sends an event every 50 ms: a one-token answer is three (the token, the
    # usage, [DONE]), and each extra token of a burst one more, however many requests
    # the burst holds.
    control, url = fake
    control.chunk_delay_s = 0.05
    plan = ProbePlan(prefill_lengths=(16, 64), batches=(1, 4), contexts=(16,),
                     short_output=2, long_output=12, repeats=1, warmup=1)
    found = asyncio.run(probe(Target(url), "fake-model", LIMITS, plan))
    assert [s.source for s in found] == ["prefill 16", "prefill 64", "decode 1x16",
                                         "decode 4x16"]
    for sample in found:
        pace = 0.15 if sample.prefill_tokens else 0.05
        assert 0.6 * pace < sample.seconds < 2 * pace, sample.source  # not 10 paces, nor 0.1
    assert control.requests == 1 + 2 + 2 * (1 + 4)


def test_a_failing_probe_request_stops_the_probe_with_what_failed(
        fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    control.mode, control.status = Mode.STATUS, 503
    plan = ProbePlan(prefill_lengths=(16,), batches=(1,), contexts=(16,), warmup=0)
    with pytest.raises(EndpointError, match=r"16 prompt tokens.*503"):
        asyncio.run(probe(Target(url), "fake-model", LIMITS, plan))


def test_a_failing_burst_cancels_its_other_requests_and_says_what_failed(
        fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    control.mode, control.status = Mode.STATUS, 500
    plan = ProbePlan(prefill_lengths=(), batches=(4,), contexts=(16,), warmup=0)
    with pytest.raises(EndpointError, match=r"16 prompt tokens.*500"):
        asyncio.run(probe(Target(url), "fake-model", LIMITS, plan))
