"""The memory model against hand calculations."""

from __future__ import annotations

import pytest

from planner import catalog
from planner.memory import GIB, Precision, Settings, budget, kv_bytes_per_token, weight_bytes


def test_a_7b_model_in_fp16_is_two_bytes_a_parameter() -> None:
    mistral = catalog.model("Mistral-7B-v0.1")  # 7,241,732,096 parameters
    assert weight_bytes(mistral, Precision.FP16) == 7_241_732_096 * 2  # 13.49 GiB
    assert weight_bytes(mistral, Precision.FP32) == 7_241_732_096 * 4


def test_quantised_weights_keep_embeddings_and_head_at_16_bits() -> None:
    llama = catalog.model("Llama-3.1-8B")
    embeddings_and_head = 2 * 128256 * 4096
    norms = (2 * 32 + 1) * 4096
    linear = llama.parameters - embeddings_and_head - norms  # 6,979,588,096
    assert weight_bytes(llama, Precision.INT8) == linear * 1 + (embeddings_and_head + norms) * 2
    # int4: half a byte a weight plus a 16-bit scale and zero point per 128 weights
    assert weight_bytes(llama, Precision.INT4) == pytest.approx(
        linear * (0.5 + 4 / 128) + (embeddings_and_head + norms) * 2)


def test_kv_cache_per_token_counts_only_the_kv_heads() -> None:
    # Llama-3-8B: 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 128 KiB
    assert kv_bytes_per_token(catalog.model("Llama-3.1-8B")) == 131_072
    # Llama-2-13B has no GQA: 2 x 40 x 40 x 128 x 2 = 800 KiB
    assert kv_bytes_per_token(catalog.model("Llama-2-13B")) == 819_200
    assert kv_bytes_per_token(catalog.model("Llama-3.1-8B"), Precision.FP8) == 65_536


def test_llama_8b_on_an_a100_80g_by_hand() -> None:
    llama, a100 = catalog.model("Llama-3.1-8B"), catalog.gpu("A100-80G")
    settings = Settings(max_num_batched_tokens=8192, max_num_seqs=256)
    plan = budget(llama, a100, Precision.BF16, settings=settings)
    usable = 80 * GIB * 0.9  # 72 GiB
    weights = 8_030_261_248 * 2  # 14.96 GiB
    activations = 8192 * (2 * 14336 + 4 * 4096) * 2 + 256 * 128256 * 4  # 0.81 GiB
    kv = usable - weights - activations - 1.5 * GIB  # 54.7 GiB: vLLM holds nothing back
    assert plan.kv_cache_total == pytest.approx(kv)
    assert plan.kv_tokens == int(kv // 131_072)  # about 448,000 tokens
    assert plan.max_sequences(2048) == int(kv // 131_072) // 2048  # 218 sequences of 2k
    assert plan.offload_fraction(100, 2048) == 0.0
    assert plan.offload_fraction(404, 2048) == pytest.approx(1 - kv / (404 * 2048 * 131_072))


def test_tensor_parallel_splits_the_weights_and_pools_the_kv_cache() -> None:
    llama70 = catalog.model("Llama-3.1-70B")
    h100 = catalog.gpu("H100-80G")
    alone = budget(llama70, h100, Precision.BF16)
    assert not alone.fits
    assert "weights 131.4 GiB" in alone.why_not()
    four = budget(llama70, h100, Precision.BF16, tensor_parallel=4)
    assert four.fits and four.why_not() == ""
    assert four.weights == pytest.approx(weight_bytes(llama70, Precision.BF16) / 4)
    # The KV cache grows more than 4x from two GPUs to four: the weights' share shrinks.
    two = budget(llama70, h100, Precision.FP8, tensor_parallel=2)
    four_fp8 = budget(llama70, h100, Precision.FP8, tensor_parallel=4)
    assert four_fp8.kv_tokens > 2 * two.kv_tokens


def test_more_memory_never_holds_fewer_sequences() -> None:
    # At the same batch limits: vLLM's defaults differ by GPU, and an H100's larger ones
    # reserve more activations (the next test).
    llama = catalog.model("Llama-3.1-8B")
    sizes = sorted(catalog.gpus().values(), key=lambda g: g.memory_bytes)
    same = Settings(max_num_seqs=256, max_num_batched_tokens=8192)
    held = [budget(llama, g, Precision.FP16, settings=same).max_sequences(1024) for g in sizes]
    assert held == sorted(held)


@pytest.mark.parametrize(("gpu", "offline", "limits"), [
    ("H100-80G", False, (1024, 8192)), ("H100-80G", True, (1024, 16384)),
    ("H200", False, (1024, 8192)),
    ("A100-80G", False, (256, 2048)),  # 80 GiB, but vLLM keeps an A100's defaults small
    ("L40S", False, (256, 2048)), ("A10G", True, (256, 8192)),
])
def test_batch_limits_left_unset_are_vllms_defaults_for_the_gpu(
        gpu: str, offline: bool, limits: tuple[int, int]) -> None:
    assert Settings(offline=offline).limits(catalog.gpu(gpu)) == limits
    assert Settings(max_num_seqs=64, offline=offline).limits(catalog.gpu(gpu))[0] == 64


def test_more_gpus_than_kv_heads_copy_the_heads_and_hold_fewer_tokens() -> None:
    qwen = catalog.model("Qwen3-235B-A22B")  # 4 KV heads
    h100 = catalog.gpu("H100-80G")
    four = budget(qwen, h100, Precision.FP8, tensor_parallel=4)
    eight = budget(qwen, h100, Precision.FP8, tensor_parallel=8)
    assert eight.kv_per_token == 2 * four.kv_per_token == 2 * kv_bytes_per_token(qwen)
    llama = catalog.model("Llama-3.1-70B")  # 8 KV heads: split across 8 GPUs, never copied
    assert budget(llama, h100, Precision.FP16, tensor_parallel=8).kv_per_token == \
        kv_bytes_per_token(llama)


def test_a_step_budget_below_the_sequences_is_raised_as_vllm_requires() -> None:
    l4 = catalog.gpu("L4")  # vLLM's default budget there: 2,048 tokens
    assert Settings(max_num_seqs=4096).limits(l4) == (4096, 4096)


def test_the_kv_cache_is_what_vllm_gives_within_a_few_per_cent() -> None:
    """vLLM 0.10.1.1 logged 464,848 tokens of KV cache for Qwen2-7B (Qwen2.5-7B's shape) on
    an A100 80GB at gpu_memory_utilization 0.5, its chunked prefill at 2,048 tokens:
    github.com/dennislee22/vLLM-benchmarking@608c86e log/vllm-7B-1gpuA10080GB-0.5GRAM.log.
    The planner's former 1.1 safety factor held back 12% more than vLLM does."""
    qwen, a100 = catalog.model("Qwen2.5-7B-Instruct"), catalog.gpu("A100-80G")
    plan = budget(qwen, a100, Precision.BF16, settings=Settings(gpu_memory_utilization=0.5))
    assert plan.kv_tokens == pytest.approx(464_848, rel=0.05)
    assert Settings().limits(a100) == (256, 2048)  # the budget that log reports
    reserved = budget(qwen, a100, Precision.BF16,
                      settings=Settings(gpu_memory_utilization=0.5, safety_factor=1.1))
    assert reserved.kv_tokens < 0.9 * 464_848
