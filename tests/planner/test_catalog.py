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
    with pytest.raises(CatalogError, match="unknown model 'gpt-5'; known: Llama-2-13B"):
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
                                           r"Mistral-7B-v0\.1; known: "):
        catalog.model("Mistral-8B")


def test_two_releases_of_one_family_and_size_must_be_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    older, newer = catalog.model("Mistral-7B-v0.1"), catalog.model("Llama-3-8B")
    monkeypatch.setattr(catalog, "_by_family_size", lambda: {"mistral-7b": [older, newer]})
    with pytest.raises(CatalogError, match=r"could be any of Llama-3-8B, Mistral-7B-v0\.1"):
        catalog.model("Mistral-7B-Instruct-v0.3")
