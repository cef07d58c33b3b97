"""The router's archive (opt-in): a record of every request its engines served, kept in S3.

Which requests: every one sent to one of this router's own engines on a route with tokens
(chat, completions, responses, the pooling routes), answered, failed or left by its client.
A request sent on to another pool's router is that router's to record, so each is kept
once, by the router that served it, whatever header its client sent. Refusals before an
engine (auth, limits, bad input) are in the access log, not here.

What of them (`ArchiveContent`):
- `metadata`: when, the request and engine ids, the key's id (never the key), the model,
  route, status, tokens, time to first token, latency, how `auto` chose (`RecordMeta`);
- `full`: also the request's body as the engine got it and what was generated, each
  choice's text, finish reason and tool calls (`server.generated`), from the answer or its
  stream: a stream's first `MAX_ANSWER_BYTES` (past them, what they hold, with
  `output_truncated`), an answer up to the 1 MiB the router holds whole (past it, `output`
  is null and `output_omitted` says why). Pooling routes keep their request, never their
  vectors.
Never written: the `Authorization` header, the engine key, anything from the environment.

Off the request's event loop: `Accounting.finish` hands `record()` the exchange, which costs
a dataclass and a list append; a background task every `flush_s` turns what waits into JSON
lines (parsing bodies and streams there, in a worker thread: still this process's CPU) and
writes them to the spool on disk (`llmfleet.core.archive`), sealing a segment by age or
size, at once while the router drains. What waits in memory is bounded
(`max_pending_bytes`; past it, records are dropped and counted). With a bucket set, the
router also sends the spool to S3 itself; on an instance the agent sends it
(`agent/archive.py`) and the router holds no AWS credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import Counter, Gauge

from llmfleet.core.archive import Spool, Uploader
from server.generated import output
from server.periodic import Periodic
from server.protocol import Endpoint

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 4 << 20  # of a stream's events, kept for the archive
RECORD_BYTES = 512  # what a record's metadata is taken to weigh in memory


class ArchiveContent(StrEnum):
    METADATA = "metadata"
    FULL = "full"


def _now() -> str:
    now = time.time()
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(now))}.{int(now * 1000) % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class RecordMeta:
    """What `metadata` keeps of a request, and `full` keeps beside its bodies."""

    request_id: str
    engine_request_id: str
    key_id: str | None  # the key's name, never the key
    model: str
    endpoint: Endpoint
    status: int | str  # the HTTP status, or what happened ('cancelled')
    stream: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    ttft_s: float | None
    latency_s: float
    route: str | None  # how `auto` chose the model
    retried: bool
    ts: str = field(default_factory=_now)

    def fields(self) -> dict[str, object]:
        return {"ts": self.ts, "request_id": self.request_id,
                "engine_request_id": self.engine_request_id, "key_id": self.key_id,
                "model": self.model, "endpoint": self.endpoint.value, "status": self.status,
                "stream": self.stream, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 6),
                "latency_s": round(self.latency_s, 6), "route": self.route,
                "retried": self.retried}


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A record before it is written: its metadata, and in `full` the bodies to read."""

    meta: RecordMeta
    request: bytes | None
    answer: list[bytes] | None
    truncated: bool
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

    def record(self, meta: RecordMeta, request: bytes, answer: list[bytes] | None,
               truncated: bool = False) -> None:
        """Queue one finished request's record; dropped (and counted) past the bound.
        `answer` is what was kept of it (None: too large to keep); `truncated`, that a
        stream's events were kept up to MAX_ANSWER_BYTES only."""
        full = self.content is ArchiveContent.FULL
        size = RECORD_BYTES + ((len(request) + sum(map(len, answer or ()))) if full else 0)
        if self._waiting_bytes + size > self._max_pending:
            self._dropped.inc()
            return
        self._waiting.append(_Waiting(meta, request if full else None,
                                      answer if full else None, truncated, size))
        self._waiting_bytes += size

    def unsealed_bytes(self) -> int:
        """What is not yet in a sealed segment: waiting in memory, being written, and the
        current segment. A drain is over only once this is 0 (the sender then has every
        byte on disk)."""
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
        self.spool.release()

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
        if self._writing is writing:
            self._writing, self._writing_bytes = None, 0

    def _write(self, waiting: list[_Waiting], hurry: bool) -> None:
        if waiting:
            written = self.spool.write([self._line(item) for item in waiting])
            self._spooled.inc(written)
            self._dropped.inc(len(waiting) - written)
        if hurry:
            self.spool.seal_if_due(0, 0.0)
        else:
            self.spool.seal_if_due(self._segment_bytes, self._segment_age_s)
        self._metrics.spool_bytes.set(self.spool.size())

    def _line(self, item: _Waiting) -> bytes:
        try:
            return self._full_line(item)
        except Exception as exc:  # the edge of one record: the batch must still be written
            log.warning("archive: a record's bodies could not be read (%s); kept without them",
                        type(exc).__name__)
            record = self._meta(item)
            record["output_omitted"] = "the answer could not be read"
            return _dumps(record)

    def _meta(self, item: _Waiting) -> dict[str, object]:
        record = item.meta.fields()
        if self._pool is not None:
            record["pool"] = self._pool
        return record

    def _full_line(self, item: _Waiting) -> bytes:
        record = self._meta(item)
        if item.request is not None:
            record["request"] = _json_or_text(item.request)
            if item.meta.endpoint.generates:
                if item.answer is None:
                    record["output"] = None
                    record["output_omitted"] = "answer over 1 MiB, relayed without keeping it"
                else:
                    record["output"] = output(item.meta.endpoint, item.meta.stream,
                                              item.answer)
                    if item.truncated:
                        record["output_truncated"] = True
        return _dumps(record)

    async def send(self) -> None:
        assert self._uploader is not None
        sent = await asyncio.to_thread(self._uploader.round)
        self._metrics.segments_sent.inc(sent)


def _dumps(record: dict[str, object]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode() + b"\n"


def _json_or_text(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
