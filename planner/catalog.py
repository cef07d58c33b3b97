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
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

GIB = 1024**3
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

    def cannot_run(self, precision: str) -> str:
        """Why vLLM cannot serve weights of `precision` here; empty when it can.

        fp8 and bf16 need Ampere (8.0) or later: fp8 as weights dequantised by the Marlin
        kernels there, with fp8 arithmetic from 8.9 (Ada, Hopper); Turing has neither.
        """
        if precision in ("fp8", "bf16") and self.compute_capability < 8.0:
            return (f"{self.name} (compute capability {self.compute_capability:g}) cannot "
                    f"run {precision}: vLLM needs 8.0 or later")
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
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    parameters: int
    family: str = "llama"  # "llama" (gated MLP, RMSNorm), "qwen2" (llama + q/k/v biases), "opt"
    hf_id: str = ""
    source: str = ""


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
                "parameters")})
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


# Release tags that leave a model's architecture as it is: an instruction-tuned or chat
# release, a checkpoint format, a version (`Mistral-7B` is sized as Mistral-7B-v0.1,
# `Qwen2.5-7B` as Qwen2.5-7B-Instruct, `Llama-2-7b-chat-hf` as Llama-2-7B).
_RELEASE_TAG = re.compile(r"-(instruct|chat|it|hf|base)$|-v\d+(\.\d+)*$")


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
    """A decoder-only transformer described by a Hugging Face `config.json`.

    Raises:
        CatalogError: unreadable, or missing a field the planner needs.
    """
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"cannot read model config {path}: {exc}") from exc
    try:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        arch = ModelArch(
            name=str(config.get("_name_or_path") or path.parent.name), num_layers=int(
                config["num_hidden_layers"]), hidden_size=hidden,
            intermediate_size=int(config.get("intermediate_size") or config["ffn_dim"]),
            num_attention_heads=heads,
            num_key_value_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            vocab_size=int(config["vocab_size"]),
            max_position_embeddings=int(config.get("max_position_embeddings") or 0),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            parameters=0, family=_family(str(config.get("model_type", ""))), source=str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"model config {path} lacks a field the planner needs: {exc}") from exc
    return ModelArch(**{**arch.__dict__, "parameters": count_parameters(arch)})


def _family(model_type: str) -> str:
    return model_type if model_type in ("qwen2", "opt") else "llama"


def count_parameters(arch: ModelArch) -> int:
    """Parameters from the architecture's shape.

    Llama-style: gated MLP (3 matrices), RMSNorm, no biases; Qwen2 adds q/k/v biases.
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
    per_layer = attention + 3 * h * ffn + 2 * h  # two RMSNorms
    if arch.family == "qwen2":
        per_layer += q + 2 * kv
    return arch.num_layers * per_layer + arch.vocab_size * h + head + h  # + the final norm
