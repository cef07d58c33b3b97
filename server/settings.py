"""Router settings: one pydantic-settings class, read from `LLMFLEET_*` variables.

A TOML file (`LLMFLEET_CONFIG_FILE` or `llmfleet router --config`) may hold the
same keys; environment variables win over the file so that a deployment can
override one value without editing it, and values given in code (the command
line's `--host`/`--port`) win over both. Lists given through the environment
are comma separated (`LLMFLEET_BACKENDS=http://a:8001,http://b:8001`) or JSON.
A named file that is missing or not TOML is a `ConfigFileError`, never an empty
file's defaults.
"""

from __future__ import annotations

import json
import re
import socket
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from llmfleet.core.env import split_csv
from llmfleet.core.routing import LengthRule
from llmfleet.core.wire.pools import pool_name
from llmfleet.core.wire.scoring import ScoredModel
from server.archiving import ArchiveContent
from server.edge import EdgeLimits


class PolicyName(StrEnum):
    """Routing policies that resolve the alias model to a served one."""

    PROMPT_LENGTH = "prompt_length"
    SCORED = "scored"


class ScoreWeights(BaseModel):
    """The operator's weights for the scored policy; a request may send its own."""

    model_config = ConfigDict(extra="forbid")

    accuracy: float = Field(default=1.0, ge=0)
    energy: float = Field(default=1.0, ge=0)
    time: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _not_all_zero(self) -> ScoreWeights:
        if not (self.accuracy or self.energy or self.time):
            raise ValueError("at least one score weight must be above 0")
        return self


class ConfigFileError(ValueError):
    """The named settings file cannot be read or is not TOML; the message names it."""


