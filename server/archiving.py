"""The router's archive (opt-in): a record of every request its engines served, kept in S3.

Which requests: every one sent to one of this router's own engines on a route with tokens
(chat, completions, responses, the pooling routes), answered, failed or left by its client.
A request sent on to another pool's router is that router's to record, so each is kept
once, by the router that served it, whatever header its client sent. Refusals before an
engine (auth, limits, bad input) are in the access log, not here.

What of them (`ArchiveContent`):
- `metadata`: when, the request and engine ids, the key's id (never the key), the model,
  route, status, tokens, time to first token, latency, how `auto` chose;
- `full`: also the request's body as the engine got it and the generated text of each
  choice (with a chat answer's tool calls), assembled from the answer or its stream: a
  stream up to `MAX_ANSWER_BYTES`, an answer up to the 1 MiB the router holds whole (past
  either, `output` is null and `output_omitted` says why).
  Pooling routes keep their request, never their vectors.
Never written: the `Authorization` header, the engine key, anything from the environment.

Off the request path: `Accounting.finish` hands `record()` the exchange, which costs a
dict and a list append; a background task every `flush_s` turns what waits into JSON lines
(parsing bodies and streams there, in a worker thread) and writes them to the spool on
disk (`llmfleet.core.archive`), sealing a segment by age or size, at once while the router
drains. What waits in memory is bounded (`max_pending_bytes`; past it, records are dropped
and counted). With a bucket set, the router also sends the spool to S3 itself; on an
instance the agent sends it (`agent/archive.py`) and the router holds no AWS credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prometheus_client import Counter, Gauge

from llmfleet.core.archive import Spool, Uploader
from server.outcome import Outcome
from server.periodic import Periodic
from server.protocol import Endpoint

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 4 << 20  # an answer or stream kept for the archive, at most


class ArchiveContent(StrEnum):
    METADATA = "metadata"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A record before it is written: its fields, and in `full` the bodies to read."""

    fields: dict[str, object]
    endpoint: Endpoint
    stream: bool
    request: bytes | None
    answer: list[bytes] | None
    size: int


@dataclass(frozen=True)
class ArchiveMetrics:
    records: Counter  # by result: spooled, dropped
    spool_bytes: Gauge
    segments_sent: Counter


class Archive:
    """Takes records from accounting, writes them to the spool, and (with an uploader)
    sends the spool to S3."""

    def __init__(self, spool: Spool, content: ArchiveContent, metrics: ArchiveMetrics, *,
                 draining: Callable[[], bool], uploader: Uploader | None = None,
                 flush_s: float = 1.0, upload_s: float = 5.0, segment_bytes: int = 8 << 20,
                 segment_age_s: float = 60.0, max_pending_bytes: int = 64 << 20,
                 pool: str | None = None) -> None:
        self.spool, self.content, self._metrics = spool, content, metrics
        self._draining, self._uploader = draining, uploader
        self._segment_bytes, self._segment_age_s = segment_bytes, segment_age_s
        self._max_pending = max_pending_bytes
        self._pool = pool
        self._waiting: list[_Waiting] = []
        self._waiting_bytes = 0
        self._writer = Periodic("archive-write", flush_s, self.flush)
        self._sender = None if uploader is None else Periodic("archive-send", upload_s,
                                                              self.send)
        self._dropped = metrics.records.labels("dropped")
        self._spooled = metrics.records.labels("spooled")
        self._writing_bytes = 0  # handed to the writer thread, not yet on disk
        self._writing: asyncio.Future[None] | None = None  # the writer thread's batch

    def keeps_answer(self, endpoint: Endpoint) -> bool:
        """Whether an exchange on `endpoint` collects its answer's bytes for the archive."""
        return self.content is ArchiveContent.FULL and endpoint.generates

    def record(self, fields: dict[str, object], endpoint: Endpoint, stream: bool,
               request: bytes, answer: list[bytes] | None) -> None:
        """Queue one finished request's record; dropped (and counted) past the bound."""
        full = self.content is ArchiveContent.FULL
        size = 512 + (len(request) + sum(map(len, answer or ())) if full else 0)
        if self._waiting_bytes + size > self._max_pending:
            self._dropped.inc()
            return
        self._waiting.append(_Waiting(fields, endpoint, stream, request if full else None,
                                      answer if full else None, size))
        self._waiting_bytes += size

    def unsealed_bytes(self) -> int:
        """What is not yet in a sealed segment: waiting in memory, and the current segment.
        A drain is over only once this is 0 (the sender then has every byte on disk)."""
        return self._waiting_bytes + self._writing_bytes + self.spool.current_bytes()

    async def start(self) -> None:
        self._writer.start()
        if self._sender is not None:
            self._sender.start()

    async def stop(self) -> None:
        """Write what waits (the spool keeps it for the next start or the agent)."""
        await self._writer.stop()
        if self._sender is not None:
            await self._sender.stop()
        # Stopping the writer's task does not stop its thread: let the batch it holds
        # reach the disk before the last one (measured: the process exited under it, and
        # the records of the last second were lost).
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        await self.flush()

    async def flush(self) -> None:
        """Write what waits to the spool, then seal the segment if it is due (at once
        while draining: the instance is leaving)."""
        waiting, self._waiting = self._waiting, []
        self._writing_bytes, self._waiting_bytes = self._waiting_bytes, 0
        writing = self._writing = asyncio.ensure_future(
            asyncio.to_thread(self._write, waiting, self._draining()))
        writing.add_done_callback(self._written)
        await asyncio.shield(writing)

    def _written(self, writing: asyncio.Future[None]) -> None:
        self._writing_bytes = 0
        if self._writing is writing:
            self._writing = None

    def _write(self, waiting: list[_Waiting], hurry: bool) -> None:
        if waiting:
            lines = [line for item in waiting for line in self._lines(item)]
            written = self.spool.write(lines)
            self._spooled.inc(written)
            self._dropped.inc(len(waiting) - written)
        if hurry:
            self.spool.seal_if_due(0, 0.0)
        else:
            self.spool.seal_if_due(self._segment_bytes, self._segment_age_s)
        self._metrics.spool_bytes.set(self.spool.size())

    def _lines(self, item: _Waiting) -> Iterator[bytes]:
        record = dict(item.fields)
        if self._pool is not None:
            record["pool"] = self._pool
        if item.request is not None:
            record["request"] = _json_or_text(item.request)
            if item.endpoint.generates:
                if item.answer is None:
                    record["output"] = None
                    record["output_omitted"] = "answer too large to keep"
                else:
                    record["output"] = output(item.endpoint, item.stream, item.answer)
        yield json.dumps(record, separators=(",", ":"), ensure_ascii=False,
                         default=str).encode() + b"\n"

    async def send(self) -> None:
        assert self._uploader is not None
        sent = await asyncio.to_thread(self._uploader.round)
        self._metrics.segments_sent.inc(sent)


