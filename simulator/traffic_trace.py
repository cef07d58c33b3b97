"""Trace files: the arrivals a simulation replays, read from and written to disk.

This module owns `Arrival`, the two file formats a trace comes in and the bounds on
reading them. The format is told from the content, never the extension:

- **CSV** with a header row: the arrival time as `arrival_s` (seconds from the start,
  kept as written) or `timestamp` (ISO 8601, any UTC offset, none meaning UTC; made
  relative to the earliest row), then `prompt_tokens` and `output_tokens`, each a whole
  number >= 1. Header names are matched without case or surrounding spaces, other
  columns are ignored, and with both time columns `arrival_s` wins. This is the contract
  of issue 17 that other tools write to; `write_trace` writes it with `arrival_s`.
- **The router's JSON access log** (`server/accesslog.py`): one JSON object per line,
  recognised by a first non-blank line that starts with `{`. The line is written when a
  request ends, stamped `ts` (ISO 8601 UTC, milliseconds) with the request's `latency_s`,
  so it arrived at `ts - latency_s`, a millisecond-accurate figure made relative to the
  earliest request. Lines of other loggers (the router's stderr mixes them in) are passed
  over. Requests without both token counts, or with zero of either (refused, failed before
  the engine answered, cancelled before the first token), have nothing to replay: they
  are skipped and counted in `LoadedTrace.skipped`, which `read_trace` logs as a warning.
  A cancelled request's output is what the engine produced, not what was asked.

Rows are returned sorted by time (stably). A trace with no arrivals is refused: replaying
nothing is always a mistake. Reading is bounded so that a wrong file fails in seconds
rather than exhausting memory: at most `MAX_TRACE_BYTES` on disk, `MAX_TRACE_ROWS` rows
(about 250 MB of arrivals; a day at 20 requests/s) and `MAX_LINE_CHARS` a line.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import TextIO

MAX_TRACE_BYTES = 1 << 30
MAX_TRACE_ROWS = 2_000_000
MAX_LINE_CHARS = 64 * 1024
CSV_HEADER = ("arrival_s", "prompt_tokens", "output_tokens")
ACCESS_LOGGER = "llmfleet.access"  # server.accesslog.LOGGER_NAME: the simulator may not import it

log = logging.getLogger(__name__)
_Row = tuple[float, int, int]


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request of a trace: when it arrives and how many tokens it reads and writes."""

    at_s: float  # seconds from the trace's start, ascending in a trace
    prompt_tokens: int  # >= 1
    output_tokens: int  # >= 1


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file, the line and what is wrong."""


@dataclass(frozen=True, slots=True)
class LoadedTrace:
    """A trace as read, with what reading it left out."""

    arrivals: list[Arrival]
    format: str  # "csv" or "access-log"
    skipped: int  # access-log requests without token counts to replay


def read_trace(path: Path) -> list[Arrival]:
    """The arrivals in a trace file, sorted by time; logs a warning when requests were skipped.

    Raises:
        TraceError: the file is unreadable, too large, empty or has a bad line.
    """
    loaded = load_trace(path)
    if loaded.skipped:
        log.warning("skipped %d requests without token counts in %s", loaded.skipped, path)
    return loaded.arrivals


def load_trace(path: Path, *, max_bytes: int = MAX_TRACE_BYTES,
               max_rows: int = MAX_TRACE_ROWS) -> LoadedTrace:
    """Like `read_trace`, with the format, the skipped count and adjustable bounds.

    Raises:
        TraceError: the file is unreadable, over `max_bytes` or `max_rows`, holds no
            arrivals, or has a bad line (named).
    """
    _check_size(path, max_bytes)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            lines = _Lines(handle, path)
            return _parse(lines, path, max_rows)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text ({exc.reason})") from exc


def write_trace(arrivals: Sequence[Arrival], path: Path) -> None:
    """Write `arrivals` as a CSV trace with `arrival_s` (exact: floats as Python's repr).

    Raises:
        OSError: the file cannot be written.
    """
    with path.open("w", encoding="utf-8", newline="") as handle:
        write_csv(arrivals, handle)


def write_csv(arrivals: Iterable[Arrival], handle: TextIO) -> None:
    """The CSV trace of `arrivals` onto an open text stream."""
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows((a.at_s, a.prompt_tokens, a.output_tokens) for a in arrivals)


class _Lines:
    """A file's lines, counted, none longer than MAX_LINE_CHARS (a line is read whole)."""

    def __init__(self, handle: TextIO, path: Path) -> None:
        self._handle = handle
        self._path = path
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self._handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        self.number += 1
        if len(line) > MAX_LINE_CHARS:
            raise TraceError(f"{self._path}:{self.number}: line longer than "
                             f"{MAX_LINE_CHARS} characters; is this a trace?")
        return line

    def where(self) -> str:
        return f"{self._path}:{self.number}"


def _check_size(path: Path, max_bytes: int) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc.strerror})") from exc
    if size > max_bytes:
        raise TraceError(f"{path}: {size} bytes is over the {max_bytes}-byte limit on a "
                         "trace; cut it into parts")


def _parse(lines: _Lines, path: Path, max_rows: int) -> LoadedTrace:
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise TraceError(f"{path}: the trace is empty")
    if first.lstrip().startswith("{"):
        rows, skipped = _access_rows(itertools.chain([first], lines), lines, max_rows)
        return _loaded(rows, "access-log", skipped, path, relative=True)
    columns = _Columns.from_header(first, lines.where())
    rows = _csv_rows(columns, lines, max_rows)
    return _loaded(rows, "csv", 0, path, relative=columns.timestamp)