class ConfigFile(PydanticBaseSettingsSource):
    """The TOML file that `config_file` names, in code or in LLMFLEET_CONFIG_FILE.

    pydantic-settings' own TOML source takes one path for the whole class (its
    `model_config`) and skips a missing file silently; this source reads the file
    named for this load, once, and refuses a missing one.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        named = self.current_state.get("config_file")
        if not named:
            return {}
        path = Path(named)
        try:
            with path.open("rb") as file:
                values: dict[str, Any] = tomllib.load(file)
        except OSError as exc:
            raise ConfigFileError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{path}: not valid TOML: {exc}") from exc
        # A variable replaces the file's whole value, tables included (pydantic-settings
        # would merge a table key by key).
        return {k: v for k, v in values.items() if k not in self.current_state}


def plain_http(url: str, what: str) -> str:
    """`url` without a trailing slash, if it is `http://host[:port]` and nothing more.

    Raises:
        ValueError: another scheme, no host, a bad port, a path, a query or a fragment,
            or credentials (which the message does not repeat: they would reach the logs).
    """
    if any(c.isspace() for c in url) or "?" in url or "#" in url:
        raise ValueError(f"{what} {url!r} must be http://host[:port] without spaces, a query "
                         "or a fragment")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} URL must not carry credentials (use backend_api_key)")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{what} {url!r} must be a plain http://host[:port] URL")
    try:
        port = parts.port  # urlsplit checks the port only when asked
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{what} {url!r} has a port outside 1-65535")
    if parts.path not in ("", "/"):
        raise ValueError(f"{what} {url!r} must be http://host[:port] without a path")
    return f"http://{parts.netloc}"


class RouterSettings(BaseSettings):
    """Everything the router process can be told; see the settings table in docs/router.md."""

    model_config = SettingsConfigDict(env_prefix="LLMFLEET_", extra="forbid")

    # Read by the ConfigFile source below, after code and the environment.
    config_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    backends: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Or a file of them, read again at every health round (server/targets.py).
    backends_file: Path | None = None
    backend_api_key: str | None = None
    # Several pools (models) in one deployment: this router's pool, and every pool's URL
    # (in the cloud, the internal load balancer its requests for that pool go to; this
    # router's own entry, if listed, is skipped). See llmfleet/core/wire/pools.py.
    pool: str | None = None
    peers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # A peer stands for a whole pool, whose routers queue and shed for themselves.
    peer_max_inflight: int = Field(default=256, gt=0)

    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys_file: Path | None = None
    allow_anonymous: bool = False
    # /metrics and /console/fleet: None asks for a key from every client that is not on
    # this machine's loopback (the agent beside the router scrapes over loopback).
    protect_metrics: bool | None = None

    rate_limit_rpm: float = Field(default=600.0, ge=0)
    rate_limit_tpm: float = Field(default=1_000_000.0, ge=0)
    default_max_tokens: int = Field(default=256, gt=0)

    max_inflight_per_backend: int = Field(default=64, gt=0)
    # Cache-aware balancing among a model's engines (server/prefix.py): each prompt to the
    # engine that was sent its prefix, unless it holds more than `prefix_slack` requests
    # beyond the least loaded one.
    prefix_routing: bool = True
    prefix_slack: int = Field(default=4, ge=0)
    # Prompt blocks (256 characters, ~64 tokens) each engine is assumed to keep cached.
    prefix_cache_blocks: int = Field(default=1024, gt=0)
    # The queue (max_queue) served fairly between keys, by each key's weight in the keys
    # (server/fairqueue.py); false: in arrival order.
    fair_queue: bool = True
    max_queue: int = Field(default=256, ge=0)
    queue_timeout_s: float = Field(default=30.0, gt=0)

    health_interval_s: float = Field(default=5.0, gt=0)
    health_timeout_s: float = Field(default=2.0, gt=0)
    unhealthy_threshold: int = Field(default=3, ge=1)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=300.0, gt=0)
    # Once a stream has begun: the longest gap between two pieces before it ends with an
    # error event, and how long all of an engine's streams may be silent before it gets
    # no new requests (until one of them moves again).
    stream_idle_timeout_s: float = Field(default=30.0, gt=0)
    stall_after_s: float = Field(default=10.0, gt=0)
    # Below the engine's own keep-alive (vLLM: 5 s), so that the router never
    # reuses a connection the engine is closing.
    upstream_keepalive_s: float = Field(default=4.0, gt=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)

    # The HTTP edge (server/edge.py): what a connection may send, and for how long.
    # keepalive_s must outlast the load balancer's idle timeout (600 s in infrastructure/).
    keepalive_s: float = Field(default=620.0, gt=0)
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    max_headers: int = Field(default=100, gt=0)
    max_connections: int = Field(default=4096, gt=0)
    send_timeout_s: float = Field(default=60.0, gt=0)

    alias_model: str = "auto"
    policy: PolicyName = PolicyName.PROMPT_LENGTH
    length_rules: list[LengthRule] = Field(default_factory=list)
    scored_models: list[ScoredModel] = Field(default_factory=list)
    score_weights: ScoreWeights = Field(default_factory=ScoreWeights)

    # The web console (server/web) and what feeds it; see docs/console.md.
    console: bool = True
    agent_url: str | None = None
    console_interval_s: float = Field(default=2.0, gt=0)
    console_window_s: float = Field(default=10.0, gt=0)
    console_history_s: float = Field(default=300.0, gt=0)
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # The archive (server/archiving.py, docs/router.md "Archive"): on when archive_dir is set.
    archive_dir: Path | None = None
    archive_content: ArchiveContent = ArchiveContent.METADATA
    archive_max_bytes: int = Field(default=1 << 30, gt=0)  # the spool's bound on disk
    archive_segment_bytes: int = Field(default=8 << 20, gt=0)
    archive_segment_age_s: float = Field(default=60.0, gt=0)
    archive_flush_s: float = Field(default=1.0, gt=0)  # memory to the spool, this often
    archive_send_s: float = Field(default=5.0, gt=0)  # the spool to S3 (with a bucket)
    # Spool files readable by the directory's group: where another user (the agent, on an
    # instance) sends them.
    archive_group_readable: bool = False
    # With a bucket, this router sends the spool to S3 itself (credentials from the usual
    # AWS chain); without, another process does (the agent, on an instance).
    archive_bucket: str | None = None
    archive_prefix: str = "archive/"
    archive_region: str | None = None
    archive_endpoint_url: str | None = None  # an S3-compatible endpoint (moto, MinIO)
    archive_host: str = Field(default_factory=socket.gethostname)

    log_level: str = "INFO"

    @field_validator("backends", "api_keys", "cors_allowed_origins", mode="before")
    @classmethod
    def _lists_from_csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("backends")
    @classmethod
    def _backend_urls(cls, value: list[str]) -> list[str]:
        # Engines sit beside the router or in private subnets; TLS ends at the load
        # balancer, and the request path's client speaks plain HTTP/1.1 only.
        return [plain_http(url, "backend") for url in value]

    @field_validator("peers", mode="before")
    @classmethod
    def _peers_from_text(cls, value: Any) -> Any:
        # In the environment (a systemd environment file, whose quoting would mangle JSON):
        # name=url pairs, comma-separated; JSON is taken too.
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("{"):
            return json.loads(value)
        pairs = [item.partition("=") for item in split_csv(value)]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError("peers must be name=url pairs, comma-separated")
        return {name.strip(): url.strip() for name, _, url in pairs}

    @field_validator("peers")
    @classmethod
    def _peer_urls(cls, value: dict[str, str]) -> dict[str, str]:
        return {pool_name(name, "peer pool name"): plain_http(url, f"peer {name}")
                for name, url in value.items()}

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, value: str | None) -> str | None:
        return None if value is None else pool_name(value)

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            # An origin is scheme://host[:port] exactly: browsers compare it as a string.
            if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port] "
                                 "without a path (or '*')")
        return value

    @field_validator("agent_url")
    @classmethod
    def _agent_url(cls, value: str | None) -> str | None:
        # The agent listens on the instance's loopback.
        return None if value is None else plain_http(value, "agent_url")

    @field_validator("rate_limit_rpm", "rate_limit_tpm")
    @classmethod
    def _a_limit_admits_something(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("a limit is 0 (off) or at least 1 a minute")
        return value

    @model_validator(mode="after")
    def _one_list_of_backends(self) -> RouterSettings:
        if self.backends and self.backends_file is not None:
            raise ValueError("set backends or backends_file, not both: the file is the whole "
                             "list, read again while the router runs")
        return self

    @model_validator(mode="after")
    def _archive_bucket_needs_a_spool(self) -> RouterSettings:
        if self.archive_bucket is not None and self.archive_dir is None:
            raise ValueError("archive_bucket needs archive_dir: records go through a spool "
                             "on disk, so that an S3 outage or a restart loses none")
        return self

    def peer_pools(self) -> dict[str, str]:
        """The other pools' URLs: `peers` less this router's own pool."""
        return {name: url for name, url in self.peers.items() if name != self.pool}

    @model_validator(mode="after")
    def _scored_policy_has_models(self) -> RouterSettings:
        if self.policy is PolicyName.SCORED and not self.scored_models:
            raise ValueError("policy 'scored' needs scored_models: each model's runtime_s, "
                             "energy_j and quality")
        return self

    def edge(self) -> EdgeLimits:
        return EdgeLimits(max_header_bytes=self.max_header_bytes, max_headers=self.max_headers,
                          header_timeout_s=self.header_timeout_s,
                          body_timeout_s=self.body_timeout_s,
                          max_connections=self.max_connections, keepalive_s=self.keepalive_s,
                          send_timeout_s=self.send_timeout_s)

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: values given in code, then LLMFLEET_* variables, then the file.
        return init_settings, env_settings, ConfigFile(settings_cls)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> RouterSettings:
        """Settings from `overrides`, then the environment, then a TOML file: `config_file`,
        else the one `LLMFLEET_CONFIG_FILE` names, else none.

        Raises:
            ConfigFileError: the file is missing, unreadable or not TOML.
            pydantic.ValidationError: a value is wrong, wherever it came from.
        """
        if config_file is not None:
            overrides["config_file"] = config_file
        return cls(**overrides)
