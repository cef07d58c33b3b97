"""EC2 instance metadata (IMDSv2): a session token from a PUT, then GETs that carry it.

The launch template requires IMDSv2, so plain GETs would be refused. Timeouts are short:
off EC2 nothing answers, and the agent must not stall on it. A token lives six hours; one
that expired or was refused (401) is fetched again once per read. A path that is not there
(404: a tag not exposed, no spot notice) reads as None, as does any failure to reach the
service: callers treat "not known" and "not said" alike and ask again on their next round.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import urllib3

IMDS_URL = "http://169.254.169.254"
TOKEN_TTL_S = 21600
_TOKEN_MARGIN_S = 60.0  # fetch a new token a minute before the old one expires


class Imds:
    """Reads `/latest/<path>` with a cached session token (blocking: call on a thread)."""

    def __init__(self, base_url: str = IMDS_URL, timeout_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._base = base_url.rstrip("/")
        self._clock = clock
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout_s),
                                         retries=False, maxsize=1)
        self._token: tuple[str, float] | None = None  # (token, expires at)

    def close(self) -> None:
        self._http.clear()

    def available(self) -> bool:
        """Whether the service hands out a session token (off EC2: no, after one timeout)."""
        return self._session_token() is not None

    def get(self, path: str) -> str | None:
        """The text at `path` (e.g. "meta-data/instance-id"), or None."""
        for _ in range(2):  # a refused token is fetched again once
            token = self._session_token()
            if token is None:
                return None
            try:
                resp = self._http.request("GET", f"{self._base}/latest/{path}",
                                          headers={"x-aws-ec2-metadata-token": token})
            except urllib3.exceptions.HTTPError:
                return None
            if resp.status == 401:
                self._token = None
                continue
            return resp.data.decode().strip() if resp.status == 200 else None
        return None

    def _session_token(self) -> str | None:
        now = self._clock()
        if self._token is not None and now < self._token[1]:
            return self._token[0]
        try:
            resp = self._http.request("PUT", f"{self._base}/latest/api/token", headers={
                "x-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
        except urllib3.exceptions.HTTPError:
            return None
        if resp.status != 200:
            return None
        self._token = (resp.data.decode(), now + TOKEN_TTL_S - _TOKEN_MARGIN_S)
        return self._token[0]
