"""The backends file: the router's engines, read again while it runs.

`LLMFLEET_BACKENDS_FILE` names a file of engine URLs, one per line (blank lines and `#`
comments are skipped). The pool reads it at the start of every health round
(`health_interval_s`, `server.backends.BackendPool.register`): a URL that appears joins
the pool and serves once its health check passes; one that disappears drains: it gets no
new requests, those it holds run to their end, and then it leaves the pool. These are
a load balancer's target registration and deregistration, for a router in front of
several engines itself: the local fleet (`llmfleet.localfleet`), or engines that a
scheduler starts and stops.

Replace the file whole (write a new one beside it, then rename it over the old): a file
read half-written would drain the engines it does not list yet. A file that cannot be
read, is larger than `MAX_TARGETS_BYTES`, or lists a URL that is not plain `http://`
leaves the pool as it was, with one warning for each new problem; the router refuses to
start on such a file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from server.settings import plain_http

log = logging.getLogger(__name__)

MAX_TARGETS_BYTES = 64 * 1024  # a few hundred URLs; anything larger is not a target list


def write_targets(path: Path, urls: Sequence[str]) -> None:
    """Make `urls` the file's list, replacing it whole: a new file beside it, renamed over
    it, so that a reader never sees half of it."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text("".join(f"{url}\n" for url in urls))
    fresh.replace(path)


class TargetsError(ValueError):
    """The backends file cannot be used; the message says why, and where."""


def read_targets(path: Path) -> list[str]:
    """The URLs `path` lists, in order, each once.

    Raises:
        TargetsError: the file cannot be read, is too large, or lists a URL that is not a
            plain http:// URL.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_TARGETS_BYTES + 1)
    except OSError as exc:
        raise TargetsError(f"cannot read the backends file {path}: {exc.strerror}") from None
    if len(data) > MAX_TARGETS_BYTES:
        raise TargetsError(f"the backends file {path} is over {MAX_TARGETS_BYTES} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise TargetsError(f"the backends file {path} is not UTF-8 text") from None
    urls: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            url = plain_http(entry, "backend")
        except ValueError as exc:
            raise TargetsError(f"{path}, line {number}: {exc}") from None
        if url not in urls:
            urls.append(url)
    return urls


class TargetsFile:
    """Reads the backends file for the pool, warning once for each new problem."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._problem: str | None = None

    def read(self) -> list[str] | None:
        """The listed URLs, or None (logged once) where the file cannot be used now."""
        try:
            urls = read_targets(self.path)
        except TargetsError as exc:
            if str(exc) != self._problem:
                log.warning("%s; keeping the backends as they are", exc)
                self._problem = str(exc)
            return None
        if self._problem is not None:
            log.info("the backends file %s reads again", self.path)
            self._problem = None
        return urls
