"""Agent settings: one pydantic-settings class, read from `LLMFLEET_AGENT_*` variables.

The prefix differs from the router's (`LLMFLEET_`) so that both processes can
share one environment file on an instance without a `PORT` meaning two
things. On EC2 every identity field can stay unset: instance id, type,
market and (where the launch template exposes instance tags) the Auto
Scaling group come from instance metadata. Off EC2, set them, and turn
`imds` off so that nothing waits on 169.254.169.254.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llmfleet.core.env import split_csv
from llmfleet.core.instances import Market

ENV_PREFIX = "LLMFLEET_AGENT_"


class AgentSettings(BaseSettings):
    """Everything the agent process can be told; see the settings table in docs/agent.md."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    interval_s: float = Field(default=10.0, ge=0.05)
    host: str = "127.0.0.1"
    port: int = 8002

    # Sources. An empty router URL or engine list means "do not scrape".
    router_url: str = "http://127.0.0.1:8000"
    router_api_key: SecretStr | None = None  # when the router protects /metrics
    engine_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8001"])
    scrape_timeout_s: float = Field(default=2.0, gt=0)
    # vLLM's /metrics is tens of KB; 16 MiB bounds what a broken or hostile page costs.
    scrape_max_bytes: int = Field(default=16 * 2**20, gt=0)
    gpu: bool = True

    # Identity: unset fields come from instance metadata when `imds` is on.
    imds: bool = True
    imds_url: str = "http://169.254.169.254"
    asg_name: str | None = None
    instance_id: str | None = None
    instance_type: str | None = None
    market: Market | None = None
    model: str | None = None  # default: the model name vLLM reports

    # Leaving the fleet (agent.lifecycle): watched only where instance metadata is on.
    lifecycle_watch: bool = True
    lifecycle_poll_s: float = Field(default=5.0, gt=0)
    lifecycle_hook: str | None = None  # the group's termination hook, to complete
    launch_hook: str | None = None  # the group's launch hook (with a warm pool), to complete
    # How long a drain waits for the router's requests in flight; the infrastructure sets
    # the load balancer's deregistration delay to it and the hook's timeout a little above.
    drain_timeout_s: float = Field(default=300.0, ge=0)
    spot_margin_s: float = Field(default=10.0, ge=0)  # a spot drain ends this long before
    autoscaling_endpoint_url: str | None = None  # an Auto Scaling-compatible endpoint (tests)

    # Publishing.
    publish: bool = True
    namespace: str = "LLMFleet"
    region: str | None = None
    cloudwatch_endpoint_url: str | None = None  # a CloudWatch-compatible endpoint (moto)
    state_dir: Path = Path("/var/lib/llmfleet/agent")
    # 50-65 datapoints per round: 250,000 is 10-14 hours of outage at 10 s.
    buffer_max_points: int = Field(default=250_000, gt=0)
    max_backoff_s: float = Field(default=300.0, gt=0)
    shutdown_flush_s: float = Field(default=5.0, ge=0)

    # The router's archive (agent/archive.py): its spool, and where to send it. Off unless
    # both are set.
    archive_dir: Path | None = None
    archive_bucket: str | None = None
    archive_prefix: str = "archive/"
    archive_interval_s: float = Field(default=10.0, gt=0)
    # When the instance leaves: how long past the drain's bound the last segments may take,
    # within the 60 s the lifecycle hook waits beyond it (not on a spot reclaim).
    archive_margin_s: float = Field(default=30.0, ge=0, lt=60)
    archive_host: str = Field(default_factory=socket.gethostname)  # off EC2
    s3_endpoint_url: str | None = None  # an S3-compatible endpoint (moto)

    log_level: str = "INFO"

    @field_validator("engine_urls", mode="before")
    @classmethod
    def _list_from_csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("router_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("engine_urls")
    @classmethod
    def _strip_slashes(cls, value: list[str]) -> list[str]:
        return [url.rstrip("/") for url in value]

    @property
    def buffer_path(self) -> Path:
        return self.state_dir / "buffer.sqlite"
