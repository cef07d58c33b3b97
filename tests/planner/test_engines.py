"""Engine generations and the committed engine costs."""

from __future__ import annotations

import pytest

from planner import engines
from planner.timing import EngineCosts


@pytest.mark.parametrize(("engine", "generation"), [
    ("trtllm-nim", "trtllm"), ("trtllm-0.9", "trtllm"), ("vllm-0.4.3", "vllm-v0.4"),
    ("vllm-0.5", "vllm-v0.4"), ("vllm-0.6.3.post1", "vllm-v0.6"), ("vllm-0.7.1", "vllm-v0.6"),
    ("vllm-0.8.0", "vllm-v1"), ("vllm-0.11.0", "vllm-v1"),
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
