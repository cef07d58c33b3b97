"""`make gpu-check` (`planner.gpu_check`) on a lent GPU; here its code runs on the CPU, tiny."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner import gpu_check


def _tiny_config(path: Path) -> Path:
    config = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
              "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 256, "max_position_embeddings": 2048}
    path.write_text(json.dumps(config))
    return path


def test_the_check_times_decode_and_prefill_beside_the_planners_prediction(
        tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.json"
    assert gpu_check.main(["--model", str(_tiny_config(tmp_path / "config.json")),
                           "--device", "cpu", "--gpu", "H100-80G", "--batches", "1,4",
                           "--context", "64", "--prompt", "16", "--max-prefill-tokens", "16",
                           "--repeats", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["gpu"] == "H100-80G" and result["layers"] == 2
    assert result["nvml"] == {"available": False}  # no GPU here: said, not an error
    assert [t["batch"] for t in result["decode"]] == [1, 4]
    assert [t["batch"] for t in result["prefill"]] == [1]  # 4 x 16 tokens is over the cap
    for timing in result["decode"] + result["prefill"]:
        assert timing["measured_ms"] > 0
        assert 0 < timing["roofline_ms"] <= timing["predicted_ms"]
        assert timing["reached"] > 0


def test_the_drivers_gpu_names_map_to_the_catalogues() -> None:
    assert gpu_check.catalog_gpu("NVIDIA H100 80GB HBM3") == "H100-80G"
    assert gpu_check.catalog_gpu("NVIDIA H200") == "H200"
    assert gpu_check.catalog_gpu("NVIDIA A10G") == "A10G"
    assert gpu_check.catalog_gpu("NVIDIA L40S") == "L40S"  # not L4
    assert gpu_check.catalog_gpu("NVIDIA B200") is None


def test_an_unknown_gpu_must_be_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a catalogued GPU"):
        gpu_check.main(["--model", str(_tiny_config(tmp_path / "config.json")),
                        "--device", "cpu", "--out", str(tmp_path / "x.json")])


def test_a_shape_it_does_not_build_is_refused(tmp_path: Path) -> None:
    """It builds dense Llama-shaped layers only: timing one for a mixture would set its
    figures beside a prediction for another network."""
    with pytest.raises(SystemExit, match="not a dense Llama-shaped decoder"):
        gpu_check.main(["--model", "Qwen3-30B-A3B", "--device", "cpu", "--gpu", "H100-80G",
                        "--out", str(tmp_path / "x.json")])
