"""The GPU and model catalogues, and models described by a config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner import catalog
from planner.catalog import CatalogError, count_parameters


def test_an_instruct_release_is_sized_as_its_base_model() -> None:
    # Regression: `llmfleet simulate --env prod` stopped at prod's model id, the Instruct one.
    assert catalog.model("meta-llama/Llama-3.1-8B-Instruct") is catalog.model("Llama-3.1-8B")
    assert catalog.model("Llama-2-7B-chat") is catalog.model("Llama-2-7B")
    with pytest.raises(CatalogError, match="unknown model"):
        catalog.model("meta-llama/Llama-9-8B-Instruct")


def test_names_match_without_case_and_by_hugging_face_id() -> None:
    assert catalog.gpu("a100-80g").name == "A100-80G"
    assert catalog.model("llama-3.1-8b") is catalog.model("meta-llama/Llama-3.1-8B")


def test_a10g_uses_the_memory_the_driver_gives() -> None:
    a10g = catalog.gpu("A10G")
    assert a10g.memory_bytes == 22888 * 2**20  # not the nominal 24 GiB
    assert a10g.bandwidth_bytes_s == 600e9
    assert catalog.gpu("H100-80G").memory_bytes == 80 * 2**30


@pytest.mark.parametrize("name", sorted({m.name for m in catalog.models().values()}))
def test_parameter_counts_follow_from_each_architecture(name: str) -> None:
    """The catalogue's counts were computed independently from each published config."""
    arch = catalog.model(name)
    assert count_parameters(arch) == arch.parameters


def test_a_config_json_describes_a_model(tmp_path: Path) -> None:
    published = catalog.model("Llama-3.1-8B")
    config = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096,
              "intermediate_size": 14336, "num_attention_heads": 32,
              "num_key_value_heads": 8, "vocab_size": 128256,
              "max_position_embeddings": 131072, "tie_word_embeddings": False}
    (tmp_path / "config.json").write_text(json.dumps(config))
    arch = catalog.model(str(tmp_path))  # the folder, as vLLM takes it
    assert arch.head_dim == 128  # hidden / heads when the config does not say
    assert arch.parameters == published.parameters


def test_unknown_names_list_what_is_known(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="unknown GPU 'B200'; known: T4, A10G"):
        catalog.gpu("B200")
    with pytest.raises(CatalogError, match="unknown model 'gpt-5'; known: Falcon-7B, Gemma-2-27B"):
        catalog.model("gpt-5")
    bad = tmp_path / "config.json"
    bad.write_text('{"hidden_size": 8}')
    with pytest.raises(CatalogError, match="lacks a field the planner needs"):
        catalog.model(str(bad))


def test_a_model_named_without_its_release_tags_is_found() -> None:
    """Regression (issue 21): `Mistral-7B` and `Qwen2.5-7B` were unknown while
    `Mistral-7B-v0.1` and `Qwen2.5-7B-Instruct` were catalogued."""
    assert catalog.model("Mistral-7B") is catalog.model("Mistral-7B-v0.1")
    assert catalog.model("Qwen2.5-7B") is catalog.model("Qwen2.5-7B-Instruct")
    assert catalog.model("mistralai/Mistral-7B-Instruct-v0.2") is catalog.model("Mistral-7B")
    assert catalog.model("meta-llama/Llama-2-7b-chat-hf") is catalog.model("Llama-2-7B")
    assert catalog.model("Meta-Llama-3-8B-Instruct") is catalog.model("Llama-3-8B")
    assert catalog.model("phi-3-mini-4k") is catalog.model("Phi-3-mini-4k-instruct")


@pytest.mark.parametrize(("name", "family_size"), [
    ("mistralai/Mistral-7B-Instruct-v0.2", "mistral-7b"), ("google/gemma-2-9b-it", "gemma-2-9b"),
    ("meta-llama/Llama-2-7b-chat-hf", "llama-2-7b"), ("Qwen/Qwen2.5-1.5B", "qwen2.5-1.5b"),
    ("Llama-3.1-8B", "llama-3.1-8b"), ("facebook/opt-2.7b", "opt-2.7b")])
def test_a_name_reduces_to_its_family_and_size(name: str, family_size: str) -> None:
    assert catalog.family_size(name) == family_size


def test_an_unknown_model_s_error_names_the_closest_known_ones() -> None:
    with pytest.raises(CatalogError, match=r"unknown model 'Llama-3.1-80B'; closest: "
                                           r"Llama-3\.1-8B, Llama-3\.1-70B"):
        catalog.model("Llama-3.1-80B")
    with pytest.raises(CatalogError, match=r"unknown model 'Mistral-8B'; closest: "
                                           r"Mistral-7B-v0\.1, Mixtral-8x7B-v0\.1; known: "):
        catalog.model("Mistral-8B")


def test_two_releases_of_one_family_and_size_must_be_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    older, newer = catalog.model("Mistral-7B-v0.1"), catalog.model("Llama-3-8B")
    monkeypatch.setattr(catalog, "_by_family_size", lambda: {"mistral-7b": [older, newer]})
    with pytest.raises(CatalogError, match=r"could be any of Llama-3-8B, Mistral-7B-v0\.1"):
        catalog.model("Mistral-7B-Instruct-v0.3")


