"""JSON logging."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from llmfleet.core import logs


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_records_are_json_lines_with_fields(restore_root: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    logs.configure("INFO")
    logging.getLogger("t").info("hello %s", "x", extra={"fields": {"key_id": "k1"}})
    entry = json.loads(out.getvalue())
    assert (entry["msg"], entry["level"], entry["logger"], entry["key_id"]) == (
        "hello x", "info", "t", "k1")


def test_a_handler_configured_on_a_since_closed_stderr_still_works(
        restore_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a CLI run in-process under a test runner left the root handler on the
    runner's captured stderr; once that closed, any later flush raised ValueError."""
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    logs.configure("INFO")
    captured.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    for handler in logging.getLogger().handlers:
        handler.flush()
    logging.getLogger("t").warning("still here")
    assert "still here" in now.getvalue()
