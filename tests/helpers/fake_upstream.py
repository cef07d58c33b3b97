"""A small OpenAI-compatible upstream for faults a real engine cannot produce on demand.

Tests use it to make an engine die mid-stream, hang, answer 5xx, or split SSE
events across writes; the router benchmark uses it as an upstream that costs
almost nothing, so that the router's own overhead stands out. Its behaviour is
switched at run time through a shared `FakeControl`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MAX_FAKE_TOKENS = 500_000


class Mode(StrEnum):
    OK = "ok"
    STATUS = "status"  # answer `status` with an OpenAI error body
    HANG = "hang"  # never answer
    DIE_MIDSTREAM = "die_midstream"  # break the connection after `fail_after` events
    HANG_MIDSTREAM = "hang_midstream"  # stop sending after `fail_after` events


@dataclass
class FakeControl:
    models: tuple[str, ...] = ("fake-model",)
    mode: Mode = Mode.OK
    status: int = 500
    fail_after: int = 2
    chunk_delay_s: float = 0.0
    split_events: bool = False
    healthy: bool = True
    models_body: object = None  # answered by /v1/models instead of the listing, when set
    answer_bytes: int = 0  # pad a non-streamed answer's text to about this size
    requests: int = 0
    streams_started: int = 0
    streams_cancelled: int = 0
    streams_completed: int = 0
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)  # client ports: shows connection reuse


class EngineDied(Exception):
    """Raised inside a stream so uvicorn drops the connection mid-body."""


def _chunk(model: str, index: int, chat: bool, finish: str | None) -> bytes:
    if chat:
        delta = {"role": "assistant", "content": ""} if index < 0 else {"content": f" t{index}"}
        choice: dict[str, object] = {"index": 0, "delta": delta, "finish_reason": finish}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": f" t{index}", "finish_reason": finish}
        kind = "text_completion"
    payload = {"id": "fake-1", "object": kind, "created": int(time.time()), "model": model,
               "choices": [choice]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


class FakeEngine:
    """The fake engine's endpoints, reading their behaviour from `control`."""

    def __init__(self, control: FakeControl) -> None:
        self.control = control

    async def health(self, request: Request) -> Response:
        return Response(status_code=200 if self.control.healthy else 503)

    async def models(self, request: Request) -> JSONResponse:
        if self.control.models_body is not None:
            return JSONResponse(self.control.models_body)
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "fake"} for m in self.control.models]})

    async def complete(self, request: Request) -> Response:
        control = self.control
        payload = json.loads(await self._record(request))
        if control.mode is Mode.HANG:
            await asyncio.sleep(3600)
        if control.mode is Mode.STATUS:
            err = {"error": {"message": f"fake {control.status}", "type": "fake_error",
                             "param": None, "code": control.status}}
            return JSONResponse(err, status_code=control.status)
        chat = request.url.path.endswith("/chat/completions")
        # Capped: generated tests may ask for 10**18 tokens, and a real engine would refuse.
        n = min(int(payload.get("max_tokens") or 16), MAX_FAKE_TOKENS)
        if payload.get("stream"):
            include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            events = self._events(payload["model"], n, chat, include_usage)
            # Benchmarks running the fake in another process pace streams per request.
            delay = float(payload.get("fake_chunk_delay_s") or control.chunk_delay_s)
            # ... and may ask for several events per write (an engine under load batches).
            per_write = max(int(payload.get("fake_events_per_write") or 1), 1)
            if per_write > 1:
                events = [b"".join(events[i:i + per_write])
                          for i in range(0, len(events), per_write)]
            return StreamingResponse(self._stream(events, delay),
                                     media_type="text/event-stream")
        return JSONResponse(self._answer(payload["model"], n, chat, control.answer_bytes))

    @staticmethod
    def _answer(model: str, n: int, chat: bool, size: int) -> dict[str, object]:
        text = " ".join(f"t{i}" for i in range(n))
        text += " " * max(0, size - len(text))  # e.g. logprobs or n choices of a big answer
        choice: dict[str, object] = {"index": 0, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {"id": "fake-1", "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": model, "choices": [choice],
                "usage": _usage(7, n)}

    @staticmethod
    def _events(model: str, n: int, chat: bool, include_usage: bool) -> list[bytes]:
        events = [_chunk(model, -1, chat, None)] if chat else []
        events += [_chunk(model, i, chat, "length" if i == n - 1 else None) for i in range(n)]
        if include_usage:
            usage = {"id": "fake-1", "model": model, "choices": [], "usage": _usage(7, n)}
            events.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return events

    async def _stream(self, events: list[bytes], delay_s: float) -> AsyncIterator[bytes]:
        control = self.control
        control.streams_started += 1
        done = False
        try:
            for i, event in enumerate(events):
                if i == control.fail_after and control.mode is Mode.DIE_MIDSTREAM:
                    yield event[: len(event) // 2]  # half an event, then the connection drops
                    raise EngineDied("fake engine died mid-stream")
                if i == control.fail_after and control.mode is Mode.HANG_MIDSTREAM:
                    await asyncio.sleep(3600)
                if delay_s:
                    await asyncio.sleep(delay_s)
                if control.split_events:
                    yield event[:7]
                    await asyncio.sleep(0.001)
                    yield event[7:]
                else:
                    yield event
            done = True
            control.streams_completed += 1
        finally:
            if not done:
                control.streams_cancelled += 1


    async def _record(self, request: Request) -> bytes:
        """Count the request and keep its body, headers and client port; its body."""
        control = self.control
        body = await request.body()
        control.requests += 1
        control.bodies.append(body)
        control.headers.append(dict(request.headers))
        control.peers.append(request.client.port if request.client else 0)
        return body

    async def respond(self, request: Request) -> Response:
        """/v1/responses in vLLM's shapes: a response object, or its typed SSE events."""
        control = self.control
        payload = json.loads(await self._record(request))
        if control.mode is Mode.STATUS:
            return _error(control.status)
        n = min(int(payload.get("max_output_tokens") or 16), MAX_FAKE_TOKENS)
        model = payload.get("model") or self.control.models[0]
        done = _response(model, n, "completed")
        if not payload.get("stream"):
            return JSONResponse(done)
        events = [_typed("response.created", {"response": _response(model, 0, "in_progress")})]
        events += [_typed("response.output_text.delta", {"item_id": "msg-1", "output_index": 0,
                                                         "content_index": 0, "delta": f" t{i}"})
                   for i in range(n)]
        events.append(_typed("response.completed", {"response": done}))
        return StreamingResponse(self._stream(events, control.chunk_delay_s),
                                 media_type="text/event-stream")

    async def pool(self, request: Request) -> Response:
        """The pooling and tokenizer routes, each with the usage vLLM reports."""
        control = self.control
        payload = json.loads(await self._record(request))
        if control.mode is Mode.STATUS:
            return _error(control.status)
        model = payload.get("model") or control.models[0]
        path = request.url.path
        if path == "/tokenize":
            tokens = list(range(1, 1 + len(str(payload.get("prompt", "")).split())))
            return JSONResponse({"count": len(tokens), "max_model_len": 2048,
                                 "tokens": tokens})
        if path == "/detokenize":
            return JSONResponse({"prompt": " ".join(f"t{t}" for t in payload["tokens"])})
        inputs = payload.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = [{"object": "embedding", "index": i, "embedding": [0.5, -0.25, 0.125]}
                for i in range(len(items))]
        return JSONResponse({"id": "fake-1", "object": "list", "model": model, "data": data,
                             "usage": {"prompt_tokens": 5 * len(items),
                                       "total_tokens": 5 * len(items)}})


def _error(status: int) -> JSONResponse:
    return JSONResponse({"error": {"message": f"fake {status}", "type": "fake_error",
                                   "param": None, "code": status}}, status_code=status)


def _response(model: str, n: int, status: str) -> dict[str, object]:
    text = " ".join(f"t{i}" for i in range(n))
    return {"id": "resp-fake-1", "object": "response", "created_at": int(time.time()),
            "model": model, "status": status, "output": [{
                "type": "message", "id": "msg-1", "role": "assistant", "status": status,
                "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": None if status != "completed" else {
                "input_tokens": 7, "output_tokens": n, "total_tokens": 7 + n,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0}}}


def _typed(kind: str, fields: dict[str, object]) -> bytes:
    """An event of the Responses API's stream: its type on the event line and in the data."""
    data = json.dumps({"type": kind, **fields}, separators=(",", ":"))
    return f"event: {kind}\ndata: {data}\n\n".encode()


POOLING_PATHS = ("/v1/embeddings", "/score", "/v1/score", "/rerank", "/v1/rerank",
                 "/v2/rerank", "/pooling", "/classify", "/tokenize", "/detokenize")


def create_fake_upstream(control: FakeControl) -> Starlette:
    engine = FakeEngine(control)
    return Starlette(routes=[
        Route("/health", engine.health),
        Route("/v1/models", engine.models),
        Route("/v1/chat/completions", engine.complete, methods=["POST"]),
        Route("/v1/completions", engine.complete, methods=["POST"]),
        Route("/v1/responses", engine.respond, methods=["POST"]),
        *(Route(path, engine.pool, methods=["POST"]) for path in POOLING_PATHS),
    ])


def main() -> None:
    """Serve the fake engine on a port: `python -m tests.helpers.fake_upstream PORT`."""
    import sys

    import uvicorn

    uvicorn.run(create_fake_upstream(FakeControl()), host="127.0.0.1", port=int(sys.argv[1]),
                loop="uvloop", http="httptools", access_log=False, log_level="warning",
                backlog=4096)


if __name__ == "__main__":
    main()
