"""API-key authentication.

Keys are kept only as SHA-256 digests, so a memory dump or a leaked keys file
of digests does not reveal usable keys. A presented key is hashed and looked
up by digest, then confirmed with `hmac.compare_digest`: the lookup's timing
depends only on the digest, which tells an attacker nothing about any valid
key. Each key has a short id (a name from the keys file, else a digest
prefix) used in logs and rate limits; the key itself is never logged.

Keys file format, one per line, `#` comments allowed:
    name:sk-plaintext-key
    name:sha256:<64 hex digits>
    sk-plaintext-key            (id = digest prefix)
    name:sk-plaintext-key weight=4

`weight=` (a number from 0.01 to 1000, default 1) is the key's share of the router's queue
when engines are full (`server.fairqueue`): a key of weight 4 gets four times the slots of a
key of weight 1 while both wait.

A name is an identifier (letters, digits, `_.@-`, up to 64, not starting with
`sk-`); a key with a `:` in it must be named. Otherwise `sk-abc:def` would be
read as the key `def` named `sk-abc`, and the key's first half would appear
in every log line. An empty key (`alice:`) is refused. Errors name the line,
never its text.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from server.errors import AuthenticationFailed

ANONYMOUS = "anonymous"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


MIN_WEIGHT, MAX_WEIGHT = 0.01, 1000.0


@dataclass(frozen=True, slots=True)
class KeyEntry:
    key_id: str
    sha256: str
    weight: float = 1.0


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
# A line: the key, then any `setting=value` words after whitespace.
_SETTINGS = re.compile(r"(.*?)((?:\s+[a-z]+=\S*)*)\s*", re.DOTALL)


def _parse_line(line: str, where: str) -> KeyEntry:
    """Raises ValueError saying `where` (a line number), never the line's text."""
    found = _SETTINGS.fullmatch(line)
    assert found is not None  # the pattern matches any line
    entry = _parse_key(found.group(1), where)
    if any(c.isspace() for c in found.group(1)):  # e.g. "Weight=4", "weight = 4", a comment
        raise ValueError(f"{where}: a key holds no whitespace; what follows it can only be "
                         f"weight=<number from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}>")
    for setting in found.group(2).split():
        name, _, value = setting.partition("=")
        try:
            weight = float(value) if name == "weight" else None
        except ValueError:
            weight = None
        if weight is None or not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            raise ValueError(f"{where}: after the key, only weight=<number from {MIN_WEIGHT:g} "
                             f"to {MAX_WEIGHT:g}> is understood")
        entry = KeyEntry(entry.key_id, entry.sha256, weight)
    return entry


def _parse_key(line: str, where: str) -> KeyEntry:
    name, sep, rest = line.partition(":")
    if not sep:
        return KeyEntry(digest(line)[:12], digest(line))
    if not _NAME.fullmatch(name) or name.lower().startswith("sk-"):
        raise ValueError(f"{where}: the text before the first ':' is not a key name; a key "
                         "that contains ':' must be written name:key")
    if not rest.strip():
        raise ValueError(f"{where}: key {name!r} is empty")
    if rest.startswith("sha256:"):
        hexdigest = rest.removeprefix("sha256:").lower()
        if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise ValueError(f"{where}: key {name!r}: sha256 digest must be 64 hex digits")
        return KeyEntry(name, hexdigest)
    return KeyEntry(name, digest(rest))


def load_keys_file(path: Path) -> list[KeyEntry]:
    entries = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            entries.append(_parse_line(line, f"{path}, line {number}"))
    return entries


class KeyStore:
    """Maps presented bearer tokens to key ids."""

    def __init__(self, entries: list[KeyEntry], allow_anonymous: bool = False) -> None:
        self._by_digest = {e.sha256: e for e in entries}
        self._weights = {e.key_id: e.weight for e in entries}  # the last line of a name wins
        self.allow_anonymous = allow_anonymous

    @classmethod
    def from_settings(cls, keys: list[str], keys_file: Path | None,
                      allow_anonymous: bool) -> KeyStore:
        entries = [_parse_line(k, f"api_keys entry {i}") for i, k in enumerate(keys, 1)]
        if keys_file is not None:
            entries += load_keys_file(keys_file)
        if not entries and not allow_anonymous:
            raise ValueError("no API keys configured: set LLMFLEET_API_KEYS or "
                             "LLMFLEET_API_KEYS_FILE, or LLMFLEET_ALLOW_ANONYMOUS=true")
        return cls(entries, allow_anonymous)

    @property
    def enabled(self) -> bool:
        return bool(self._by_digest)

    def authenticate(self, authorization: str | None) -> str:
        """Return the key id for an `Authorization` header value.

        Raises:
            AuthenticationFailed: no bearer token, or one that matches no key.
        """
        if not self._by_digest and self.allow_anonymous:
            return ANONYMOUS
        if not authorization or not authorization[:7].lower() == "bearer ":
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer <key>'")
        presented = digest(authorization[7:].strip())
        entry = self._by_digest.get(presented)
        if entry is None or not hmac.compare_digest(entry.sha256, presented):
            raise AuthenticationFailed("invalid API key")
        return entry.key_id

    def weight(self, key_id: str | None) -> float:
        """The key's share of the queue (1 unless the keys say otherwise)."""
        return self._weights.get(key_id or "", 1.0)


def is_loopback(host: str | None) -> bool:
    """Whether a peer address is this machine's loopback (not spoofable from outside)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def guard_operator_view(keys: KeyStore, protect: bool | None, request: Request) -> None:
    """Ask for a key on an operator's page (`/metrics`, `/console/fleet`).

    `protect` None (the default) asks every client that is not on loopback: behind
    the load balancer every request comes from another address.

    Raises:
        AuthenticationFailed: a key was needed and none valid was sent.
    """
    client = request.client.host if request.client else None
    if protect or (protect is None and not is_loopback(client)):
        keys.authenticate(request.headers.get("authorization"))
