"""The wire protocol the router understands: the few OpenAI fields it needs.

The router validates only what routing, limits and metrics need (model,
stream, max_tokens, user, the prompt's size) and forwards the client's bytes
to the engine untouched, so everything else in the request (tools, sampling
parameters, vLLM extensions) works without the router knowing about it.
Pydantic models live at the wire; the rest of the router sees the frozen
`ParsedRequest`.

The routes are the JSON routes vLLM's OpenAI-compatible server answers for a model
(`Endpoint`): the three that generate (chat, completions, responses: streamed or not,
`auto` may choose their model), the pooling ones (embeddings, score, rerank, pooling,
classify: one answer, no stream) and tokenize/detokenize. For routes whose request shapes
are many (score takes `text_1`/`text_2`, `queries`/`documents`, `data_1`/`data_2`...),
the prompt's size is estimated from every string and token id in the body, which is what
the engine will read; vLLM, not the router, checks their shape. vLLM lets those routes
leave `model` out; so does the router when it serves one model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from server.errors import InvalidRequest
from server.prefix import blocks

# English text averages about four characters per token with BPE tokenizers;
# the router has no tokenizer, so limits and length routing use this estimate
# and reconcile with the engine's reported usage afterwards.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


class Endpoint(StrEnum):
    """A route the router passes to the engines, by its path (the engine's own)."""

    CHAT = "/v1/chat/completions"
    COMPLETIONS = "/v1/completions"
    RESPONSES = "/v1/responses"
    EMBEDDINGS = "/v1/embeddings"
    SCORE = "/score"
    SCORE_V1 = "/v1/score"
    RERANK = "/rerank"
    RERANK_V1 = "/v1/rerank"
    RERANK_V2 = "/v2/rerank"
    POOLING = "/pooling"
    CLASSIFY = "/classify"
    TOKENIZE = "/tokenize"
    DETOKENIZE = "/detokenize"

    @property
    def generates(self) -> bool:
        """Whether it generates tokens (and may stream, and `auto` may choose its model)."""
        return self in _GENERATING

    @property
    def metered(self) -> bool:
        """Whether the engine runs the model on it, so that its tokens count against a
        key's limits (tokenize and detokenize only read the tokenizer)."""
        return self not in (Endpoint.TOKENIZE, Endpoint.DETOKENIZE)


_GENERATING = frozenset((Endpoint.CHAT, Endpoint.COMPLETIONS, Endpoint.RESPONSES))


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ContentPart(_Wire):
    type: str
    text: str | None = None


class Message(_Wire):
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(_Wire):
    include_usage: bool = False


class _Common(_Wire):
    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    user: str | None = None
    # Sequences generated per request: limits charge each one. The engine validates them.
    n: int | None = None
    best_of: int | None = None

    @property
    def sequences(self) -> int:
        return max(self.n or 1, self.best_of or 1, 1)


class ChatRequest(_Common):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]]


class ResponsesRequest(_Wire):
    """OpenAI's Responses API: `input` a string or a list of items (messages, tool
    results...), read only for its size."""

    model: str | None = None
    stream: bool = False
    max_output_tokens: int | None = Field(default=None, ge=1)
    input: str | list[JsonValue] = Field(min_length=1)
    instructions: str | None = None


class PassThroughRequest(_Wire):
    """A pooling or tokenizer route's body: an object with an optional model; the rest
    (kept as parsed, `model_extra`) is read only for its size."""

    model_config = ConfigDict(extra="allow", frozen=True)
    model: str | None = None


W = TypeVar("W", bound=BaseModel)

WEIGHTS_HEADER = "x-llmfleet-weights"


@dataclass(frozen=True, slots=True)
class RouteWeights:
    """How much the scored routing policy cares about each criterion (any scale)."""

    accuracy: float = 1.0
    energy: float = 1.0
    time: float = 1.0

    def __str__(self) -> str:
        return f"accuracy={self.accuracy:g},energy={self.energy:g},time={self.time:g}"


def parse_route_weights(text: str) -> RouteWeights:
    """`accuracy=2,time=1`: weights for the scored policy; a name left out weighs 0.

    Raises:
        InvalidRequest: an unknown name, a value that is not a number >= 0, or all zero.
    """
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, raw = item.partition("=")
        name = name.strip().lower()
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if name not in ("accuracy", "energy", "time") or not value >= 0 or value == float("inf"):
            raise InvalidRequest(
                f"{WEIGHTS_HEADER}: {item!r} is not accuracy=, energy= or time= with a number "
                ">= 0", param=WEIGHTS_HEADER)
        values[name] = value
    if not any(values.values()):
        raise InvalidRequest(f"{WEIGHTS_HEADER}: at least one weight must be above 0",
                             param=WEIGHTS_HEADER)
    return RouteWeights(**{k: values.get(k, 0.0) for k in ("accuracy", "energy", "time")})


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """What the router knows about one request; `body` is forwarded verbatim."""

    endpoint: Endpoint
    model: str  # "" where the route lets it out (the router's one model then)
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens_estimate: int
    body: bytes
    weights: RouteWeights | None = None  # the client's own, from the x-llmfleet-weights header
    sequences: int = 1  # generated per request (n, best_of)
    # The prompt's block hashes for cache-aware balancing (`server.prefix`), when it is on.
    prefix: tuple[int, ...] = ()


