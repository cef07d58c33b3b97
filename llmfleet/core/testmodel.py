"""Generate the small offline model that `make up` and the tests serve.

The machines this project is developed and tested on reach no model hub, yet
everything downstream (the router, the agent, the load tests) should run
against a real vLLM engine producing real tokens. This module builds such a
model from nothing: a byte-level BPE tokenizer trained on text that ships with
Python itself, and a Llama-architecture network with seeded random weights.
It talks nonsense, but vLLM loads, schedules and streams it exactly as it
would a production checkpoint.

Shape constraints: vLLM's CPU attention kernels reject head_dim 16, so heads
are 64 wide; two layers of width 256 keep start-up near 50 s on two cores.
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# A plain role-tagged template: enough for vLLM's chat endpoint to render
# messages; the tokens are ordinary text learnt by the tokenizer.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ("<s>", "</s>", "<pad>")
MARKER = "llmfleet-testmodel.json"
DEFAULT_TEST_MODEL_DIR = Path(".cache/models/llmfleet-tiny")


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Architecture of the generated model (defaults: ~2 M parameters)."""

    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 688
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position_embeddings: int = 2048
    seed: int = 1234

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def training_corpus() -> list[str]:
    """Text to train the tokenizer on: docstrings of the standard library.

    It is on every machine with Python, so generation never touches the network.
    """
    import asyncio
    import collections
    import http.client
    import json as json_mod
    import logging as logging_mod
    import pathlib
    import re
    import string
    import subprocess
    import textwrap

    texts: list[str] = []
    for module in (asyncio, collections, http.client, json_mod, logging_mod, pathlib,
                   re, string, subprocess, textwrap, inspect):
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj)
            if doc:
                texts.append(doc)
    return texts


def build_tokenizer(spec: TinyLlamaSpec, out_dir: Path) -> int:
    """Train and save a byte-level BPE tokenizer; return its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=spec.max_position_embeddings,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))
    return int(tokenizer.get_vocab_size())


def build_model(spec: TinyLlamaSpec, vocab_size: int, out_dir: Path) -> int:
    """Create and save a randomly initialised Llama; return its parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=SPECIAL_TOKENS.index("<s>"),
        eos_token_id=SPECIAL_TOKENS.index("</s>"),
        pad_token_id=SPECIAL_TOKENS.index("<pad>"),
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def ensure_test_model(out_dir: Path, spec: TinyLlamaSpec | None = None) -> Path:
    """Build the model into `out_dir` unless a complete build for `spec` is already there."""
    spec = spec or TinyLlamaSpec()
    marker = out_dir / MARKER
    wanted = json.dumps(spec.__dict__, sort_keys=True)
    if marker.exists() and marker.read_text() == wanted:
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(spec, out_dir)
    params = build_model(spec, vocab, out_dir)
    # Written last, so an interrupted build is redone rather than half-served.
    marker.write_text(wanted)
    log.info("generated test model in %s: vocab %d, %d parameters", out_dir, vocab, params)
    return out_dir
