"""Workloads: which prompts a load test sends and how many tokens it asks back.

Three shapes, chosen by a short spec string so that the command line and the
environment can name them at run time:

- `fixed:IN:OUT` — every request has about IN prompt tokens and asks for OUT;
- `lognormal:IN:OUT[:SIGMA]` — medians IN and OUT with a log-normal spread
  (most requests short, a long tail, as in chat traffic), clamped to 8x the median;
- `file:PATH` — a JSONL file, one request per line: `{"prompt": "...",
  "max_tokens": N}` or `{"messages": [...], "max_tokens": N}`.

The lengths of the first two (their parsing and draws) live in `llmfleet.core.lengths`,
shared with the simulator; this module turns them into prompt text and reads files.

Prompt lengths are approximate: a prompt of N tokens is N common English words,
each one token in the byte-level BPE vocabularies vLLM models use. The token
counts that matter are the ones the server reports in `usage`, which the load
test records.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from llmfleet.core import lengths

WORDS = ("the", "of", "and", "to", "in", "is", "for", "on", "that", "with", "as", "it", "at",
         "by", "from", "this", "be", "are", "was", "not", "or", "an", "have", "but", "all",
         "can", "which", "one", "we", "will", "more", "time", "about", "if", "has", "so", "what",
         "there", "up", "out", "new", "also", "use", "when", "some", "may", "only", "other",
         "many", "like", "any", "two", "how", "first", "then", "them", "these", "over", "most",
         "after", "way", "well", "where", "such", "because", "each", "work", "still", "through",
         "very", "make")
MAX_SPREAD = lengths.MAX_SPREAD  # kept here for callers that read it from the workload


class WorkloadError(ValueError):
    """A workload spec or file that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class Request:
    """One request to send: a prompt or chat messages, and the output length to ask for."""

    max_tokens: int
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # (role, content) pairs

    def chat_messages(self) -> list[dict[str, str]]:
        if self.messages is not None:
            return [{"role": role, "content": content} for role, content in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]

    def completion_prompt(self) -> str:
        if self.prompt is not None:
            return self.prompt
        return "\n".join(content for _, content in self.messages or ())


class Workload(Protocol):
    def sample(self, rng: random.Random) -> Request: ...


def make_prompt(tokens: int, rng: random.Random) -> str:
    """About `tokens` tokens of random words: requests share no prefix an engine could cache."""
    return " ".join(rng.choice(WORDS) for _ in range(max(tokens, 1)))


def _request(drawn: lengths.Lengths, rng: random.Random) -> Request:
    return Request(max_tokens=drawn.output_tokens, prompt=make_prompt(drawn.prompt_tokens, rng))


@dataclass(frozen=True, slots=True)
class Fixed(lengths.FixedLengths):
    def sample(self, rng: random.Random) -> Request:
        return _request(self.draw(rng), rng)


@dataclass(frozen=True, slots=True)
class LogNormal(lengths.LogNormalLengths):
    def sample(self, rng: random.Random) -> Request:
        return _request(self.draw(rng), rng)


@dataclass(frozen=True)
class FromFile:
    requests: tuple[Request, ...]

    def sample(self, rng: random.Random) -> Request:
        return rng.choice(self.requests)


def read_jsonl(path: Path, default_max_tokens: int = 128) -> FromFile:
    """Requests from a JSONL file.

    Raises:
        WorkloadError: the file is missing or empty, or a line is not a request.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise WorkloadError(f"cannot read workload file {path}: {exc.strerror}") from exc
    requests = [_parse_line(line, path, number, default_max_tokens)
                for number, line in enumerate(lines, 1) if line.strip()]
    if not requests:
        raise WorkloadError(f"workload file {path} holds no requests")
    return FromFile(tuple(requests))


def _parse_line(line: str, path: Path, number: int, default_max_tokens: int) -> Request:
    where = f"{path}:{number}"
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(item, dict):
        raise WorkloadError(f"{where}: expected an object with prompt or messages")
    max_tokens = item.get("max_tokens", default_max_tokens)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise WorkloadError(f"{where}: max_tokens must be a positive integer")
    prompt, messages = item.get("prompt"), item.get("messages")
    if isinstance(prompt, str) and prompt:
        return Request(max_tokens=max_tokens, prompt=prompt)
    if isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in messages):
        return Request(max_tokens=max_tokens,
                       messages=tuple((m["role"], m["content"]) for m in messages))
    raise WorkloadError(f"{where}: needs a non-empty prompt string or a messages list of "
                        "{role, content} strings")


def parse(spec: str) -> Workload:
    """A workload from its spec (see the module docstring).

    Raises:
        WorkloadError: the spec names no known shape or has bad numbers.
    """
    kind, _, rest = spec.partition(":")
    if kind == "file" and rest:
        return read_jsonl(Path(rest))
    try:
        model = lengths.parse(spec)
    except lengths.UnknownLengthSpec as exc:
        raise WorkloadError(f"unknown workload {spec!r}: use fixed:IN:OUT, "
                            "lognormal:IN:OUT[:SIGMA] or file:PATH.jsonl") from exc
    except lengths.LengthSpecError as exc:
        raise WorkloadError(str(exc)) from exc
    if isinstance(model, lengths.FixedLengths):
        return Fixed(model.input_tokens, model.output_tokens)
    return LogNormal(model.input_median, model.output_median, model.sigma)
