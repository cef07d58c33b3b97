"""The timing model: hand calculations, monotonicity, queueing, offload and explanations."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest

from planner import catalog
from planner.memory import Precision, Settings
from planner.timing import (
    Deployment,
    Efficiency,
    EngineCosts,
    Workload,
    allreduce_s,
    decode_step_s,
    predict,
    predict_static,
    prefill_s,
    streamed_weight_bytes,
)

IDEAL = Efficiency(prefill_mfu=1.0, decode_mfu=1.0, bandwidth=1.0, step_overhead_s=0.0)


def _dep(model: str = "Llama-3.1-8B", gpu: str = "A100-80G", precision: str = "fp16",
         tp: int = 1) -> Deployment:
    return Deployment(catalog.model(model), catalog.gpu(gpu), Precision(precision), tp)


def test_one_sequence_decodes_at_the_speed_the_weights_stream() -> None:
    # Llama-3-8B fp16: every weight but the embedding table, 2 bytes each, read per token.
    streamed = (8_030_261_248 - 128_256 * 4_096) * 2  # 14.98 GB
    step, bound = decode_step_s(_dep(), IDEAL, batch=1, context=1)
    assert bound == "memory"
    kv = 131_072  # one token of KV cache
    arithmetic = 2 * (streamed / 2) / 312e12  # 0.05 ms, overlapped with the 7.35 ms of reading
    assert step == pytest.approx(math.hypot(arithmetic, streamed / 2.039e12) + kv / 2.039e12)


def test_a_long_prompt_is_bound_by_arithmetic() -> None:
    # 2 FLOPs per matmul weight per token, plus causal attention 2 * layers * 4096 * n^2.
    n = 4096
    flops = 2 * (8_030_261_248 - 128_256 * 4_096) * n + 2 * 32 * 4096 * n**2
    # In two chunks of 2,048 tokens (vLLM's default on an A100), each reading the weights.
    weights = 2 * (8_030_261_248 - 128_256 * 4_096) * 2 / 2.039e12  # 15 ms: barely shows
    assert prefill_s(_dep(), IDEAL, n) == pytest.approx(math.hypot(flops / 312e12, weights))


@pytest.mark.parametrize("work", [Workload(128, 128, 1), Workload(2048, 256, 32),
                                  Workload(512, 1024, 200), Workload(7000, 1000, 64)])
def test_more_bandwidth_is_never_slower(work: Workload) -> None:
    dep = _dep()
    faster = replace(dep, gpu=replace(dep.gpu, bandwidth_bytes_s=dep.gpu.bandwidth_bytes_s * 2))
    slow, fast = predict(dep, work, Efficiency()), predict(faster, work, Efficiency())
    assert fast.tpot_s <= slow.tpot_s
    assert fast.ttft_s <= slow.ttft_s
    assert fast.output_tok_s >= slow.output_tok_s


def test_total_throughput_rises_with_concurrency_until_memory_runs_out() -> None:
    dep = _dep("Llama-2-13B", "L40S")  # no GQA: a KV cache that runs out early
    fits = predict(dep, Workload(1024, 512, 1), Efficiency()).max_concurrency_fits
    assert 4 < fits < 100
    levels = [predict(dep, Workload(1024, 512, c), Efficiency()) for c in range(1, fits + 1)]
    rates = [p.total_tok_s for p in levels]
    assert rates == sorted(rates)
    beyond = predict(dep, Workload(1024, 512, fits * 3), Efficiency())
    assert beyond.running == fits  # the rest wait, as in vLLM ...
    assert beyond.total_tok_s == pytest.approx(rates[-1])  # ... so no more throughput
    assert beyond.ttft_s > 2 * levels[-1].ttft_s  # ... and the wait shows in TTFT
    assert beyond.kv_offload_fraction == pytest.approx(2 / 3, abs=0.02)


def test_offloading_runs_everyone_at_once_and_pays_for_pcie() -> None:
    dep = _dep("Llama-2-13B", "L40S")
    work = Workload(1024, 512, 60)
    queued = predict(dep, work, Efficiency())
    spilled = predict(dep, work, Efficiency(), offload=True)
    assert spilled.running == 60 > queued.running
    assert 0 < spilled.kv_offload_fraction < 1
    kv_in_host = spilled.kv_offload_fraction * 60 * (1024 + 256) * 819_200
    no_pcie, _ = decode_step_s(dep, Efficiency(), 60, 1024 + 256)
    assert spilled.decode_step_s > no_pcie
    assert spilled.decode_step_s >= kv_in_host / 32e9  # every step reads it over PCIe Gen4 x16


def test_tensor_parallelism_adds_all_reduces_and_splits_the_weights() -> None:
    one, two = _dep(), _dep(tp=2)
    assert allreduce_s(one, Efficiency(), 64) == 0
    assert allreduce_s(two, Efficiency(), 64) > 0
    single = predict(one, Workload(512, 256, 1), Efficiency())
    split = predict(two, Workload(512, 256, 1), Efficiency())
    assert split.tpot_s < single.tpot_s  # half the weights per GPU
    assert split.tpot_s > single.tpot_s / 2  # but not twice as fast


def test_a_static_batch_of_one_matches_serving_one_request() -> None:
    work = Workload(512, 128, 1)
    served, batch = predict(_dep(), work, Efficiency()), predict_static(_dep(), work, Efficiency())
    assert served.tpot_s == pytest.approx(batch.tpot_s)
    assert served.e2e_s == pytest.approx(batch.e2e_s, rel=0.02)


def test_what_cannot_run_says_why() -> None:
    seventy = predict(_dep("Llama-3.1-70B", "A10G"), Workload(128, 128, 1), Efficiency())
    assert not seventy.feasible
    assert "weights 131.4 GiB" in seventy.why_not
    assert "exceed the 20.1 GiB usable" in seventy.why_not
    long = predict(_dep("Llama-2-7B"), Workload(4000, 500, 1), Efficiency())
    assert long.why_not == "4500 tokens per sequence exceed the model's context of 4096"
    crowded = predict(_dep("Llama-3.1-8B", "T4", "int4"), Workload(100_000, 20_000, 1),
                      Efficiency())
    assert re.fullmatch(r"one sequence of 120000 tokens needs 14\.65 GiB of KV cache; "
                        r"[0-9.]+ GiB is left for it", crowded.why_not)


def test_one_sequence_of_a_mixture_reads_only_its_two_experts() -> None:
    # Mixtral-8x7B fp16 at batch 1: 2 of 8 experts a layer, so the weights one token reads
    # are its active parameters less the embedding table: 12.88 B less 0.13 B, 2 bytes each.
    dep = _dep("Mixtral-8x7B-v0.1", "H100-80G")
    active = 12_879_925_248 - 32_000 * 4_096
    assert streamed_weight_bytes(dep, 1) == pytest.approx(active * 2)
    step, bound = decode_step_s(dep, IDEAL, batch=1, context=1)
    assert bound == "memory"
    kv = 131_072
    reading = active * 2 / 3.35e12  # 7.6 ms, not the 27 ms of all the experts
    assert step == pytest.approx(math.hypot(2 * active / 989.5e12, reading) + kv / 3.35e12)
    # A large batch reaches every expert: the step reads (nearly) every weight.
    assert streamed_weight_bytes(dep, 256) == pytest.approx(streamed_weight_bytes(dep), rel=1e-6)
    assert streamed_weight_bytes(dep, 4) < streamed_weight_bytes(dep, 16) < \
        streamed_weight_bytes(dep)


def test_a_mixtures_arithmetic_counts_only_the_chosen_experts() -> None:
    dep = _dep("Mixtral-8x7B-v0.1", "H100-80G")
    prompt = 8192  # one chunk: bound by arithmetic
    flops = 2 * (12_879_925_248 - 32_000 * 4_096) * prompt + 4 * 32 * 4096 * prompt**2 / 2
    weights = streamed_weight_bytes(dep) / 3.35e12  # a chunk this size reaches every expert
    assert prefill_s(dep, IDEAL, prompt) == pytest.approx(math.hypot(flops / 989.5e12, weights))


def test_sliding_window_layers_keep_and_read_only_their_window() -> None:
    # Gemma-2-9B: 21 of 42 layers attend to the last 4096 tokens only.
    dep = _dep("Gemma-2-9B", "H100-80G")
    mem = dep.memory()
    assert mem.sequence_bytes(8192) == pytest.approx(mem.kv_per_token * (4096 + 2048))
    assert mem.sequence_bytes(1024) == pytest.approx(mem.kv_per_token * 1024)
    assert mem.max_sequences(8192) == int(mem.kv_cache_total // (mem.kv_per_token * 6144))
    short, _ = decode_step_s(dep, IDEAL, batch=64, context=4096)
    long, _ = decode_step_s(dep, IDEAL, batch=64, context=8192)
    per_token = mem.kv_per_token * 64 / 3.35e12
    assert long - short == pytest.approx(per_token * 2048)  # half the layers read the rest


def test_an_h100_runs_as_many_sequences_as_vllm_lets_it_not_256() -> None:
    """Maximum throughput on an H100 was under-predicted: the model capped every GPU at
    256 running sequences, where vLLM runs up to 1,024 there."""
    h100 = _dep("Llama-3.1-8B", "H100-80G")
    offline = replace(h100, settings=replace(h100.settings, offline=True))
    work = Workload(input_len=128, output_len=128, concurrency=1000)
    p = predict(offline, work, Efficiency())
    assert p.running == 1000
    capped = predict(replace(offline, settings=replace(offline.settings, max_num_seqs=256)),
                     work, Efficiency())
    assert capped.running == 256 and p.output_tok_s > 1.1 * capped.output_tok_s
    a100 = predict(_dep("Llama-3.1-8B", "A100-80G"), work, Efficiency())
    assert a100.running == 256  # vLLM keeps an A100 at 256


def test_clients_in_step_wait_for_the_prompts_ahead_of_them_in_their_wave() -> None:
    """Benchmarks start their clients together with fixed lengths, and the clients stay in
    step: each request waits for the prompts of its wave before it, where traffic arriving
    staggered waits for about one prefill. Without chunking, a step prefills as many prompts
    as its token budget holds and all of them have their first token when it ends."""
    serial = replace(_dep(), settings=Settings(chunked_prefill=False))
    dep, work = serial, Workload(1024, 128, 32)
    staggered = predict(dep, work, Efficiency())
    waves = predict(dep, replace(work, waves=True), Efficiency())
    assert waves.output_tok_s == pytest.approx(staggered.output_tok_s)  # the same cycle
    assert waves.running == 32
    per_step = dep.max_num_batched_tokens // 1024
    assert per_step < 32
    steps_to_the_median = math.ceil(33 / 2 / per_step)
    assert waves.ttft_s == pytest.approx(steps_to_the_median * per_step * waves.prefill_s)
    assert waves.ttft_s > 10 * staggered.ttft_s
    assert waves.e2e_s == pytest.approx(waves.ttft_s + 127 * waves.tpot_s)


def test_an_engine_s_slower_attention_costs_long_contexts_more() -> None:
    """Attention reads each sequence's KV cache; an engine reading it at half the bandwidth
    adds a step's KV time once more: far more at 8,000 tokens of context than at 100."""
    dep = _dep()
    half = replace(dep, engine=EngineCosts(attention=0.5))
    for context, low, high in ((100, 1.0, 1.05), (8000, 1.3, 2.0)):
        base = decode_step_s(dep, Efficiency(), 32, context)[0]
        slow = decode_step_s(half, Efficiency(), 32, context)[0]
        assert low <= slow / base <= high, context


