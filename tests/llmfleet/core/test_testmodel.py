"""The generated offline model is a real, loadable Llama checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmfleet.core.testmodel import MARKER, TinyLlamaSpec, ensure_test_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TinyLlamaSpec(vocab_size=512, hidden_size=128, intermediate_size=256, num_heads=2,
                         num_kv_heads=1)
    return ensure_test_model(tmp_path_factory.mktemp("m") / "tiny", spec)


def test_config_is_llama_with_wide_heads(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["head_dim"] == 64  # vLLM's CPU attention rejects narrower heads
    assert config["num_key_value_heads"] == 1


def test_tokenizer_round_trips_and_renders_chat(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    text = "Return a new list of the items."
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                       add_generation_prompt=True)
    assert rendered.startswith("<s><|user|>\nhi</s>") and rendered.endswith("<|assistant|>\n")
    assert tok.eos_token_id == 1


def test_second_call_reuses_a_complete_build(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    spec = TinyLlamaSpec(vocab_size=512, hidden_size=128, intermediate_size=256, num_heads=2,
                         num_kv_heads=1)
    ensure_test_model(model_dir, spec)
    assert weights.stat().st_mtime_ns == stamp
    assert (model_dir / MARKER).exists()
