"""Open-loop replay: send each request of a trace at its own time, whatever came before.

A closed-loop load test (`loadtest.sweep`) waits for an answer before sending more, so
a slow server slows the load down; real users do not wait for each other. Replay sends
every request at its arrival time (seconds from the start), each on its own task, and
measures it as the load tests do (`loadtest.stream`): time to the first text, end to
end, tokens from `usage`. A prompt is given as token ids (the completions API takes
them), drawn at random so that the prompt has exactly the trace's length and shares no
prefix an engine could cache; `ignore_eos` makes the answer exactly its length.
This is the real-engine side of the simulator's fidelity checks.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from loadtest.stream import Outcome, ResponseError
from loadtest.sweep import Target, stream_completion

FIRST_TOKEN_ID = 10  # past the special tokens a vocabulary may start with
TOKEN_IDS = 1000  # prompts draw ids below this: ordinary tokens in every vocabulary
MAX_IN_FLIGHT = 4096  # connections the replay may hold open at once


@dataclass(frozen=True, slots=True)
class Timed:
    """A request of the trace: when to send it and its lengths."""

    at_s: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Replayed:
    """What one request measured; times in seconds from the replay's start."""

    request: Timed
    sent_s: float  # when it really left (the loop may be late under load)
    outcome: Outcome | None  # None: it failed
    error: str = ""

    @property
    def ttft_s(self) -> float | None:
        """Seconds from the trace's arrival time to the first text."""
        if self.outcome is None or self.outcome.ttft_s is None:
            return None
        return self.sent_s - self.request.at_s + self.outcome.ttft_s

    @property
    def e2e_s(self) -> float | None:
        if self.outcome is None:
            return None
        return self.sent_s - self.request.at_s + self.outcome.e2e_s

    @property
    def finished_s(self) -> float | None:
        return None if self.outcome is None else self.sent_s + self.outcome.e2e_s


def token_prompt(tokens: int, vocab_size: int, rng: random.Random) -> list[int]:
    """`tokens` random token ids below `vocab_size`, none of the first few (special)."""
    return [rng.randrange(FIRST_TOKEN_ID, vocab_size) for _ in range(tokens)]


def body(model: str, prompt: list[int], output_tokens: int) -> dict[str, object]:
    return {"model": model, "prompt": prompt, "max_tokens": output_tokens, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": True}


async def send(client: httpx.AsyncClient, payload: dict[str, object]) -> Outcome:
    """One streamed completion, measured from now.

    Raises:
        httpx.HTTPError, ResponseError: it failed.
    """
    return await stream_completion(client, payload, time.perf_counter())


async def replay(target: Target, model: str, trace: Sequence[Timed], *,
                 vocab_size: int = TOKEN_IDS, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None,
                 start: float | None = None) -> list[Replayed]:
    """Send every request at its time; one result each, in the trace's order. The
    trace's 0 s is `start` (a `time.perf_counter()` reading, to share it with whatever
    runs beside the replay), else the moment the client is ready.

    An answer shorter than asked (an engine whose context could not hold it) counts as
    failed, as in the plan search.
    """
    rng = random.Random(seed)
    prompts = [token_prompt(r.prompt_tokens, vocab_size, rng) for r in trace]
    results: list[Replayed | None] = [None] * len(trace)
    done = 0

    async def one(index: int, client: httpx.AsyncClient, start: float) -> None:
        nonlocal done
        request = trace[index]
        await asyncio.sleep(max(0.0, start + request.at_s - time.perf_counter()))
        sent_s = time.perf_counter() - start
        try:
            outcome = await send(client, body(model, prompts[index], request.output_tokens))
            if outcome.completion_tokens < request.output_tokens:
                raise ResponseError(f"output cut short: {outcome.completion_tokens} of "
                                    f"{request.output_tokens} tokens")
            results[index] = Replayed(request, sent_s, outcome)
        except (httpx.HTTPError, ResponseError) as exc:
            results[index] = Replayed(request, sent_s, None, f"{type(exc).__name__}: {exc}")
        done += 1
        if progress:
            progress(done, len(trace))

    async with target.client(MAX_IN_FLIGHT) as client:
        origin = time.perf_counter() if start is None else start
        await asyncio.gather(*(one(i, client, origin) for i in range(len(trace))))
    return [r for r in results if r is not None]