def test_a_chunked_wave_s_latencies_add_up_to_its_requests() -> None:
    """Regression: with chunked prefill, a wave's first token held back by the prompts ahead
    of it raised TTFT while TPOT and the end-to-end time stayed, so TTFT + (n-1) TPOT
    overshot the end-to-end time by up to 48%; and once they were made to add up, TPOT
    could come out faster than a decode-only step (0.59x on a 256-token budget)."""
    for model, gpu in (("Qwen2.5-0.5B-Instruct", "L40S"), ("Llama-3.1-8B", "A100-80G")):
        for budget, chunked in ((256, True), (512, True), (8192, True), (8192, False)):
            dep = replace(_dep(model, gpu), settings=Settings(max_num_batched_tokens=budget,
                                                              chunked_prefill=chunked))
            for prompt, out, clients in ((256, 128, 32), (4000, 512, 256), (48, 16, 38),
                                         (1000, 2, 8)):
                for waves in (True, False):
                    p = predict(dep, Workload(prompt, out, clients, waves=waves), Efficiency())
                    assert p.ttft_s + (out - 1) * p.tpot_s == pytest.approx(p.e2e_s)
                    assert p.tpot_s >= p.decode_step_s * (1 - 1e-9)
                    assert p.ttft_s >= p.prefill_s * (1 - 1e-9)


