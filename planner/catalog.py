"""The GPUs and model architectures the planner knows, each row with its source.

Kept in `planner/data/gpus.csv` and `planner/data/models.csv` (refresh them from
their sources, not by hand). Names match without regard to case, and a model
may also be named by its Hugging Face id or described by a local `config.json`.
AWS instances and their prices live in `llmfleet.core.instances`, shared with the agent.
"""

from __future__ import annotations

import csv
import difflib
import json
import re
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

GIB = 1024**3
# Families vLLM serves in bfloat16 only (`--dtype float16` refused).
BF16_ONLY = ("gemma2", "gemma3")
MIB = 1024**2


class CatalogError(LookupError):
    """An unknown GPU or model, or a config.json the planner cannot read."""


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: float  # what the driver lets a process use where known, else the nominal size
    bandwidth_bytes_s: float
    fp16_flops: float
    int8_ops: float | None
    fp8_flops: float | None
    tdp_w: float
    pcie_bytes_s: float  # host link, one direction: where offloaded KV cache travels
    peer_bytes_s: float  # GPU to GPU, one direction: NVLink where there is one, else PCIe
    source: str
    compute_capability: float = 8.0

    def cannot_run(self, precision: str, family: str = "llama") -> str:
        """Why vLLM cannot serve weights of `precision` of a model `family` here; empty when
        it can.

        fp8 and bf16 need Ampere (8.0) or later: fp8 as weights dequantised by the Marlin
        kernels there, with fp8 arithmetic from 8.9 (Ada, Hopper); Turing has neither. Gemma-2
        and 3 run only in bfloat16 (vLLM refuses float16 for them: numerical instability),
        whatever their weights are quantised to, so never on Turing.
        """
        needs_bf16 = precision in ("fp8", "bf16") or family in BF16_ONLY
        if needs_bf16 and self.compute_capability < 8.0:
            what = f"{family} models" if family in BF16_ONLY else precision
            return (f"{self.name} (compute capability {self.compute_capability:g}) cannot "
                    f"run {what}: vLLM needs bfloat16 or fp8 support, from 8.0")
        return ""

    def peak_flops(self, precision: str) -> float:
        """Dense tensor throughput for the matrix multiplies of a model at `precision`.

        fp8 and int8 checkpoints run their GEMMs at that precision where the GPU has the
        units (W8A8); elsewhere they and int4 dequantise to 16 bits and run at fp16 rate.
        fp32 models run on TF32 units at half the fp16 rate.
        """
        special = {"fp8": self.fp8_flops, "int8": self.int8_ops,
                   "fp32": self.fp16_flops / 2}.get(precision)
        return special or self.fp16_flops


@dataclass(frozen=True)
class ModelArch:
    name: str
    num_layers: int
    hidden_size: int
    intermediate_size: int  # a mixture of experts: one expert's
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    parameters: int  # all of them, every expert included
    family: str = "llama"  # a key of LAYOUTS, or "opt"
    hf_id: str = ""
    source: str = ""
    num_experts: int = 0  # 0: a dense MLP
    experts_per_token: int = 0
    sliding_window: int = 0  # tokens a sliding-window layer attends to and keeps
    sliding_layers: int = 0  # layers that use it; the others attend to everything

    @property
    def expert_parameters(self) -> int:
        """One expert's MLP across all layers (0 for a dense model)."""
        if not self.num_experts:
            return 0
        return self.num_layers * LAYOUTS[self.family].mlp_matrices * self.hidden_size \
            * self.intermediate_size

    @property
    def active_parameters(self) -> int:
        """Parameters each token runs through: all of a dense model's, only the chosen
        experts of a mixture's (the router included)."""
        idle = self.num_experts - self.experts_per_token
        return self.parameters - idle * self.expert_parameters

    @property
    def mlp_width(self) -> int:
        """The MLP's intermediate width a token runs through (every chosen expert's)."""
        return self.intermediate_size * max(self.experts_per_token, 1)


@dataclass(frozen=True)
class Layout:
    """What a family's decoder layer holds besides attention's four projections."""

    mlp_matrices: int = 3  # gated MLP (gate, up, down); 2 for a plain one (up, down)
    norms: int = 2  # vectors of `hidden_size` per layer: RMSNorm weights, LayerNorm's w and b
    qkv_bias: bool = False
    qk_norm: bool = False  # RMSNorm over each head's query and key (a head_dim vector each)
    final_norm: int = 1
    parallel: bool = False  # attention and MLP read the same normed input (Falcon)


