"""What an engine generated, for the archive (`server/archiving.py`): each choice's text,
finish reason and tool calls, read from a whole answer or from a stream's events.

Runs in the archive's writer thread, never on the event loop. An answer that does not parse
(an error body, a stream cut short) gives what could be read, or None; never an exception.
Kept: chat's `content` and tool calls, completions' `text`, a response's `output_text` and
function calls. Not kept: reasoning text (`reasoning_content`, a response's reasoning
items), logprobs.
"""

from __future__ import annotations

import json
from typing import Any

from server.protocol import Endpoint

Choice = dict[str, Any]  # index, text, finish_reason, tool_calls: written as JSON as it is
# Indexes an engine may send: choices (`n`) and tool calls within one choice. Anything else is
# not an answer of ours: its event is skipped rather than trusted to size a list.
MAX_CHOICES = 1024
MAX_TOOL_CALLS = 256


def output(endpoint: Endpoint, stream: bool, answer: list[bytes]) -> list[Choice] | None:
    """Each choice of an answer's body, or of its stream's events; None when it holds no
    answer (an error)."""
    body = b"".join(answer)
    if not stream:
        try:
            return _from_answer(endpoint, json.loads(body))
        except (ValueError, AttributeError, TypeError):
            return None
    events = _events(body)
    if endpoint is Endpoint.RESPONSES:  # its last event carries the whole response
        ended = [e for e in events if isinstance(e, dict) and e.get("type") in _RESPONSE_ENDS
                 and isinstance(e.get("response"), dict)]
        if ended:
            try:
                return _from_answer(endpoint, ended[-1]["response"])
            except (AttributeError, TypeError):
                pass
    choices: dict[int, Choice] = {}
    for event in events:
        try:
            _add_event(endpoint, event, choices)
        except (AttributeError, TypeError, ValueError):
            continue
    return [choices[i] for i in sorted(choices)] or None


def _index(value: object, bound: int) -> int:
    """An index an engine sent, checked.

    Raises:
        ValueError: not a whole number in [0, bound).
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < bound:
        raise ValueError(f"index {value!r}")
    return value


def _events(body: bytes) -> list[Any]:
    """A stream's JSON events, parsed in one call as a list (measured: half the CPU of a
    call an event); one by one, skipping those that do not parse, when one does not (a
    stream cut short ends in half an event)."""
    lines = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: {")]
    try:
        events: list[Any] = json.loads(b"[" + b",".join(lines) + b"]")
        return events
    except ValueError:
        pass
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            continue
    return parsed


def _call(name: object, arguments: object) -> dict[str, object]:
    return {"name": name, "arguments": arguments}


def _from_answer(endpoint: Endpoint, answer: dict[str, Any]) -> list[Choice] | None:
    if endpoint is Endpoint.RESPONSES:
        if "output" not in answer:
            return None
        items = answer["output"] or []
        texts = [part.get("text") or "" for item in items if item.get("type") == "message"
                 for part in item.get("content") or [] if part.get("type") == "output_text"]
        choice: Choice = {"index": 0, "text": "".join(texts),
                          "finish_reason": answer.get("status")}
        calls = [_call(item.get("name"), item.get("arguments")) for item in items
                 if item.get("type") == "function_call"]
        if calls:
            choice["tool_calls"] = calls
        return [choice]
    if "choices" not in answer:
        return None
    found = []
    for part in answer["choices"]:
        message = part.get("message") or {}
        item: Choice = {"index": part.get("index", 0),
                        "text": part.get("text") if endpoint is Endpoint.COMPLETIONS
                        else message.get("content"),
                        "finish_reason": part.get("finish_reason")}
        if message.get("tool_calls"):
            item["tool_calls"] = [_call((c.get("function") or {}).get("name"),
                                        (c.get("function") or {}).get("arguments"))
                                  for c in message["tool_calls"]]
        found.append(item)
    return found


_RESPONSE_ENDS = frozenset(("response.completed", "response.incomplete", "response.failed"))


def _add_event(endpoint: Endpoint, event: dict[str, Any], choices: dict[int, Choice]) -> None:
    if endpoint is Endpoint.RESPONSES:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            choice = choices.setdefault(0, {"index": 0, "text": "", "finish_reason": None})
            choice["text"] += event.get("delta") or ""
        elif kind in _RESPONSE_ENDS and 0 in choices:
            choices[0]["finish_reason"] = (event.get("response") or {}).get("status")
        return
    for part in event.get("choices") or []:
        index = _index(part.get("index", 0), MAX_CHOICES)
        choice = choices.setdefault(index, {"index": index, "text": "", "finish_reason": None})
        delta = part.get("delta") or {}
        choice["text"] += (part.get("text") if endpoint is Endpoint.COMPLETIONS
                           else delta.get("content")) or ""
        for call in delta.get("tool_calls") or []:
            at = _index(call.get("index", 0), MAX_TOOL_CALLS)
            calls = choice.setdefault("tool_calls", [])
            while len(calls) <= at:
                calls.append(_call(None, ""))
            function = call.get("function") or {}
            calls[at]["name"] = function.get("name") or calls[at]["name"]
            calls[at]["arguments"] += function.get("arguments") or ""
        if part.get("finish_reason"):
            choice["finish_reason"] = part["finish_reason"]
