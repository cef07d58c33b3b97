"""Closed-loop concurrency levels against one endpoint, measured request by request.

The plan search needs an exact, repeatable load: N clients, each sending its
next streamed completion the moment the last one finished, until a fixed
number of requests is done. Requests ask for exactly `max_tokens` (`ignore_eos`),
so an answer cut short (a context too small for the request) counts as failed.
That is a few lines of asyncio and httpx, with no Locust process to start per
level; the requests, TTFT and TPOT are read exactly as the Locust users read
them (`loadtest.stream`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from loadtest.results import Recorder
from loadtest.stream import (
    Api,
    Outcome,
    ResponseError,
    StreamReader,
    listed_models,
    request_body,
)
from loadtest.workload import Workload


class EndpointError(RuntimeError):
    """The endpoint cannot be measured at all (unreachable, refused the key, lists no model)."""


@dataclass(frozen=True)
class RequestRow:
    """One finished request, for the per-request profile the sizing fits use."""

    concurrency: int
    prompt_tokens: int
    output_tokens: int
    ttft_s: float | None
    e2e_s: float


# An idle pooled connection is dropped after this long, before the server drops it: vLLM's
# API server (uvicorn) closes a connection idle for 5 s, and a request sent on it at that
# instant fails with a read error (httpx's own default is 5 s too, so the two raced).
KEEPALIVE_EXPIRY_S = 2.0


@dataclass
class Target:
    url: str
    api_key: str | None = None
    timeout_s: float = 600.0

    def client(self, connections: int) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.AsyncClient(
            base_url=self.url, headers=headers,
            timeout=httpx.Timeout(self.timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections,
                                keepalive_expiry=KEEPALIVE_EXPIRY_S))


async def first_model(target: Target) -> str:
    """The first model the endpoint lists.

    Raises:
        EndpointError: unreachable, an error status, or no models.
    """
    url = f"{target.url}/v1/models"
    async with target.client(1) as client:
        try:
            resp = await client.get("/v1/models")
        except httpx.HTTPError as exc:
            raise EndpointError(f"cannot reach {url}: {exc}") from exc
    try:
        return listed_models(url, resp.status_code, resp.content, "check the API key")[0]
    except ResponseError as exc:
        raise EndpointError(str(exc)) from exc


async def run_level(target: Target, model: str, workload: Workload, concurrency: int,
                    requests: int, seed: int = 0,
                    progress: Callable[[int], None] | None = None) -> tuple[Recorder,
                                                                          list[RequestRow]]:
    """Send `requests` streamed completions from `concurrency` clients; measure each."""
    rng = random.Random(seed)
    batch = [workload.sample(rng) for _ in range(requests)]
    recorder, rows = Recorder(), []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            body = request_body(batch[index], Api.COMPLETIONS, model, stream=True,
                                ignore_eos=True)
            sent_wall, sent = time.time(), time.perf_counter()
            try:
                outcome = await stream_completion(client, body, sent)
                if outcome.completion_tokens < batch[index].max_tokens:
                    # An engine whose context cannot hold the request shortens the answer
                    # (vLLM does); fast because it did less, it did not serve the workload.
                    raise ResponseError(f"output cut short: {outcome.completion_tokens} of "
                                        f"{batch[index].max_tokens} tokens")
            except (httpx.HTTPError, ResponseError):
                recorder.fail(sent_wall, time.time())
            else:
                recorder.add(outcome, sent_wall)
                rows.append(RequestRow(concurrency, outcome.prompt_tokens,
                                       outcome.completion_tokens, outcome.ttft_s,
                                       outcome.e2e_s))
            if progress:
                progress(recorder.requests + recorder.failures)

    async with target.client(concurrency) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return recorder, rows


async def stream_completion(client: httpx.AsyncClient, body: dict[str, object],
                            sent: float) -> Outcome:
    """One streamed completion, timed from `sent` (`time.perf_counter()`).

    Raises:
        httpx.HTTPError, ResponseError: it failed.
    """
    reader = StreamReader(Api.COMPLETIONS, sent)
    async with client.stream("POST", Api.COMPLETIONS.path, json=body) as resp:
        if resp.status_code != 200:
            await resp.aread()
            raise ResponseError(f"HTTP {resp.status_code}: {resp.text[:200]}")
        async for line in resp.aiter_lines():
            reader.line(line, time.perf_counter())
    return reader.outcome(time.perf_counter())