LAYOUTS = {
    "llama": Layout(),  # Llama, Mistral, Mixtral, Phi-3/3.5/4
    "qwen2": Layout(qkv_bias=True),
    "qwen3": Layout(qk_norm=True),  # dense and MoE
    "gemma2": Layout(norms=4),  # pre and post norms around attention and the MLP
    "gemma3": Layout(norms=4, qk_norm=True),
    "falcon": Layout(mlp_matrices=2, norms=2, final_norm=2),  # one LayerNorm, weight and bias
    "opt": Layout(mlp_matrices=2),  # counted apart: biases everywhere, learned positions
}
# The first word of a catalogue row's `architecture`, or a config.json's `model_type`.
FAMILIES = {"llama": "llama", "mistral": "llama", "mixtral": "llama", "phi3": "llama",
            "qwen2": "qwen2", "qwen3": "qwen3", "qwen3_moe": "qwen3", "gemma2": "gemma2",
            "gemma3": "gemma3", "gemma3_text": "gemma3", "falcon": "falcon", "opt": "opt"}


def _optional(text: str, scale: float) -> float | None:
    return float(text) * scale if text.strip() else None


@cache
def gpus() -> dict[str, Gpu]:
    text = resources.files("planner").joinpath("data/gpus.csv").read_text()
    table = {}
    for row in csv.DictReader(text.splitlines()):
        usable = _optional(row["usable_memory_mib"], MIB)
        table[row["gpu"].lower()] = Gpu(
            name=row["gpu"], memory_bytes=usable or float(row["memory_gib"]) * GIB,
            bandwidth_bytes_s=float(row["bandwidth_gb_s"]) * 1e9,
            fp16_flops=float(row["fp16_tflops"]) * 1e12,
            int8_ops=_optional(row["int8_tops"], 1e12),
            fp8_flops=_optional(row["fp8_tflops"], 1e12),
            tdp_w=float(row["tdp_w"]), pcie_bytes_s=float(row["pcie_gb_s"]) * 1e9,
            peer_bytes_s=float(row["peer_gb_s"]) * 1e9, source=row["source"],
            compute_capability=float(row["compute_capability"]))
    return table


@cache
def models() -> dict[str, ModelArch]:
    text = resources.files("planner").joinpath("data/models.csv").read_text()
    table = {}
    for row in csv.DictReader(text.splitlines()):
        arch = ModelArch(
            name=row["model"], hf_id=row["hf_id"], source=row["source"],
            family=_family(row["architecture"].split()[0]),
            tie_word_embeddings=row["tie_word_embeddings"] == "True",
            **{k: int(row[k]) for k in (
                "num_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings",
                "parameters", "num_experts", "experts_per_token", "sliding_window",
                "sliding_layers")})
        table[arch.name.lower()] = table[arch.hf_id.lower()] = arch
    return table


def names() -> list[str]:
    """The catalogued models' names, sorted (each is also reachable by its Hugging Face id)."""
    return sorted({m.name for m in models().values()})


def gpu(name: str) -> Gpu:
    """A GPU by name (`A100-80G`, `a10g`, ...).

    Raises:
        CatalogError: not in the catalogue; the message lists what is.
    """
    found = gpus().get(name.strip().lower())
    if found is None:
        raise CatalogError(f"unknown GPU {name!r}; known: "
                           f"{', '.join(g.name for g in gpus().values())}")
    return found


# Release tags that leave a model's architecture as it is: an instruction-tuned, chat or
# pretrained release, a checkpoint format, a version or a YYMM release date (`Mistral-7B` is
# sized as Mistral-7B-v0.1, `Qwen2.5-7B` as Qwen2.5-7B-Instruct, `Llama-2-7b-chat-hf` as
# Llama-2-7B, `Mistral-Small-24B-Instruct-2501` as Mistral-Small-24B-Base-2501).
_RELEASE_TAG = re.compile(r"-(instruct|chat|it|pt|hf|base)$|-v\d+(\.\d+)*$|-\d{4}$")


def family_size(name: str) -> str:
    """A model's name reduced to its family and size: no organisation, no case, no release
    tags (`mistralai/Mistral-7B-Instruct-v0.2` -> `mistral-7b`)."""
    key = name.strip().lower().rsplit("/", 1)[-1].removeprefix("meta-")
    while (shorter := _RELEASE_TAG.sub("", key)) != key:
        key = shorter
    return key


