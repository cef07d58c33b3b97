"""Fetching `/metrics` pages, bounded in size and in time.

A scraped page is outside input: an engine that misbehaves, or anything else
listening on its port, must not be able to make the agent read without end.
A page is read in chunks of at most 64 KiB and abandoned once it passes
`max_bytes` (vLLM's page is tens of KB; the default allows 16 MiB). urllib3's
`Timeout(total=...)` bounds connecting and each wait for data, but not a page
that keeps trickling in a few bytes at a time; a deadline checked between
reads does, so a fetch takes at most about twice `timeout_s`. An abandoned
response's connection is closed rather than returned to the pool with data
still unread on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import urllib3

from llmfleet.core.prometheus import ScrapeError

READ_CHUNK_BYTES = 64 * 1024


class PageFetcher:
    def __init__(self, timeout_s: float, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._http = urllib3.PoolManager(maxsize=2, timeout=urllib3.Timeout(total=timeout_s))

    def close(self) -> None:
        self._http.clear()

    def get(self, url: str, headers: dict[str, str]) -> str:
        """The page at `url`, as text (blocking: call it on a worker thread).

        Raises:
            urllib3.exceptions.HTTPError: unreachable, timed out, or not a 200.
            ScrapeError: larger than `max_bytes`, or still arriving after `timeout_s`.
        """
        deadline = self._clock() + self._timeout_s
        resp = self._http.request("GET", url, headers=headers, retries=False,
                                  preload_content=False)
        complete = False
        try:
            if resp.status != 200:
                raise urllib3.exceptions.HTTPError(f"HTTP {resp.status}")
            body = bytearray()
            while chunk := resp.read1(READ_CHUNK_BYTES):
                body += chunk
                if len(body) > self._max_bytes:
                    raise ScrapeError(f"page larger than {self._max_bytes} bytes")
                if self._clock() > deadline:
                    raise ScrapeError(f"page still arriving after {self._timeout_s} s")
            complete = True
            return body.decode("utf-8", errors="replace")
        finally:
            if not complete:
                resp.close()  # unread data on the connection: it must not be reused
            resp.release_conn()
