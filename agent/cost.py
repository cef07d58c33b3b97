"""What serving costs: the instance, its price, and cost and energy per token.

The instance comes from EC2 instance metadata with the IMDSv2 token flow (a
PUT for a session token, then GETs that carry it; the launch template
requires IMDSv2, so plain GETs would be refused). Timeouts are short: off
EC2 nothing answers, and the agent must not stall on it; a setting names the
instance type instead. Prices come from the project's catalogue
(`llmfleet.catalog`).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from llmfleet.catalog import Instance, Market, instances

IMDS_URL = "http://169.254.169.254"
TOKEN_TTL_S = 21600


@dataclass(frozen=True)
class Identity:
    instance_id: str | None
    instance_type: str | None


async def imds_identity(base_url: str = IMDS_URL, timeout_s: float = 0.5) -> Identity:
    """This instance's id and type, or Nones when no metadata service answers."""
    timeout = httpx.Timeout(timeout_s)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
            token = await client.put("/latest/api/token", headers={
                "x-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
            token.raise_for_status()
            headers = {"x-aws-ec2-metadata-token": token.text}
            found = []
            for path in ("instance-id", "instance-type"):
                resp = await client.get(f"/latest/meta-data/{path}", headers=headers)
                resp.raise_for_status()
                found.append(resp.text.strip())
    except httpx.HTTPError:
        return Identity(None, None)
    return Identity(found[0], found[1])


@dataclass(frozen=True)
class CostModel:
    """Prices for one instance in one market."""

    instance: Instance | None
    market: Market

    @classmethod
    def for_instance_type(cls, instance_type: str | None, market: Market) -> CostModel:
        return cls(instances().get(instance_type or ""), market)

    @property
    def usd_per_hour(self) -> float | None:
        return None if self.instance is None else self.instance.price_usd_hr(self.market)

    def usd_per_million_output_tokens(self, output_tokens_per_s: float | None) -> float | None:
        """Hourly price spread over the tokens generated in an hour at this rate."""
        price = self.usd_per_hour
        if price is None or not output_tokens_per_s:
            return None
        return price / (output_tokens_per_s * 3600) * 1e6


def joules_per_output_token(energy_j: float | None, output_tokens: float | None) -> float | None:
    """Energy over an interval divided by the tokens generated in it."""
    if energy_j is None or not output_tokens:
        return None
    return energy_j / output_tokens