def _loaded(rows: list[_Row], kind: str, skipped: int, path: Path, *,
            relative: bool) -> LoadedTrace:
    if not rows:
        raise TraceError(f"{path}: the trace holds no arrivals"
                         + (f" ({skipped} skipped: no token counts)" if skipped else ""))
    rows.sort(key=itemgetter(0))
    origin = rows[0][0] if relative else 0.0
    arrivals = [Arrival(at - origin, prompt, output) for at, prompt, output in rows]
    return LoadedTrace(arrivals, kind, skipped)


def _check_rows(count: int, max_rows: int, where: str) -> None:
    if count >= max_rows:
        raise TraceError(f"{where}: more than {max_rows} rows, the limit on a trace; "
                         "cut it into parts")


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where a CSV trace's three fields are, and how its time reads."""

    time: int
    prompt: int
    output: int
    timestamp: bool

    @classmethod
    def from_header(cls, line: str, where: str) -> _Columns:
        names = [name.strip().lower() for name in next(csv.reader([line]), [])]
        time_name = "arrival_s" if "arrival_s" in names else "timestamp"
        missing = [n for n in (time_name, "prompt_tokens", "output_tokens") if n not in names]
        if missing:
            raise TraceError(f"{where}: the header lacks {', '.join(missing)}; a trace needs "
                             "arrival_s or timestamp, prompt_tokens and output_tokens")
        return cls(names.index(time_name), names.index("prompt_tokens"),
                   names.index("output_tokens"), time_name == "timestamp")

    def row(self, record: list[str], where: str) -> _Row:
        needed = max(self.time, self.prompt, self.output) + 1
        if len(record) < needed:
            raise TraceError(f"{where}: {len(record)} fields, the header needs {needed}")
        text = record[self.time]
        at = _iso_seconds(text, where) if self.timestamp else _seconds(text, where)
        return (at, _tokens(record[self.prompt], "prompt_tokens", where),
                _tokens(record[self.output], "output_tokens", where))


def _csv_rows(columns: _Columns, lines: _Lines, max_rows: int) -> list[_Row]:
    rows: list[_Row] = []
    try:
        for record in csv.reader(lines, strict=True):
            if any(field.strip() for field in record):
                _check_rows(len(rows), max_rows, lines.where())
                rows.append(columns.row(record, lines.where()))
    except csv.Error as exc:
        raise TraceError(f"{lines.where()}: not CSV ({exc})") from exc
    return rows


def _access_rows(entries: Iterable[str], lines: _Lines,
                 max_rows: int) -> tuple[list[_Row], int]:
    rows: list[_Row] = []
    seen = 0
    for line in entries:
        entry = _json_object(line, lines.where()) if line.strip() else None
        if entry is None or entry.get("logger") != ACCESS_LOGGER:
            continue
        _check_rows(seen, max_rows, lines.where())
        seen += 1
        row = _access_row(entry, lines.where())
        if row is not None:
            rows.append(row)
    return rows, seen - len(rows)


def _json_object(line: str, where: str) -> dict[str, object]:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{where}: not JSON ({exc.msg}); an access log has one object "
                         "a line") from exc
    if not isinstance(entry, dict):
        raise TraceError(f"{where}: expected a JSON object, found {type(entry).__name__}")
    return entry


def _access_row(entry: dict[str, object], where: str) -> _Row | None:
    """The arrival an access-log line records, or None for a request without counts."""
    prompt = _logged_count(entry.get("prompt_tokens"), "prompt_tokens", where)
    output = _logged_count(entry.get("completion_tokens"), "completion_tokens", where)
    stamp = entry.get("ts")
    if not isinstance(stamp, str):
        raise TraceError(f"{where}: an access-log line needs its ts string")
    arrived = _iso_seconds(stamp, where) - _latency(entry.get("latency_s"), where)
    if prompt is None or output is None:
        return None
    return arrived, prompt, output


def _latency(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 <= value < math.inf:
        raise TraceError(f"{where}: latency_s must be a number >= 0, found {value!r}")
    return float(value)


def _logged_count(value: object, name: str, where: str) -> int | None:
    """A logged token count; None where there is nothing to replay (null or zero)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TraceError(f"{where}: {name} must be a whole number >= 0 or null, "
                         f"found {value!r}")
    return value or None


def _tokens(text: str, name: str, where: str) -> int:
    try:
        value = int(text.strip())
    except ValueError as exc:
        raise TraceError(f"{where}: {name} {text!r} is not a whole number") from exc
    if value < 1:
        raise TraceError(f"{where}: {name} must be at least 1, found {value}")
    return value


def _seconds(text: str, where: str) -> float:
    try:
        value = float(text.strip())
    except ValueError as exc:
        raise TraceError(f"{where}: arrival_s {text!r} is not a number") from exc
    if not 0 <= value < math.inf:
        raise TraceError(f"{where}: arrival_s must be a finite number >= 0, found {text!r}")
    return value


def _iso_seconds(text: str, where: str) -> float:
    """Seconds since the epoch of an ISO 8601 time; one without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise TraceError(f"{where}: timestamp {text!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