def test_an_engine_s_costs_add_to_every_step() -> None:
    dep = _dep()
    bare, _ = decode_step_s(dep, IDEAL, batch=64, context=512)
    costly = replace(dep, engine=EngineCosts(step_s=0.001, per_sequence_s=0.0001))
    step, _ = decode_step_s(costly, IDEAL, batch=64, context=512)
    assert step == pytest.approx(bare + 0.001 + 64 * 0.0001)
    slower = replace(dep, engine=EngineCosts(compute=0.5))
    assert prefill_s(slower, IDEAL, 4096) > 1.9 * prefill_s(dep, IDEAL, 4096)  # bound by FLOPs


def test_with_chunked_prefill_decodes_ride_on_the_prompt_steps() -> None:
    """vLLM's V1 engine computes prompts in the budget its decodes leave: a prompt step also
    decodes the other sequences, which then need no step of their own, so prompt-heavy work
    serves more than with prefill in steps apart."""
    chunked = _dep()
    serial = replace(chunked, settings=Settings(chunked_prefill=False))
    work = Workload(1000, 200, 64)
    fast, slow = predict(chunked, work, Efficiency()), predict(serial, work, Efficiency())
    # 33 prompt steps carry decodes the serial engine reads the weights again for.
    assert fast.output_tok_s > 1.01 * slow.output_tok_s and fast.e2e_s < slow.e2e_s
    alone = Workload(512, 128, 1)  # nothing to ride on: one prompt step, then its decodes
    assert predict(chunked, alone, Efficiency()).e2e_s == pytest.approx(
        predict(serial, alone, Efficiency()).e2e_s, rel=0.02)
