"""API keys: hashed storage, key ids, files."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.auth import KeyStore, digest, load_keys_file
from server.errors import AuthenticationFailed


def test_named_plain_and_hashed_keys(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# team keys\nalice:sk-alice\n\nbob:sha256:{digest('sk-bob')}\n")
    store = KeyStore.from_settings(["sk-bare"], keys_file, allow_anonymous=False)
    assert store.authenticate("Bearer sk-alice") == "alice"
    assert store.authenticate("bearer sk-bob") == "bob"
    assert store.authenticate("Bearer sk-bare") == digest("sk-bare")[:12]


@pytest.mark.parametrize("header", [None, "", "sk-alice", "Basic sk-alice", "Bearer ",
                                    "Bearer sk-alicE", "Bearer sk-alice2"])
def test_missing_or_wrong_keys_are_401(header: str | None) -> None:
    store = KeyStore.from_settings(["alice:sk-alice"], None, allow_anonymous=False)
    with pytest.raises(AuthenticationFailed) as info:
        store.authenticate(header)
    assert info.value.status == 401


def test_only_digests_are_kept_in_memory() -> None:
    store = KeyStore.from_settings(["alice:sk-alice-secret"], None, allow_anonymous=False)
    assert "sk-alice-secret" not in repr(vars(store))


def test_no_keys_refuses_to_start_unless_anonymous_is_explicit() -> None:
    with pytest.raises(ValueError, match="no API keys"):
        KeyStore.from_settings([], None, allow_anonymous=False)
    store = KeyStore.from_settings([], None, allow_anonymous=True)
    assert store.authenticate(None) == "anonymous"


def test_bad_digest_in_keys_file_is_reported(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("carol:sha256:not-hex\n")
    with pytest.raises(ValueError, match="carol"):
        load_keys_file(keys_file)


def test_a_name_with_an_empty_key_is_refused(tmp_path: Path) -> None:
    """Regression: the line `alice:` made an empty key that anyone could present."""
    keys_file = tmp_path / "keys"
    keys_file.write_text("bob:sk-bob\nalice:\n")
    with pytest.raises(ValueError, match=r"line 2: key 'alice' is empty"):
        load_keys_file(keys_file)


@pytest.mark.parametrize("line", ["sk-abc123:def456", "sk-proj-9f:secretpart",
                                  "has space:key", ":key"])
def test_an_unnamed_key_with_a_colon_is_refused_without_echoing_it(
        tmp_path: Path, line: str) -> None:
    """Regression: `sk-abc:def` was read as key `def` named `sk-abc`, and the key's first
    half was logged as its id with every request."""
    keys_file = tmp_path / "keys"
    keys_file.write_text(line + "\n")
    with pytest.raises(ValueError, match="must be written name:key") as info:
        load_keys_file(keys_file)
    prefix = line.split(":")[0]
    assert not prefix or prefix not in str(info.value).replace(str(keys_file), "")