@cache
def _by_family_size() -> dict[str, list[ModelArch]]:
    table: dict[str, list[ModelArch]] = {}
    for arch in {m.name: m for m in models().values()}.values():
        table.setdefault(family_size(arch.name), []).append(arch)
    return table


def model(name: str) -> ModelArch:
    """A model by catalogue name or Hugging Face id, with or without release tags (an
    -Instruct, -Chat or -it release, a -v0.1 version, as its catalogued sibling), or a path
    to a config.json (or its folder).

    Raises:
        CatalogError: unknown (the message names the closest catalogued models), ambiguous
            (two catalogued releases of one family and size), or a config.json without the
            fields the planner needs.
    """
    path = Path(name)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" and path.is_file():
        return from_config(path)
    return named(name)


def named(name: str) -> ModelArch:
    """A catalogued model by name or Hugging Face id, with or without release tags (never a
    path: what a web caller may ask).

    Raises:
        CatalogError: unknown or ambiguous, as `model` says.
    """
    found = models().get(name.strip().lower())
    if found is not None:
        return found
    key = family_size(name)
    siblings = _by_family_size().get(key, [])
    if len(siblings) == 1:
        return siblings[0]
    if siblings:
        raise CatalogError(f"model {name!r} could be any of "
                           f"{', '.join(sorted(a.name for a in siblings))}: name one")
    close = difflib.get_close_matches(key, _by_family_size(), n=3, cutoff=0.75)
    hint = "; closest: " + ", ".join(a.name for k in close for a in _by_family_size()[k]) \
        if close else ""
    raise CatalogError(f"unknown model {name!r}{hint}; known: {', '.join(names())} "
                       "(or a Hugging Face id of one, or a path to a config.json)")


def from_config(path: Path) -> ModelArch:
    """A decoder-only transformer described by a Hugging Face `config.json`: Llama-like
    models, Qwen2/3, Gemma-2/3 (a multimodal config's `text_config`, the vision tower not
    counted), Falcon (its original keys too), mixtures of experts (Mixtral's and Qwen3's
    keys), OPT.

    Raises:
        CatalogError: unreadable, or missing a field the planner needs.
    """
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"cannot read model config {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise CatalogError(f"model config {path} is not a JSON object")
    if isinstance(config.get("text_config"), dict):
        config = {**config, **config["text_config"]}
    if unmodelled := sorted(UNMODELLED_KEYS & set(config)):
        raise CatalogError(f"model config {path} describes a layout the planner does not model "
                           f"({', '.join(unmodelled)}: shared experts, dense first layers or "
                           "latent attention)")
    try:
        arch = _from_fields(config, str(config.get("_name_or_path") or path.parent.name))
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise CatalogError(f"model config {path} lacks a field the planner needs: {exc}") from exc
    if problem := _implausible(arch):
        raise CatalogError(f"model config {path}: {problem}")
    return replace(arch, source=str(path), parameters=count_parameters(arch))


# Keys of layouts the planner would size wrongly as a plain decoder: DeepSeek's latent
# attention and dense first layers, Qwen2-MoE's shared expert.
UNMODELLED_KEYS = {"kv_lora_rank", "n_routed_experts", "first_k_dense_replace",
                   "shared_expert_intermediate_size", "n_shared_experts"}


def _implausible(arch: ModelArch) -> str:
    """What makes a shape impossible; empty when it is not."""
    sizes = {"num_hidden_layers": arch.num_layers, "hidden_size": arch.hidden_size,
             "intermediate_size": arch.intermediate_size,
             "num_attention_heads": arch.num_attention_heads,
             "num_key_value_heads": arch.num_key_value_heads, "head_dim": arch.head_dim,
             "vocab_size": arch.vocab_size}
    if bad := [name for name, value in sizes.items() if value <= 0]:
        return f"{', '.join(bad)} must be positive"
    if arch.num_experts and not 1 <= arch.experts_per_token <= arch.num_experts:
        return (f"num_experts_per_tok must be between 1 and the {arch.num_experts} experts, "
                f"not {arch.experts_per_token}")
    return ""


def _first(config: dict[str, Any], *keys: str) -> Any:
    """The first of `keys` the config sets; KeyError naming them all when none is."""
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    raise KeyError(" or ".join(keys))