# Counts published for each checkpoint (keras-hub's presets, a checkpoint's index), each
# cited in the catalogue's row: the shape's arithmetic must reach them to the unit.
PUBLISHED = {
    "Falcon-7B": 6_921_720_704,  # multi-query, parallel attention, plain MLP, LayerNorm
    "Mixtral-8x7B-v0.1": 46_702_792_704,  # 8 experts and a router a layer
    "Qwen3-30B-A3B": 30_532_122_624,  # 128 experts, q/k norms
    "Qwen3-0.6B": 596_049_920,  # head_dim above hidden / heads
    "Gemma-2-2B": 2_614_341_888,  # four norms a layer, head_dim 256
    "Gemma-3-1B": 999_885_952,  # and q/k norms
    "Qwen2.5-0.5B-Instruct": 494_032_768,  # q/k/v biases, tied
    "Mistral-Small-24B-Base-2501": 23_572_403_200,
}


@pytest.mark.parametrize(("name", "published"), PUBLISHED.items())
def test_each_family_s_layout_reaches_its_published_count(name: str, published: int) -> None:
    arch = catalog.model(name)
    assert count_parameters(arch) == published


def test_a_mixture_of_experts_runs_only_its_chosen_experts() -> None:
    mixtral = catalog.model("Mixtral-8x7B-v0.1")
    assert mixtral.active_parameters == 12_879_925_248  # 2 of 8 experts: "12.9B active"
    assert mixtral.mlp_width == 2 * 14336
    assert 3.0e9 < catalog.model("Qwen3-30B-A3B").active_parameters < 3.5e9  # "A3B"
    assert 21.5e9 < catalog.model("Qwen3-235B-A22B").active_parameters < 22.5e9  # "A22B"
    dense = catalog.model("Llama-3.1-8B")
    assert dense.active_parameters == dense.parameters and dense.mlp_width == 14336


def test_configs_of_each_new_family_are_read_as_the_catalogue_has_them(tmp_path: Path) -> None:
    configs = {
        "Mixtral-8x7B-v0.1": {"model_type": "mixtral", "num_hidden_layers": 32,
                              "hidden_size": 4096, "intermediate_size": 14336,
                              "num_attention_heads": 32, "num_key_value_heads": 8,
                              "num_local_experts": 8, "num_experts_per_tok": 2,
                              "vocab_size": 32000, "max_position_embeddings": 32768,
                              "tie_word_embeddings": False, "sliding_window": None},
        "Qwen3-30B-A3B": {"model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048,
                          "intermediate_size": 6144, "moe_intermediate_size": 768,
                          "num_experts": 128, "num_experts_per_tok": 8,
                          "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                          "vocab_size": 151936, "max_position_embeddings": 40960,
                          "tie_word_embeddings": False, "use_sliding_window": False},
        # The original RWForCausalLM keys; the embeddings tied by default.
        "Falcon-7B": {"model_type": "falcon", "n_layer": 32, "hidden_size": 4544, "n_head": 71,
                      "multi_query": True, "parallel_attn": True, "bias": False,
                      "vocab_size": 65024},
        "Gemma-2-9B": {"model_type": "gemma2", "num_hidden_layers": 42, "hidden_size": 3584,
                       "intermediate_size": 14336, "num_attention_heads": 16,
                       "num_key_value_heads": 8, "head_dim": 256, "vocab_size": 256000,
                       "max_position_embeddings": 8192, "sliding_window": 4096},
        # A multimodal config: the text decoder's fields in text_config, the rest defaults.
        "Gemma-3-1B": {"model_type": "gemma3", "text_config": {
            "model_type": "gemma3_text", "num_hidden_layers": 26, "hidden_size": 1152,
            "intermediate_size": 6912, "num_attention_heads": 4, "num_key_value_heads": 1,
            "head_dim": 256, "vocab_size": 262144, "max_position_embeddings": 32768,
            "sliding_window": 512, "sliding_window_pattern": 6}},
    }
    for name, config in configs.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        read, known = catalog.model(str(path)), catalog.model(name)
        assert read.parameters == known.parameters, name
        assert (read.num_experts, read.experts_per_token, read.sliding_window,
                read.sliding_layers, read.num_key_value_heads, read.family) == (
            known.num_experts, known.experts_per_token, known.sliding_window,
            known.sliding_layers, known.num_key_value_heads, known.family), name


def test_layer_types_say_which_layers_slide(tmp_path: Path) -> None:
    config = {"model_type": "mistral", "num_hidden_layers": 4, "hidden_size": 64,
              "intermediate_size": 128, "num_attention_heads": 4, "vocab_size": 100,
              "sliding_window": 16, "layer_types": ["sliding_attention", "full_attention",
                                                    "sliding_attention", "full_attention"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    arch = catalog.model(str(tmp_path))
    assert (arch.sliding_window, arch.sliding_layers) == (16, 2)
    del config["layer_types"]  # a Llama-like model's window vLLM does not apply
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert catalog.model(str(tmp_path)).sliding_layers == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"num_attention_heads": 0}, "lacks a field|must be positive"),
    ({"hidden_size": -8}, "hidden_size, head_dim must be positive"),
    ({"num_local_experts": 8}, "num_experts_per_tok must be between 1 and the 8 experts, not 0"),
    ({"num_local_experts": 8, "num_experts_per_tok": 9}, "between 1 and the 8 experts, not 9"),
    ({"kv_lora_rank": 512, "n_routed_experts": 256}, "does not model"),  # DeepSeek's layout
    ({"shared_expert_intermediate_size": 5632}, "does not model"),  # Qwen2-MoE's shared expert
])
def test_a_config_json_the_planner_would_mis_size_is_refused_with_the_reason(
        tmp_path: Path, change: dict[str, object], message: str) -> None:
    """A zero head count raised ZeroDivisionError (a traceback); a mixture without its experts
    per token, or a layout the planner does not model, was sized as nonsense without a word."""
    config = {"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 64,
              "intermediate_size": 128, "num_attention_heads": 4, "vocab_size": 100, **change}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CatalogError, match=message):
        catalog.model(str(tmp_path))
