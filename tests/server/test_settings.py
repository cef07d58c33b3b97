"""Router settings from the environment and TOML files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from llmfleet.core.invalid import problems
from server.settings import ConfigFileError, RouterSettings


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


def test_code_beats_the_environment_which_beats_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "router.toml"
    config.write_text('host = "file"\nport = 1\nlog_level = "DEBUG"\n'
                      "[score_weights]\nenergy = 3\n")
    monkeypatch.setenv("LLMFLEET_CONFIG_FILE", str(config))
    monkeypatch.setenv("LLMFLEET_HOST", "env")
    monkeypatch.setenv("LLMFLEET_PORT", "2")
    monkeypatch.setenv("LLMFLEET_SCORE_WEIGHTS", '{"accuracy": 2}')
    settings = RouterSettings.load(port=3)
    assert (settings.port, settings.host, settings.log_level) == (3, "env", "DEBUG")
    # A variable replaces the file's whole table; it is not merged key by key.
    assert (settings.score_weights.accuracy, settings.score_weights.energy) == (2, 1)


def test_the_named_file_beats_the_one_in_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "env.toml").write_text("port = 1\n")
    (tmp_path / "named.toml").write_text("port = 2\n")
    monkeypatch.setenv("LLMFLEET_CONFIG_FILE", str(tmp_path / "env.toml"))
    assert RouterSettings.load(tmp_path / "named.toml").port == 2


@pytest.mark.parametrize(("text", "message"), [
    (None, r"cannot read config file .*router\.toml: No such file"),
    ("backends = [\n", r"router\.toml: not valid TOML"),
])
def test_a_missing_or_broken_file_is_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None, message: str) -> None:
    config = tmp_path / "router.toml"
    if text is not None:
        config.write_text(text)
    with pytest.raises(ConfigFileError, match=message):
        RouterSettings.load(config)
    monkeypatch.setenv("LLMFLEET_CONFIG_FILE", str(config))
    with pytest.raises(ConfigFileError, match=message):
        RouterSettings.load()


def test_an_unknown_key_in_the_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text("backend = 'http://x:1'\n")
    with pytest.raises(ValidationError, match="backend"):
        RouterSettings.load(config)


@pytest.mark.parametrize(("url", "says"), [
    ("https://engine:8001", "plain http://host"),
    ("http://", "plain http://host"),
    ("http://engine:99999", "port outside"),
    ("http://engine:8001/v1", "without a path"),
    ("http://engine:8001?x=1", "query"),
    ("http://engine:8001?", "query"),
    ("http://engine:8001#", "fragment"),
    ("http://engine:0", "port outside"),
    ("http://en gine:8001", "spaces"),
])
def test_a_backend_url_is_host_and_port_and_nothing_more(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        RouterSettings(backends=[url])


def test_a_backend_url_with_credentials_is_refused_without_repeating_them() -> None:
    with pytest.raises(ValidationError, match="credentials") as caught:
        RouterSettings(backends=["http://admin:hunter2@engine:8001"])
    said = problems(caught.value, "settings")  # what `llmfleet router` prints
    assert said and not any("hunter2" in line for line in said)