def _from_fields(config: dict[str, Any], name: str) -> ModelArch:
    family = _family(str(config.get("model_type", "")))
    layers = int(_first(config, "num_hidden_layers", "n_layer"))
    hidden = int(_first(config, "hidden_size", "n_embed"))
    heads = int(_first(config, "num_attention_heads", "n_head"))
    experts = int(_first(config, "num_local_experts", "num_experts") if
                  config.get("num_local_experts") or config.get("num_experts") else 0)
    ffn_keys = ("moe_intermediate_size",) if experts and "moe_intermediate_size" in config else ()
    ffn = (4 * hidden if family == "falcon" and not config.get("ffn_hidden_size") else
           int(_first(config, *ffn_keys, "intermediate_size", "ffn_dim", "ffn_hidden_size")))
    window, sliding = _sliding(config, family, layers)
    return ModelArch(
        name=name, num_layers=layers, hidden_size=hidden, intermediate_size=ffn,
        num_attention_heads=heads, num_key_value_heads=_kv_heads(config, heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        vocab_size=int(config["vocab_size"]),
        max_position_embeddings=int(config.get("max_position_embeddings") or 0),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", family in TIED_BY_DEFAULT)),
        parameters=0, family=family, num_experts=experts,
        experts_per_token=int(config.get("num_experts_per_tok") or 0) if experts else 0,
        sliding_window=window, sliding_layers=sliding)


# Families whose configs leave `tie_word_embeddings` out meaning true (transformers' default).
TIED_BY_DEFAULT = ("gemma2", "gemma3", "falcon")


def _kv_heads(config: dict[str, Any], heads: int) -> int:
    if config.get("multi_query") and not config.get("new_decoder_architecture"):
        return 1  # Falcon-7B's multi-query attention
    return int(config.get("num_key_value_heads") or config.get("num_kv_heads") or heads)


def _sliding(config: dict[str, Any], family: str, layers: int) -> tuple[int, int]:
    """The sliding window and how many layers use it: `layer_types` where the config lists
    them, Gemma-2's every other layer, Gemma-3's all but every `sliding_window_pattern`-th.
    Other families' windows are not counted (vLLM applies a window to a Llama-like model's
    layer only where `layer_types` says so)."""
    window = int(config.get("sliding_window") or 0)
    types = config.get("layer_types")
    if not window:
        return 0, 0
    if isinstance(types, list):
        return window, sum(t == "sliding_attention" for t in types)
    if family == "gemma2":
        return window, (layers + 1) // 2  # layers 0, 2, 4, ...
    if family == "gemma3":
        return window, layers - layers // int(config.get("sliding_window_pattern") or 6)
    return 0, 0


def _family(model_type: str) -> str:
    """The layout of a `model_type`; an unknown one is read as Llama's (the common shape)."""
    return FAMILIES.get(model_type, "llama")


def count_parameters(arch: ModelArch) -> int:
    """Parameters from the architecture's shape (`LAYOUTS` says what each family's layer
    holds): attention's projections, the MLP (every expert's, and the router, in a mixture),
    the norms, the embeddings and an untied LM head.

    OPT: a 2-matrix ReLU MLP, biases everywhere, LayerNorm (weight and bias), and learned
    positions (2 extra rows).
    """
    h, ffn = arch.hidden_size, arch.intermediate_size
    q = arch.num_attention_heads * arch.head_dim
    kv = arch.num_key_value_heads * arch.head_dim
    attention = h * q + 2 * h * kv + q * h
    head = 0 if arch.tie_word_embeddings else arch.vocab_size * h
    if arch.family == "opt":
        per_layer = attention + (q + 2 * kv + h) + 2 * h * ffn + ffn + h + 2 * 2 * h
        positions = (arch.max_position_embeddings + 2) * h
        return arch.num_layers * per_layer + arch.vocab_size * h + positions + head + 2 * h
    layout = LAYOUTS[arch.family]
    mlp = layout.mlp_matrices * h * ffn * max(arch.num_experts, 1)
    router = h * arch.num_experts
    per_layer = attention + mlp + router + layout.norms * h
    per_layer += (q + 2 * kv) * layout.qkv_bias + 2 * arch.head_dim * layout.qk_norm
    return arch.num_layers * per_layer + arch.vocab_size * h + head + layout.final_norm * h
