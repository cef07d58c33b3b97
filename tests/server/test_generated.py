"""What an engine generated, as the archive keeps it (`server.generated`): each choice's text,
finish reason and tool calls from answers and streams of chat, completions and responses;
nothing (never an exception) from an error or a broken body."""

from __future__ import annotations

import json
from typing import Any

from server.generated import output
from server.protocol import Endpoint


def sse(*events: dict[str, Any], tail: bytes = b"data: [DONE]\n\n") -> list[bytes]:
    return [b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + tail]


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": index, "delta": fields, "finish_reason": None}]}


def test_a_streamed_chat_answer_keeps_each_choice_and_its_tool_calls() -> None:
    call = {"index": 0, "function": {"name": "weather", "arguments": '{"city":'}}
    more = {"index": 0, "function": {"arguments": '"Oslo"}'}}
    events = sse(delta(0, role="assistant", content=""), delta(0, content="Hel"),
                 delta(1, content="Bye"), delta(0, content="lo"), delta(1, tool_calls=[call]),
                 delta(1, tool_calls=[more]),
                 {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                 {"choices": [], "usage": {"prompt_tokens": 3}})
    assert output(Endpoint.CHAT, True, events) == [
        {"index": 0, "text": "Hello", "finish_reason": "stop"},
        {"index": 1, "text": "Bye", "finish_reason": None,
         "tool_calls": [{"name": "weather", "arguments": '{"city":"Oslo"}'}]}]


def test_a_whole_chat_answer_keeps_its_tool_calls_even_without_a_function() -> None:
    answer = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"type": "function", "function": None}]}}]}
    assert output(Endpoint.CHAT, False, [json.dumps(answer).encode()]) == [
        {"index": 0, "text": None, "finish_reason": "tool_calls",
         "tool_calls": [{"name": "f", "arguments": "{}"}, {"name": None, "arguments": None}]}]


def test_completions_keep_each_choice_s_text_streamed_or_not() -> None:
    whole = {"choices": [{"index": 0, "text": "one", "finish_reason": "length"},
                         {"index": 1, "text": "two", "finish_reason": "stop"}]}
    assert output(Endpoint.COMPLETIONS, False, [json.dumps(whole).encode()]) == [
        {"index": 0, "text": "one", "finish_reason": "length"},
        {"index": 1, "text": "two", "finish_reason": "stop"}]
    events = sse({"choices": [{"index": 0, "text": " a", "finish_reason": None}]},
                 {"choices": [{"index": 0, "text": " b", "finish_reason": "length"}]})
    assert output(Endpoint.COMPLETIONS, True, events) == [
        {"index": 0, "text": " a b", "finish_reason": "length"}]


def test_a_response_keeps_its_text_and_function_calls_streamed_or_not() -> None:
    whole = {"status": "completed", "output": [
        {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "hmm"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "Hi there"}]},
        {"type": "function_call", "name": "lookup", "arguments": '{"q": 1}'}]}
    expected = [{"index": 0, "text": "Hi there", "finish_reason": "completed",
                 "tool_calls": [{"name": "lookup", "arguments": '{"q": 1}'}]}]
    assert output(Endpoint.RESPONSES, False, [json.dumps(whole).encode()]) == expected
    # Streamed, the last event carries the whole response.
    events = sse({"type": "response.output_text.delta", "delta": "Hi "},
                 {"type": "response.completed", "response": whole}, tail=b"")
    assert output(Endpoint.RESPONSES, True, events) == expected
    # Without it (a stream cut short), the text deltas.
    cut = sse({"type": "response.output_text.delta", "delta": "Hi "},
              {"type": "response.output_text.delta", "delta": "th"}, tail=b"data: {\"ty")
    assert output(Endpoint.RESPONSES, True, cut) == [
        {"index": 0, "text": "Hi th", "finish_reason": None}]


def test_an_error_or_a_broken_body_keeps_no_output() -> None:
    error = json.dumps({"error": {"message": "bad", "type": "invalid_request_error"}})
    assert output(Endpoint.CHAT, False, [error.encode()]) is None
    assert output(Endpoint.RESPONSES, False, [error.encode()]) is None
    assert output(Endpoint.CHAT, False, [b'{"choices": [']) is None
    assert output(Endpoint.COMPLETIONS, True, [b"data: {not json\n\n"]) is None
    # A streamed error has no text: regression, it was kept as one empty choice.
    assert output(Endpoint.RESPONSES, True, sse({"type": "error", "message": "x"})) is None


def test_indexes_that_are_not_an_engine_s_skip_their_event_instead_of_failing() -> None:
    good = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}]}
    odd = [{"choices": [{"index": None, "delta": {"content": "x"}}]},
           {"choices": [{"index": "0", "delta": {"content": "x"}}]},
           {"choices": [{"index": 10**9, "delta": {"content": "x"}}]},
           delta(0, tool_calls=[{"index": -1, "function": {"name": "f"}}]),
           delta(0, tool_calls=[{"index": 10**9, "function": {"name": "f"}}]),
           {"choices": "not a list"}, ["not", "an", "event"]]
    assert output(Endpoint.CHAT, True, sse(good, *odd)) == [  # type: ignore[arg-type]
        {"index": 0, "text": "ok", "finish_reason": None}]
