"""Validation of the few request fields the router needs."""

from __future__ import annotations

import json

import pytest

from server.errors import InvalidRequest
from server.protocol import Endpoint, parse_request, with_model


def chat(**fields: object) -> bytes:
    base: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return json.dumps(base).encode()


def test_chat_fields_are_read_and_body_kept_verbatim() -> None:
    body = chat(stream=True, stream_options={"include_usage": True}, max_tokens=7,
                temperature=0.3, tools=[{"type": "function"}])
    parsed = parse_request(Endpoint.CHAT, body)
    assert (parsed.model, parsed.stream, parsed.include_usage, parsed.max_tokens) == (
        "m", True, True, 7)
    assert parsed.body is body


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    parsed = parse_request(Endpoint.CHAT, chat(max_tokens=7, max_completion_tokens=9))
    assert parsed.max_tokens == 9


def test_prompt_estimate_counts_text_parts_and_messages() -> None:
    body = chat(messages=[{"role": "system", "content": "x" * 40},
                          {"role": "user", "content": [{"type": "text", "text": "y" * 40},
                                                       {"type": "image_url"}]}])
    assert parse_request(Endpoint.CHAT, body).prompt_tokens_estimate == 20 + 2 * 4


@pytest.mark.parametrize(("prompt", "tokens"), [
    ("abcdefgh", 2), (["abcd", "abcdefgh"], 3), ([1, 2, 3], 3), ([[1, 2], [3]], 3)])
def test_completion_prompt_forms(prompt: object, tokens: int) -> None:
    body = json.dumps({"model": "m", "prompt": prompt}).encode()
    assert parse_request(Endpoint.COMPLETIONS, body).prompt_tokens_estimate == tokens


@pytest.mark.parametrize(("body", "param"), [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b'"a string"', None),
    (b"", None),
    (json.dumps({"messages": []}).encode(), "model"),
    (chat(model=""), "model"),
    (chat(model=5), "model"),
    (chat(messages=[]), "messages"),
    (chat(messages="hello"), "messages"),
    (chat(messages=[{"content": "no role"}]), "messages.0.role"),
    (chat(max_tokens=0), "max_tokens"),
    (chat(max_tokens="many"), "max_tokens"),
    (chat(stream="yes please"), "stream"),
])
def test_bad_bodies_are_invalid_request_errors_with_param(body: bytes, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request(Endpoint.CHAT, body)
    assert info.value.status == 400
    assert info.value.param == param
    shape = json.loads(info.value.body())["error"]
    assert set(shape) == {"message", "type", "param", "code"}
    assert shape["type"] == "invalid_request_error"


def test_completions_need_a_prompt() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request(Endpoint.COMPLETIONS, b'{"model": "m"}')
    assert info.value.param == "prompt"


def test_with_model_rewrites_only_the_model() -> None:
    parsed = parse_request(Endpoint.CHAT, chat(model="auto", temperature=0.5))
    routed = with_model(parsed, "small")
    assert routed.model == "small"
    assert json.loads(routed.body) == {**json.loads(parsed.body), "model": "small"}
