"""Ports on the loopback interface for the processes the project starts itself.

The local stack, the plan search and the benchmarks start engines and servers
that bind their own port; they ask here for one that was free a moment ago.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port that was free a moment ago (for child processes that bind themselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
