"""The per-request access log: one JSON line per request, buffered.

Going through `logging` cost about 30 us of CPU per request (record creation,
handler locks, a write and flush per line), an eighth of the router's whole
budget. This writer formats each line with one `json.dumps` and appends it to
a buffer that is written out every `flush_interval_s` or once it holds
`max_buffer_bytes`, like nginx's `access_log ... buffer=`. The price: a crash
loses at most the last interval's lines. Lines have the same shape as the
rest of the process's JSON logs (ts, level, logger, msg, fields), and carry
key ids only, never keys.

It is on when the `llmfleet.access` logger is enabled for INFO, so
`LLMFLEET_LOG_LEVEL=WARNING` turns it off.

A line that cannot be written (a full disk, a closed pipe) is dropped and
counted, never kept: the flush runs inside request accounting, and a write
that raises there turned every request into a 500 while `/ready` said 200.
Serving matters more than its log; the count shows what was lost.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

from prometheus_client import Counter

from server.periodic import Periodic

LOGGER_NAME = "llmfleet.access"
log = logging.getLogger(__name__)


class AccessLog:
    def __init__(self, stream: TextIO | None = None, *, flush_interval_s: float = 0.5,
                 max_buffer_bytes: int = 64 * 1024, dropped: Counter | None = None) -> None:
        self.enabled = logging.getLogger(LOGGER_NAME).isEnabledFor(logging.INFO)
        self._stream = stream
        self._dropped = dropped
        self.dropped_total = 0
        self._failing = False
        self._max = max_buffer_bytes
        self._lines: list[str] = []
        self._size = 0
        self._flusher = Periodic("access-log-flush", flush_interval_s, self._scheduled_flush)
        self._second = -1
        self._stamp = ""

    def _timestamp(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:  # strftime once a second, not once a request
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(now * 1000) % 1000:03d}Z"

    def record(self, fields: dict[str, object]) -> None:
        line = json.dumps({"ts": self._timestamp(), "level": "info",
                           "logger": LOGGER_NAME, "msg": "request", **fields},
                          default=str, separators=(", ", ": "))
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= self._max:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        stream = self._stream or sys.stderr
        lines = len(self._lines)
        try:
            stream.write("\n".join(self._lines) + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self._drop(lines, exc)
        else:
            if self._failing:
                self._failing = False
                log.warning("the access log is written again")
        finally:
            self._lines.clear()
            self._size = 0

    def _drop(self, lines: int, exc: Exception) -> None:
        self.dropped_total += lines
        if self._dropped is not None:
            self._dropped.inc(lines)
        if not self._failing:  # once per outage, not once per flush
            self._failing = True
            log.error("the access log cannot be written (%s); dropping its lines, counted in "
                      "llmfleet_access_log_dropped_lines_total", exc)

    async def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
        self.flush()

    async def _scheduled_flush(self) -> None:
        self.flush()
