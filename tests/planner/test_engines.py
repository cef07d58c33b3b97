"""Engine generations and the committed engine costs."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner import engines
from planner.timing import EngineCosts


@pytest.mark.parametrize(("engine", "generation"), [
    ("trtllm-nim", "trtllm"), ("trtllm-0.9", "trtllm"), ("vllm-0.4.3", "vllm-v0.4"),
    ("vllm-0.5", "vllm-v0.4"), ("vllm-0.6.3.post1", "vllm-v0.6"), ("vllm-0.7.1", "vllm-v0.6"),
    ("vllm-0.8.0", "vllm-v1"), ("vllm-0.11.0", "vllm-v1"), ("vllm-0.4.3+happy_vllm", "vllm-v0.4"),
    ("vllm", "vllm-v1"),  # a version the source does not give: the current engine
])
def test_a_measurement_s_engine_is_read_as_its_generation(engine: str, generation: str) -> None:
    assert engines.generation(engine) == generation


def test_tensorrt_llm_is_the_zero_point_and_vllm_costs_are_fitted() -> None:
    assert engines.for_engine("trtllm-nim") == EngineCosts()
    table = engines.table()
    assert set(table) == {"trtllm", *engines.GENERATIONS}
    for name in engines.GENERATIONS:
        assert table[name].source.startswith("fitted to ")
    assert engines.serving() == table[engines.SERVING].costs


def test_only_a_server_in_the_engine_s_loop_costs_per_sequence() -> None:
    """The per-sequence cost fitted on happy_vllm's runs, charged to vLLM's own server,
    under-predicted 320 concurrent requests through it by 40-50%."""
    inside = engines.for_engine("vllm-0.4.3+happy_vllm")
    own = engines.for_engine("vllm-0.4.3")
    assert inside.per_sequence_s > 0 and own.per_sequence_s == 0
    assert (own.compute, own.step_s, own.attention) == \
        (inside.compute, inside.step_s, inside.attention)
    assert engines.serving().per_sequence_s == 0


def test_v0_attention_reads_the_kv_cache_slower_and_v1_as_tensorrt_llm() -> None:
    """vLLM V0's paged attention, fitted, reads the KV cache below the bandwidth the GPU
    factors (TensorRT-LLM's) give; V1's three fitting rows cannot tell its FlashAttention
    apart, so it stays at TensorRT-LLM's, and a cost per step fitted on them (18.75 ms on
    every step of every sizing answer) is not fitted."""
    assert engines.for_engine("vllm-0.4.3").attention < 0.9
    assert engines.serving().attention == 1.0 and engines.serving().step_s == 0
    assert engines.for_engine("trtllm-nim").attention == 1.0


def test_the_engine_table_reads_back_what_it_wrote(tmp_path: Path) -> None:
    rows = list(engines.table().values())
    path = tmp_path / "engines.csv"
    engines.write(rows, path)
    try:
        assert engines._parse(path.read_text()) == rows
    finally:
        engines.table.cache_clear()


def test_a_hand_edited_share_of_zero_is_refused_by_name() -> None:
    text = ("engine,compute,step_ms,per_sequence_ms,attention,source\n"
            "vllm-v1,0.7,0,0,0,by hand\n")
    with pytest.raises(ValueError, match="vllm-v1: compute and attention must be above 0"):
        engines._parse(text)
