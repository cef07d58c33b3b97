"""What a load test sends to an OpenAI-compatible endpoint and what it reads back.

Both the Locust users (gevent, geventhttpclient) and the plan search (asyncio,
httpx) build their request bodies here and feed the response to a
`StreamReader` line by line with the time each line arrived, so the two agree
on what TTFT, TPOT and a token mean:

- TTFT is the time from sending the request to the first chunk that carries
  text (a role-only first chunk is not a token the user sees);
- TPOT is (end-to-end - TTFT) / (output tokens - 1), the mean gap between
  tokens after the first, as vLLM's own benchmarks define it;
- tokens are the ones the server reports in `usage` (streams ask for it with
  `stream_options.include_usage`); a server that reports none gets its text
  chunks counted instead, and the outcome says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from loadtest.workload import Request


class Api(StrEnum):
    CHAT = "chat"
    COMPLETIONS = "completions"

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self is Api.CHAT else "/v1/completions"


class ResponseError(Exception):
    """The server answered 2xx but the body is an error or not a completion."""


def request_body(request: Request, api: Api, model: str, *, stream: bool,
                 ignore_eos: bool = False,
                 extra: Mapping[str, object] | None = None) -> dict[str, object]:
    """The JSON body for one request.

    `ignore_eos` (a vLLM extension) makes the engine produce exactly
    `max_tokens`, so output lengths are what the workload asked for. `extra`
    adds fields (sampling parameters, say) and wins over the ones set here.
    """
    body: dict[str, object] = {"model": model, "max_tokens": request.max_tokens}
    if api is Api.CHAT:
        body["messages"] = request.chat_messages()
    else:
        body["prompt"] = request.completion_prompt()
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if ignore_eos:
        body["ignore_eos"] = True
    return {**body, **(extra or {})}


@dataclass(frozen=True)
class Outcome:
    """One finished request, times in seconds from when it was sent."""

    e2e_s: float
    ttft_s: float | None  # None for non-streamed requests
    prompt_tokens: int
    completion_tokens: int
    usage_reported: bool

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or self.completion_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.completion_tokens - 1)


class StreamReader:
    """Reads one server-sent-event stream of completion chunks.

    Call `line()` with each line and the clock reading when it arrived, then
    `outcome()` once the stream ended.
    """

    def __init__(self, api: Api, sent_at: float) -> None:
        self.api = api
        self.sent_at = sent_at
        self.first_text_at: float | None = None
        self.text_chunks = 0
        self.usage: tuple[int, int] | None = None
        self.done = False

    def line(self, raw: bytes | str, now: float) -> None:
        """Take one line of the stream.

        Raises:
            ResponseError: the server sent an error event or a chunk that is not JSON.
        """
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = text.strip()
        if not text.startswith("data:"):
            return  # blank separators, comments, event names
        payload = text[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise ResponseError(f"stream chunk is not JSON: {payload[:80]!r}") from exc
        if not isinstance(chunk, dict):
            raise ResponseError(f"stream chunk is not an object: {payload[:80]!r}")
        if "error" in chunk:
            raise ResponseError(f"error event in stream: {_error_message(chunk)}")
        if _is_token(chunk, self.api):
            self.text_chunks += 1
            if self.first_text_at is None:
                self.first_text_at = now
        if (usage := _usage(chunk)) is not None:
            self.usage = usage

    def outcome(self, now: float) -> Outcome:
        """The finished request.

        Raises:
            ResponseError: the stream ended without its `[DONE]` marker.
        """
        if not self.done:
            raise ResponseError("stream ended before data: [DONE]")
        prompt, completion = self.usage or (0, self.text_chunks)
        ttft = None if self.first_text_at is None else self.first_text_at - self.sent_at
        return Outcome(e2e_s=now - self.sent_at, ttft_s=ttft, prompt_tokens=prompt,
                       completion_tokens=completion, usage_reported=self.usage is not None)


def read_body(body: bytes, e2e_s: float) -> Outcome:
    """The outcome of a non-streamed request from its JSON body.

    Raises:
        ResponseError: the body is not a completion with usage.
    """
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResponseError(f"response is not JSON: {body[:80]!r}") from exc
    if not isinstance(data, dict):
        raise ResponseError("response is not a JSON object")
    if "error" in data:
        raise ResponseError(f"error response: {_error_message(data)}")
    usage = _usage(data)
    if usage is None:
        raise ResponseError("response has no usage")
    return Outcome(e2e_s=e2e_s, ttft_s=None, prompt_tokens=usage[0],
                   completion_tokens=usage[1], usage_reported=True)


def listed_models(url: str, status: int, body: bytes, key_hint: str) -> list[str]:
    """The model ids in an answer to `GET /v1/models`.

    Raises:
        ResponseError: an error status (with `key_hint` on 401 and 403), a body that is
            not JSON, or no models.
    """
    if status != 200:
        hint = f" ({key_hint})" if status in (401, 403) else ""
        raise ResponseError(f"{url} answered HTTP {status}{hint}")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResponseError(f"{url} did not answer JSON") from exc
    listed = data.get("data") if isinstance(data, dict) else None
    models = [str(m["id"]) for m in listed or [] if isinstance(m, dict) and "id" in m]
    if not models:
        raise ResponseError(f"{url} lists no models")
    return models


def _is_token(chunk: dict[str, object], api: Api) -> bool:
    """Whether the chunk carries a generated token.

    A chat chunk does when its delta has content (the first, role-only chunk has none).
    A completions chunk does when its choice has text, or a text field left empty with
    no finish reason: vLLM streams one chunk per token, and a token that decodes to no
    text yet (a partial UTF-8 character) arrives as "" (about 4% of the generated test
    model's tokens), which must still count and time the first token.
    """
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    choice = choices[0]
    if api is Api.COMPLETIONS:
        text = choice.get("text")
        return isinstance(text, str) and (bool(text) or choice.get("finish_reason") is None)
    delta = choice.get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return isinstance(content, str) and bool(content)


def _usage(data: dict[str, object]) -> tuple[int, int] | None:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    return None


def _error_message(data: dict[str, object]) -> str:
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(error)[:200]
