"""Reading trace files: the CSV contract, the router's access log, bad lines and bounds."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest

from llmfleet.core.logs import JsonFormatter
from simulator.traffic import Arrival, TraceError, load_trace, read_trace
from simulator.traffic_trace import MAX_LINE_CHARS
from tests.helpers.access_log import LoggedRequest, access_log_text

T0 = 1_700_000_000.0  # an epoch second, 2023-11-14T22:13:20Z


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_arrival_s_is_read_as_written_whatever_the_column_order_and_extras(
        tmp_path: Path) -> None:
    path = write(tmp_path, " Output_Tokens ,model,arrival_s,prompt_tokens\n"
                           "7,a,0.5,100\n9,b,2.25,30\n")
    assert read_trace(path) == [Arrival(0.5, 100, 7), Arrival(2.25, 30, 9)]


def test_timestamps_in_any_offset_are_seconds_from_the_earliest_row(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,prompt_tokens,output_tokens\n"
                           "2024-05-10T12:00:01.500+02:00,10,1\n"  # 10:00:01.5 UTC
                           "2024-05-10T10:00:00Z,20,2\n"
                           "2024-05-10 10:00:03,30,3\n")  # no offset: UTC
    arrivals = read_trace(path)
    assert [a.prompt_tokens for a in arrivals] == [20, 10, 30]
    assert [a.at_s for a in arrivals] == pytest.approx([0.0, 1.5, 3.0])


def test_unsorted_rows_are_sorted_on_read_and_ties_keep_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n"
                           "3,1,1\n1,2,2\n3,3,3\n0,4,4\n")
    assert [a.prompt_tokens for a in read_trace(path)] == [4, 2, 1, 3]


def test_arrival_s_wins_over_timestamp_and_blank_lines_pass(tmp_path: Path) -> None:
    path = write(tmp_path, "\n\ntimestamp,arrival_s,prompt_tokens,output_tokens\n\n"
                           "not-a-time,4,5,6\n\n")
    assert read_trace(path) == [Arrival(4.0, 5, 6)]


def test_a_byte_order_mark_written_by_a_spreadsheet_does_not_hide_the_header(
        tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfarrival_s,prompt_tokens,output_tokens\r\n1,2,3\r\n")
    assert read_trace(path) == [Arrival(1.0, 2, 3)]


@pytest.mark.parametrize(("row", "message"), [
    ("x,1,1", "arrival_s 'x' is not a number"),
    ("-1,1,1", "arrival_s must be a finite number >= 0"),
    ("nan,1,1", "arrival_s must be a finite number >= 0"),
    ("inf,1,1", "arrival_s must be a finite number >= 0"),
    ("1,0,1", "prompt_tokens must be at least 1"),
    ("1,1,0", "output_tokens must be at least 1"),
    ("1,1.5,1", "prompt_tokens '1.5' is not a whole number"),
    ("1,,1", "prompt_tokens '' is not a whole number"),
    ("1,1", "2 fields, the header needs 3"),
    ('1,"1"x,1', "not CSV"),
    ('1,"1,1', "not CSV"),
])
def test_a_bad_row_is_named_by_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path, f"arrival_s,prompt_tokens,output_tokens\n0,1,1\n{row}\n")
    with pytest.raises(TraceError, match=rf"trace\.csv:3: {re.escape(message)}"):
        read_trace(path)


def test_a_bad_timestamp_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,prompt_tokens,output_tokens\n"
                           "2024-05-10T10:00:00Z,1,1\nyesterday,1,1\n")
    with pytest.raises(TraceError, match=r"trace\.csv:3: timestamp 'yesterday' is not ISO 8601"):
        read_trace(path)


def test_a_header_without_the_contract_columns_says_what_it_needs(tmp_path: Path) -> None:
    path = write(tmp_path, "\ntime,prompt_tokens\n1,2\n")
    with pytest.raises(TraceError, match=r"trace\.csv:2: the header lacks timestamp, "
                                         "output_tokens; a trace needs arrival_s"):
        read_trace(path)


@pytest.mark.parametrize(("text", "message"), [
    ("", "the trace is empty"),
    ("\n \n", "the trace is empty"),
    ("arrival_s,prompt_tokens,output_tokens\n", "holds no arrivals"),
])
def test_a_trace_with_nothing_to_replay_is_refused(tmp_path: Path, text: str,
                                                   message: str) -> None:
    with pytest.raises(TraceError, match=message):
        read_trace(write(tmp_path, text))


def test_a_missing_or_undecodable_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read the trace"):
        read_trace(tmp_path / "absent.csv")
    with pytest.raises(TraceError, match="cannot read the trace"):
        read_trace(tmp_path)  # a directory: it has a size, but no lines
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"arrival_s,prompt_tokens,output_tokens\n1,2,3\n\xe9\n")
    with pytest.raises(TraceError, match=r"latin\.csv: not UTF-8 text"):
        read_trace(latin)


def test_files_over_the_size_or_row_limit_are_refused_before_filling_memory(
        tmp_path: Path) -> None:
    path = write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n1,1,1\n2,2,2\n3,3,3\n")
    assert len(load_trace(path, max_rows=3).arrivals) == 3
    with pytest.raises(TraceError, match=r"trace\.csv:4: more than 2 rows, the limit"):
        load_trace(path, max_rows=2)
    with pytest.raises(TraceError, match="bytes is over the 40-byte limit"):
        load_trace(path, max_bytes=40)


def test_a_file_of_one_endless_line_is_refused_at_the_line_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "arrival_s," + "x" * MAX_LINE_CHARS)
    with pytest.raises(TraceError, match=r"trace\.csv:1: line longer than"):
        read_trace(path)


def other_logger_line(message: str) -> str:
    """A line of the router's other logging, formatted by the project's JSON formatter."""
    record = logging.LogRecord("llmfleet.router", logging.INFO, __file__, 1, message, None,
                               None)
    return JsonFormatter().format(record) + "\n"


def test_an_access_log_arrival_is_its_end_time_less_its_latency(tmp_path: Path) -> None:
    text = access_log_text([LoggedRequest(T0 + 10.0, 4.0, 100, 20),  # arrived T0 + 6
                            LoggedRequest(T0 + 10.5, 10.5, 50, 5)])  # arrived T0: first
    path = write(tmp_path, other_logger_line("router up") + text, name="router.log")
    loaded = load_trace(path)
    assert (loaded.format, loaded.skipped) == ("access-log", 0)
    assert [(a.prompt_tokens, a.output_tokens) for a in loaded.arrivals] == [(50, 5), (100, 20)]
    assert [a.at_s for a in loaded.arrivals] == pytest.approx([0.0, 6.0], abs=2e-3)  # ms stamps


def test_failed_and_refused_requests_are_skipped_counted_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = access_log_text([
        LoggedRequest(T0 + 1, 0.5, 10, 3),
        LoggedRequest(T0 + 2, 0.01, refused=True),  # a 429: no token fields at all
        LoggedRequest(T0 + 3, 30.0, 10, None),  # the engine timed out
        LoggedRequest(T0 + 4, 0.2, 10, 0),  # cancelled before the first token
        LoggedRequest(T0 + 5, 1.0, 20, 4)])
    path = write(tmp_path, text, name="access.jsonl")
    assert load_trace(path).skipped == 3
    with caplog.at_level(logging.WARNING, logger="simulator.traffic_trace"):
        arrivals = read_trace(path)
    assert [a.prompt_tokens for a in arrivals] == [10, 20]
    assert "skipped 3 requests without token counts" in caplog.text


def test_an_access_log_of_failures_only_is_refused_with_the_count(tmp_path: Path) -> None:
    path = write(tmp_path, access_log_text([LoggedRequest(T0, 1.0, refused=True)]))
    with pytest.raises(TraceError, match=r"holds no arrivals \(1 skipped: no token counts\)"):
        read_trace(path)


def test_the_format_is_told_by_content_not_by_extension(tmp_path: Path) -> None:
    log_as_csv = write(tmp_path, access_log_text([LoggedRequest(T0, 1.0, 3, 4)]), "a.csv")
    csv_as_json = write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n1,3,4\n", "a.json")
    assert load_trace(log_as_csv).format == "access-log"
    assert load_trace(csv_as_json).format == "csv"


@pytest.mark.parametrize(("change", "message"), [
    (("", "{not json"), "not JSON"),
    (("", "[1, 2]"), "expected a JSON object, found list"),
    (('"prompt_tokens": 10', '"prompt_tokens": "10"'), "prompt_tokens must be a whole number"),
    (('"completion_tokens": 3', '"completion_tokens": -3'), "completion_tokens must be"),
    (('"completion_tokens": 3', '"completion_tokens": true'), "completion_tokens must be"),
    (('"latency_s": 1.0', '"latency_s": -1.0'), "latency_s must be a number >= 0"),
    (('"latency_s": 1.0', '"latency_s": "1"'), "latency_s must be a number >= 0"),
    (('"ts": "', '"at": "'), "needs its ts string"),
    (('"ts": "2023', '"ts": "x2023'), "is not ISO 8601"),
])
def test_a_bad_access_log_line_is_named_by_file_and_line(
        tmp_path: Path, change: tuple[str, str], message: str) -> None:
    good = access_log_text([LoggedRequest(T0, 1.0, 10, 3)])
    old, new = change
    bad = good.replace(old, new) if old else new + "\n"
    path = write(tmp_path, good + "\n" + bad, name="access.log")
    with pytest.raises(TraceError, match=rf"access\.log:3: .*{re.escape(message)}"):
        read_trace(path)


def test_the_access_log_helper_writes_what_the_router_writes() -> None:
    """Guard on the helper: its lines carry the fields the reader relies on."""
    line = io.StringIO(access_log_text([LoggedRequest(T0 + 0.25, 1.5, 10, 5)])).readline()
    assert line.startswith('{"ts": "2023-11-14T22:13:20.250Z", "level": "info", '
                           '"logger": "llmfleet.access"')
    assert '"prompt_tokens": 10, "completion_tokens": 5' in line and '"latency_s": 1.5' in line