def _message_chars(message: Message) -> int:
    if message.content is None:
        return 0
    if isinstance(message.content, str):
        return len(message.content)
    return sum(len(part.text or "") for part in message.content)


def _prompt_tokens(prompt: str | list[str] | list[int] | list[list[int]]) -> int:
    if isinstance(prompt, str):
        return -(-len(prompt) // CHARS_PER_TOKEN)
    total = 0
    for item in prompt:
        if isinstance(item, str):
            total += -(-len(item) // CHARS_PER_TOKEN)
        elif isinstance(item, int):
            total += 1
        else:
            total += len(item)
    return total


def parse_wire(model: type[W], body: bytes) -> W:
    """Validate a JSON body against a wire model.

    Raises:
        InvalidRequest: not JSON, not an object, or a field missing or mistyped
            (named in `param`).
    """
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] in ("json_invalid", "model_type"):
            raise InvalidRequest("the request body must be a JSON object") from exc
        param = ".".join(str(p) for p in first["loc"]) or None
        message = first["msg"] if param is None else f"{param}: {first['msg']}"
        raise InvalidRequest(message, param=param) from exc


def _content_tokens(value: object) -> int:
    """The tokens an engine will read from a JSON value: every string (by its length)
    and every whole number (a token id) in it."""
    if isinstance(value, str):
        return -(-len(value) // CHARS_PER_TOKEN)
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return 1
    if isinstance(value, list):
        return sum(_content_tokens(v) for v in value)
    if isinstance(value, dict):
        return sum(_content_tokens(v) for v in value.values())
    return 0


def parse_request(endpoint: Endpoint, body: bytes, prefix: bool = False) -> ParsedRequest:
    """Validate a request body (`prefix`: and hash its prompt's blocks, `server.prefix`).

    Raises:
        InvalidRequest: the body is not JSON, not an object, or misses or
            mistypes a field the router needs.
    """
    if endpoint is Endpoint.RESPONSES:
        answer = parse_wire(ResponsesRequest, body)
        return ParsedRequest(
            endpoint=endpoint, model=answer.model or "", stream=answer.stream, include_usage=True,
            max_tokens=answer.max_output_tokens,
            prompt_tokens_estimate=_content_tokens(answer.input)
            + _content_tokens(answer.instructions),
            body=body, prefix=blocks(_response_text(answer)) if prefix else ())
    if not endpoint.generates:
        other = parse_wire(PassThroughRequest, body)
        return ParsedRequest(endpoint=endpoint, model=other.model or "", stream=False,
                             include_usage=False, max_tokens=None,
                             prompt_tokens_estimate=_content_tokens(other.model_extra),
                             body=body)
    wire: ChatRequest | CompletionRequest
    if endpoint is Endpoint.CHAT:
        wire = parse_wire(ChatRequest, body)
    else:
        wire = parse_wire(CompletionRequest, body)
    if isinstance(wire, ChatRequest):
        chars = sum(_message_chars(m) for m in wire.messages)
        prompt_tokens = -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(wire.messages)
        max_tokens = wire.max_completion_tokens or wire.max_tokens
    else:
        prompt_tokens = _prompt_tokens(wire.prompt)
        max_tokens = wire.max_tokens
    return ParsedRequest(
        endpoint=endpoint,
        model=wire.model,
        stream=wire.stream,
        include_usage=bool(wire.stream_options and wire.stream_options.include_usage),
        max_tokens=max_tokens,
        prompt_tokens_estimate=prompt_tokens,
        body=body,
        sequences=wire.sequences,
        prefix=blocks(_prompt_text(wire)) if prefix else (),
    )


def _prompt_text(wire: ChatRequest | CompletionRequest) -> str:
    """The prompt as the engine will read it, in order (for its prefix): the messages'
    roles and text, or the prompt (a batch of several prompts has no one prefix)."""
    if isinstance(wire, ChatRequest):
        return "".join(f"{m.role}\n{_message_text(m)}\n" for m in wire.messages)
    prompt = wire.prompt
    if isinstance(prompt, str):
        return prompt
    if prompt and isinstance(prompt[0], int):
        return ",".join(str(t) for t in prompt)
    return ""


def _message_text(message: Message) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    return "".join(part.text or "" for part in message.content)


def _response_text(wire: ResponsesRequest) -> str:
    """A response's instructions, then its input (items as the client sent them, in
    order: the same conversation sends the same items again)."""
    items = wire.input if isinstance(wire.input, str) else json.dumps(wire.input)
    return f"{wire.instructions or ''}\n{items}"


def with_model(parsed: ParsedRequest, model: str) -> ParsedRequest:
    """The request re-addressed to `model`, as the engine must see it.

    Only requests whose model the router chose (the alias, or a route that left it out)
    pay for this re-serialisation; all others are forwarded byte for byte.
    """
    payload = json.loads(parsed.body)
    payload["model"] = model
    return replace(parsed, model=model, body=json.dumps(payload).encode())
