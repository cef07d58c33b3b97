"""Reading a streamed completion to its end through the official `openai` client."""

from __future__ import annotations

import time
from typing import NamedTuple

import openai


class StreamRead(NamedTuple):
    text: str
    finish: str | None  # the last finish reason the stream gave
    ended_at: float  # time.monotonic() when its last event was read


async def read_stream(client: openai.AsyncOpenAI, max_tokens: int,
                      model: str = "fake-model") -> StreamRead:
    """One streamed completion of `max_tokens`, read to its end."""
    text, finish = "", None
    stream = await client.completions.create(model=model, prompt="hi", max_tokens=max_tokens,
                                             stream=True)
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].text
            finish = chunk.choices[0].finish_reason or finish
    return StreamRead(text, finish, time.monotonic())
