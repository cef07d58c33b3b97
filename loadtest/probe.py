"""Probe an OpenAI-compatible endpoint for its engine's step times (`llmfleet profile`).

The client cannot see the engine's steps, but it can send requests whose steps it
knows the make-up of, on an otherwise idle engine:

- a lone prompt of P tokens asking for one token is one step that prefills P tokens:
  its end-to-end time is that step's time (with the request's way in and out);
- a burst of c equal requests sent together is admitted together (while c prompts fit
  the step's token budget and c is within `max_num_seqs`), then the c sequences decode
  in lockstep, one token each per step. The same burst asking for N1 and then N2 tokens
  takes N2 - N1 more decode steps of c sequences: the difference of the two end-to-end
  times over N2 - N1 is that step's time, at the bursts' mean context.

Only end-to-end times are used, never the gaps between streamed chunks: under load
vLLM's API server merges the tokens a client has not read yet into one chunk, so chunk
times say when the server wrote, not when the engine stepped (with 16 streams on this
machine's CPU engine, gaps read 0.1 ms for steps of 3 ms). Each configuration is
measured `repeats` times, interleaved, and its median kept, so one slow moment does not
make a sample. Each reading becomes a `StepSample` for `simulator.profile.fit`.
Requests are sent as in the replay (`loadtest.replay`): random token ids, exact
lengths, `ignore_eos`. A few requests first warm the engine up (vLLM compiles or caches
kernels for new shapes).
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmfleet.core.wire.profile import EngineLimits, StepSample
from loadtest.replay import TOKEN_IDS, body, send, token_prompt
from loadtest.stream import ResponseError
from loadtest.sweep import EndpointError, Target

CACHE_INFO = "vllm:cache_config_info"
KV_BLOCK_TOKENS = 16  # vLLM's default block: a sequence holds whole blocks of the cache


@dataclass(frozen=True)
class ProbePlan:
    """Which steps to measure, and how often."""

    prefill_lengths: tuple[int, ...] = (16, 64, 256, 512, 1024, 2048)
    batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    contexts: tuple[int, ...] = (16, 1024)  # prompt lengths of the bursts (within budget)
    short_output: int = 8
    long_output: int = 72  # 64 steps between the two: a difference well above the jitter
    repeats: int = 3
    warmup: int = 4

    def prefills(self, limits: EngineLimits) -> list[int]:
        """Prompt lengths a lone request can prefill in one step, within its context."""
        cap = min(limits.max_num_batched_tokens,
                  (limits.max_model_len or limits.max_num_batched_tokens + 1) - 1)
        return sorted({min(p, cap) for p in self.prefill_lengths if p >= 1})

    def bursts(self, limits: EngineLimits) -> list[tuple[int, int]]:
        """(requests, prompt tokens) of each burst: all admitted in one step, all in the
        cache (each sequence's prompt and output, in whole blocks) and the context at once."""
        room = (limits.max_model_len or limits.kv_tokens) - self.long_output
        found = set()
        for c in self.batches:
            if c > limits.max_num_seqs:
                continue
            for context in self.contexts:
                prompt = min(context, limits.max_num_batched_tokens // c, room)
                blocks = math.ceil((prompt + self.long_output) / KV_BLOCK_TOKENS)
                if prompt >= 1 and c * blocks * KV_BLOCK_TOKENS <= limits.kv_tokens:
                    found.add((c, prompt))
        return sorted(found)

    def size(self, limits: EngineLimits) -> int:
        """Requests the probe sends, warm-up included (for progress)."""
        return self.warmup + self.repeats * (
            len(self.prefills(limits)) + 2 * sum(c for c, _ in self.bursts(limits)))


async def engine_limits(target: Target, max_num_seqs: int, max_num_batched_tokens: int, *,
                        kv_tokens: int | None = None) -> EngineLimits:
    """The engine's limits: the scheduler's as given (a client cannot see them), the KV
    cache's size from vLLM's `/metrics` (`cache_config_info`: blocks times block size)
    unless given, the context length from `/v1/models` where listed.

    Raises:
        EndpointError: unreachable, or no KV cache size given or published.
    """
    async with target.client(2) as client:
        try:
            listing = await client.get("/v1/models")
            models = listing.json().get("data", []) if listing.status_code == 200 else []
            scraped = None if kv_tokens else await client.get("/metrics")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise EndpointError(f"cannot read {target.url}'s limits: {exc}") from exc
    metrics = scraped.text if scraped is not None and scraped.status_code == 200 else ""
    kv = kv_tokens or published_kv_tokens(metrics)
    if kv is None:
        raise EndpointError(f"{target.url}/metrics publishes no vllm:cache_config_info: "
                            "give the KV cache size in tokens (--kv-tokens)")
    lengths = [m["max_model_len"] for m in models
               if isinstance(m, dict) and isinstance(m.get("max_model_len"), int)]
    return EngineLimits(max_num_seqs=max_num_seqs,
                        max_num_batched_tokens=max_num_batched_tokens, kv_tokens=kv,
                        max_model_len=lengths[0] if lengths else None)


def published_kv_tokens(metrics: str) -> int | None:
    """KV cache tokens from vLLM's Prometheus text: `num_gpu_blocks` x `block_size` of
    its `cache_config_info` (the blocks are the cache's, CPU or GPU); None if absent."""
    try:
        families = list(text_string_to_metric_families(metrics))
    except ValueError:  # not Prometheus text
        return None
    for family in families:
        for sample in family.samples if family.name == CACHE_INFO else ():
            try:
                return int(sample.labels["num_gpu_blocks"]) * int(sample.labels["block_size"])
            except (KeyError, ValueError):
                continue
    return None


async def probe(target: Target, model: str, limits: EngineLimits,
                plan: ProbePlan | None = None, *, seed: int = 0,
                progress: Callable[[str], None] | None = None) -> list[StepSample]:
    """Measure the endpoint's steps; a sample per prompt length and per burst.

    Raises:
        EndpointError: a probe request failed (the engine must be idle and healthy).
    """
    plan = plan or ProbePlan()
    if plan.long_output <= plan.short_output:
        raise ValueError("long_output must exceed short_output")
    rng = random.Random(seed)
    prefills: dict[int, list[float]] = {p: [] for p in plan.prefills(limits)}
    bursts: dict[tuple[int, int, int], list[float]] = {}
    async with target.client(max(limits.max_num_seqs, 8)) as client:

        async def one(prompt: int, output: int) -> float:
            return await _timed(client, model, token_prompt(prompt, TOKEN_IDS, rng), output)

        for _ in range(plan.warmup):
            await one(plan.prefill_lengths[0], plan.long_output)
        for round_ in range(plan.repeats):
            for prompt, times in prefills.items():
                times.append(await one(prompt, 1))
            for count, prompt in plan.bursts(limits):
                for output in (plan.short_output, plan.long_output):
                    bursts.setdefault((count, prompt, output), []).extend(
                        await _together(one(prompt, output) for _ in range(count)))
            if progress:
                progress(f"probe round {round_ + 1} of {plan.repeats} done")
    return samples_of(plan, limits, prefills, bursts)


async def _together(requests: Iterable[Coroutine[Any, Any, float]]) -> list[float]:
    """Run the requests at once; when one fails, cancel the others and raise its error.

    Raises:
        EndpointError: the first failure.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(r) for r in requests]
    except* EndpointError as failed:
        raise failed.exceptions[0] from None
    return [t.result() for t in tasks]


async def _timed(client: httpx.AsyncClient, model: str, prompt: list[int], output: int) -> float:
    """One probe request's end-to-end seconds.

    Raises:
        EndpointError: it failed, or answered fewer tokens than asked.
    """
    try:
        outcome = await send(client, body(model, prompt, output))
    except (httpx.HTTPError, ResponseError) as exc:
        raise EndpointError(f"probe request ({len(prompt)} prompt tokens, {output} out) "
                            f"failed: {exc}") from exc
    if outcome.completion_tokens < output:
        raise EndpointError(f"probe request ({len(prompt)} prompt tokens) answered "
                            f"{outcome.completion_tokens} of {output} tokens")
    return outcome.e2e_s


def samples_of(plan: ProbePlan, limits: EngineLimits, prefills: dict[int, list[float]],
               bursts: dict[tuple[int, int, int], list[float]]) -> list[StepSample]:
    """The step samples the probe's end-to-end times say: one per prompt length (the
    median of a lone request's time), one per burst (the medians' difference per step).

    Raises:
        EndpointError: a burst that took no longer for more tokens.
    """
    samples = [StepSample(decode_seqs=0, decode_context=0, prefill_tokens=prompt,
                          prefill_context=prompt / 2, seconds=statistics.median(times),
                          source=f"prefill {prompt}")
               for prompt, times in prefills.items()]
    steps = plan.long_output - plan.short_output
    for count, prompt in plan.bursts(limits):
        extra = (statistics.median(bursts[count, prompt, plan.long_output])
                 - statistics.median(bursts[count, prompt, plan.short_output]))
        if extra <= 0:
            raise EndpointError(f"a burst of {count} took no longer for {steps} more tokens: "
                                "the engine was not idle, or ignores max_tokens")
        samples.append(StepSample(
            decode_seqs=count, prefill_tokens=0, prefill_context=0, seconds=extra / steps,
            decode_context=prompt + (plan.short_output + plan.long_output) / 2,
            source=f"decode {count}x{prompt}"))
    return samples
