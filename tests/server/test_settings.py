"""Router settings from the environment and TOML files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import RouterSettings


def test_lists_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFLEET_BACKENDS", "http://a:8001/, http://b:8001")
    monkeypatch.setenv("LLMFLEET_API_KEYS", '["k1", "k2"]')
    settings = RouterSettings.load()
    assert settings.backends == ["http://a:8001", "http://b:8001"]
    assert settings.api_keys == ["k1", "k2"]


def test_toml_file_with_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "router.toml"
    config.write_text('backends = ["http://small:8001", "http://large:8001"]\n'
                      "rate_limit_rpm = 10\n"
                      '[[length_rules]]\nmodel = "small"\nmax_prompt_tokens = 512\n'
                      '[[length_rules]]\nmodel = "large"\n')
    monkeypatch.setenv("LLMFLEET_RATE_LIMIT_RPM", "99")
    settings = RouterSettings.load(config)
    assert settings.backends == ["http://small:8001", "http://large:8001"]
    assert settings.rate_limit_rpm == 99
    assert [r.model for r in settings.length_rules] == ["small", "large"]


def test_config_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "router.toml"
    config.write_text('backends = ["http://x:1"]\n')
    monkeypatch.setenv("LLMFLEET_CONFIG_FILE", str(config))
    assert RouterSettings.load().backends == ["http://x:1"]


@pytest.mark.parametrize("field", [{"backends": ["ftp://x"]}, {"backends": ["https://x"]},
                                   {"max_queue": -1},
                                   {"unknown_setting": 1}, {"policy": "random"}])
def test_bad_values_are_refused(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RouterSettings(**field)  # type: ignore[arg-type]
