"""Ports for the processes the project starts itself, and its one-off blocking calls.

The local stack, the plan search and the benchmarks start engines and servers
that bind their own port; they ask here for one that was free a moment ago.
Blocking calls use urllib3 (docs/development.md, "HTTP clients"); a one-off call
(a child's health probe, the load test's preflight) gets its pool here, with the
rules they share: a bound on connecting and on each read, no retries (the caller
decides whether to ask again), redirects followed as a browser would, up to 10.
"""

from __future__ import annotations

import socket

import urllib3


def free_port() -> int:
    """A port that was free a moment ago (for child processes that bind themselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def blocking_pool(timeout_s: float) -> urllib3.PoolManager:
    """A pool for one-off calls: `timeout_s` to connect and for each read, no retries.

    Close it with `clear()` when done.
    """
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
        retries=urllib3.Retry(total=None, connect=0, read=0, other=0, redirect=10))