def fields(*, request_id: str, engine_request_id: str, key_id: str | None, model: str,
           endpoint: Endpoint, outcome: Outcome, stream: bool, prompt_tokens: int | None,
           completion_tokens: int | None, ttft_s: float | None, latency_s: float,
           route: str | None, retried: bool) -> dict[str, object]:
    """A record's metadata: what `metadata` keeps, and `full` keeps beside the bodies."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return {"ts": f"{stamp}.{int(now * 1000) % 1000:03d}Z", "request_id": request_id,
            "engine_request_id": engine_request_id, "key_id": key_id, "model": model,
            "endpoint": endpoint.value, "status": outcome.logged_status, "stream": stream,
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "ttft_s": None if ttft_s is None else round(ttft_s, 6),
            "latency_s": round(latency_s, 6), "route": route, "retried": retried}


def _json_or_text(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


# --- The generated text ------------------------------------------------------------------

def output(endpoint: Endpoint, stream: bool, answer: list[bytes]) -> list[dict[str, Any]] | None:
    """Each choice's text (and a chat answer's tool calls, finish reason), from an answer's
    body or its stream's events; None when it holds no answer (an error)."""
    body = b"".join(answer)
    if not stream:
        try:
            return _from_answer(endpoint, json.loads(body))
        except (ValueError, AttributeError, TypeError):
            return None
    choices: dict[int, dict[str, Any]] = {}
    for event in _events(body):
        try:
            _add_event(endpoint, event, choices)
        except (AttributeError, TypeError):
            continue
    return [choices[i] for i in sorted(choices)] or None


def _events(body: bytes) -> list[Any]:
    """A stream's JSON events, parsed in one call as a list (measured: half the CPU of a
    call an event); one by one, skipping those that do not parse, when one does not."""
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


def _from_answer(endpoint: Endpoint, answer: dict[str, Any]) -> list[dict[str, Any]] | None:
    if endpoint is Endpoint.RESPONSES:
        texts = [part.get("text", "") for item in answer.get("output") or []
                 if item.get("type") == "message" for part in item.get("content") or []
                 if part.get("type") == "output_text"]
        return [{"index": 0, "text": "".join(texts), "finish_reason": answer.get("status")}]
    if "choices" not in answer:
        return None
    found = []
    for choice in answer["choices"]:
        message = choice.get("message") or {}
        item = {"index": choice.get("index", 0),
                "text": choice.get("text") if endpoint is Endpoint.COMPLETIONS
                else message.get("content"),
                "finish_reason": choice.get("finish_reason")}
        if message.get("tool_calls"):
            item["tool_calls"] = [{"name": c.get("function", {}).get("name"),
                                   "arguments": c.get("function", {}).get("arguments")}
                                  for c in message["tool_calls"]]
        found.append(item)
    return found


def _add_event(endpoint: Endpoint, event: dict[str, Any],
               choices: dict[int, dict[str, Any]]) -> None:
    if endpoint is Endpoint.RESPONSES:
        choice = choices.setdefault(0, {"index": 0, "text": "", "finish_reason": None})
        if event.get("type") == "response.output_text.delta":
            choice["text"] += event.get("delta") or ""
        elif event.get("type") in ("response.completed", "response.incomplete",
                                   "response.failed"):
            choice["finish_reason"] = (event.get("response") or {}).get("status")
        return
    for part in event.get("choices") or []:
        index = part.get("index", 0)
        choice = choices.setdefault(index, {"index": index, "text": "", "finish_reason": None})
        delta = part.get("delta") or {}
        choice["text"] += (part.get("text") if endpoint is Endpoint.COMPLETIONS
                           else delta.get("content")) or ""
        for call in delta.get("tool_calls") or []:
            calls = choice.setdefault("tool_calls", [])
            at = call.get("index", 0)
            while len(calls) <= at:
                calls.append({"name": None, "arguments": ""})
            function = call.get("function") or {}
            calls[at]["name"] = function.get("name") or calls[at]["name"]
            calls[at]["arguments"] += function.get("arguments") or ""
        if part.get("finish_reason"):
            choice["finish_reason"] = part["finish_reason"]
