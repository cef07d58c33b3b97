"""Request bodies and reading completions back: TTFT, TPOT and tokens."""

from __future__ import annotations

import json

import pytest

from loadtest.stream import (
    Api,
    ResponseError,
    StreamReader,
    listed_models,
    read_body,
    request_body,
)
from loadtest.workload import Request


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n"


def chat_chunk(content: str | None, role: str | None = None) -> bytes:
    delta = {k: v for k, v in (("content", content), ("role", role)) if v is not None}
    return sse({"choices": [{"index": 0, "delta": delta}]})


USAGE = sse({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}})


def test_bodies_for_each_api_and_mode() -> None:
    request = Request(max_tokens=5, prompt="hello there")
    chat = request_body(request, Api.CHAT, "m", stream=True, ignore_eos=True)
    assert chat == {"model": "m", "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hello there"}], "stream": True,
                    "stream_options": {"include_usage": True}, "ignore_eos": True}
    completion = request_body(request, Api.COMPLETIONS, "m", stream=False)
    assert completion == {"model": "m", "max_tokens": 5, "prompt": "hello there"}
    extra = request_body(request, Api.COMPLETIONS, "m", stream=False,
                         extra={"temperature": 0, "max_tokens": 9})
    assert (extra["temperature"], extra["max_tokens"]) == (0, 9)  # the extra fields win
    assert (Api.CHAT.path, Api.COMPLETIONS.path) == ("/v1/chat/completions", "/v1/completions")


def test_chat_stream_times_the_first_text_not_the_role_chunk() -> None:
    reader = StreamReader(Api.CHAT, sent_at=10.0)
    for line, at in [(chat_chunk("", role="assistant"), 10.05), (b"\n", 10.05),
                     (chat_chunk("Hel"), 10.2), (chat_chunk("lo"), 10.3),
                     (chat_chunk("!"), 10.4), (USAGE, 10.41), (b"data: [DONE]\n", 10.41)]:
        reader.line(line, at)
    outcome = reader.outcome(10.5)
    assert outcome.ttft_s == pytest.approx(0.2)
    assert outcome.e2e_s == pytest.approx(0.5)
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (12, 3)
    assert outcome.tpot_s == pytest.approx((0.5 - 0.2) / 2)
    assert outcome.usage_reported


def test_completion_stream_without_usage_counts_token_chunks() -> None:
    reader = StreamReader(Api.COMPLETIONS, sent_at=0.0)
    for i, text in enumerate(["a", "", "b"]):
        reader.line(sse({"choices": [{"index": 0, "text": text}]}), 0.1 * (i + 1))
    reader.line(sse({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}), 0.4)
    reader.line("data: [DONE]", 0.4)
    outcome = reader.outcome(0.4)
    # The empty chunk is a token (a partial character); the closing one is not.
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (0, 3)
    assert not outcome.usage_reported
    assert outcome.ttft_s == pytest.approx(0.1)


def test_a_first_completion_token_that_decodes_to_no_text_still_times_the_first_token(
) -> None:
    reader = StreamReader(Api.COMPLETIONS, sent_at=0.0)
    reader.line(sse({"choices": [{"index": 0, "text": ""}]}), 0.1)
    reader.line(sse({"choices": [{"index": 0, "text": "\u00e9", "finish_reason": "length"}],
                     "usage": {"prompt_tokens": 4, "completion_tokens": 2}}), 0.2)
    reader.line("data: [DONE]", 0.2)
    outcome = reader.outcome(0.2)
    assert outcome.ttft_s == pytest.approx(0.1)  # was None for a 1-token answer, or late
    assert outcome.tpot_s == pytest.approx(0.1)


def test_one_token_has_no_tpot() -> None:
    reader = StreamReader(Api.COMPLETIONS, sent_at=0.0)
    reader.line(sse({"choices": [{"text": "a"}], "usage": {"prompt_tokens": 1,
                                                          "completion_tokens": 1}}), 0.1)
    reader.line(b"data: [DONE]", 0.1)
    assert reader.outcome(0.1).tpot_s is None


def test_error_event_mid_stream_is_an_error() -> None:
    reader = StreamReader(Api.CHAT, sent_at=0.0)
    reader.line(chat_chunk("x"), 0.1)
    with pytest.raises(ResponseError, match="error event in stream: backend died"):
        reader.line(sse({"error": {"message": "backend died", "type": "server_error"}}), 0.2)


def test_stream_cut_before_done_is_an_error() -> None:
    reader = StreamReader(Api.CHAT, sent_at=0.0)
    reader.line(chat_chunk("x"), 0.1)
    with pytest.raises(ResponseError, match=r"ended before data: \[DONE\]"):
        reader.outcome(0.2)


@pytest.mark.parametrize("line", [b"data: {not json\n", b"data: [1, 2]\n"])
def test_garbage_chunks_are_errors(line: bytes) -> None:
    with pytest.raises(ResponseError, match="stream chunk is not"):
        StreamReader(Api.CHAT, 0.0).line(line, 0.1)


def test_non_streamed_body_gives_usage() -> None:
    body = json.dumps({"choices": [{"message": {"content": "hi"}}],
                       "usage": {"prompt_tokens": 7, "completion_tokens": 2}}).encode()
    outcome = read_body(body, 0.25)
    assert (outcome.e2e_s, outcome.ttft_s, outcome.prompt_tokens, outcome.completion_tokens) == (
        0.25, None, 7, 2)
    assert outcome.tpot_s is None


@pytest.mark.parametrize(("body", "message"), [
    (b"<html>", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"error": {"message": "bad model"}}', "error response: bad model"),
    (b'{"choices": []}', "no usage"),
])
def test_bad_bodies_are_errors(body: bytes, message: str) -> None:
    with pytest.raises(ResponseError, match=message):
        read_body(body, 0.1)


def test_models_listed_by_an_endpoint() -> None:
    body = json.dumps({"object": "list", "data": [{"id": "a"}, {"id": "b"}]}).encode()
    assert listed_models("http://h/v1/models", 200, body, "check the key") == ["a", "b"]


@pytest.mark.parametrize(("status", "body", "message"), [
    (401, b"", r"http://h/v1/models answered HTTP 401 \(check the key\)$"),
    (500, b"", r"answered HTTP 500$"),
    (200, b"<html>", "did not answer JSON"),
    (200, b'{"data": []}', "lists no models"),
    (200, b"[1]", "lists no models"),
])
def test_unusable_model_lists_say_why(status: int, body: bytes, message: str) -> None:
    with pytest.raises(ResponseError, match=message):
        listed_models("http://h/v1/models", status, body, "check the key")
