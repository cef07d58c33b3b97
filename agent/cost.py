"""What serving costs: the instance, its price, and cost and energy per token.

The instance comes from EC2 instance metadata (`agent.imds`); off EC2 nothing
answers and a setting names the instance type instead. Prices come from the project's catalogue
(`llmfleet.core.instances`).

`CostMeter` turns a round into its cost and energy figures. Energy is the
difference of the GPUs' energy counters since the previous round, so the
first round after a start (or after the GPUs stopped answering) has none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.imds import IMDS_URL, Imds
from agent.specs import (
    COST_PER_HOUR,
    COST_PER_MILLION_OUTPUT_TOKENS,
    GPU_ENERGY,
    JOULES_PER_OUTPUT_TOKEN,
    Readings,
)
from llmfleet.core.gpu import GpuReading
from llmfleet.core.instances import Instance, Market, instances
from llmfleet.core.serving import ServingStats, summed


@dataclass(frozen=True)
class Identity:
    instance_id: str | None = None
    instance_type: str | None = None
    market: Market | None = None  # from the instance's life cycle: spot or on-demand
    asg_name: str | None = None  # only where the launch template exposes instance tags
    region: str | None = None  # boto3 does not read it from instance metadata itself


# Metadata paths; a field that does not answer (a tag not exposed) stays None.
IMDS_FIELDS = {
    "instance_id": "meta-data/instance-id",
    "instance_type": "meta-data/instance-type",
    "lifecycle": "meta-data/instance-life-cycle",
    "asg_name": "meta-data/tags/instance/aws:autoscaling:groupName",
    "region": "meta-data/placement/region",
}


def imds_identity(base_url: str = IMDS_URL, timeout_s: float = 0.5) -> Identity:
    """This instance's identity, or an empty one when no metadata service answers."""
    imds = Imds(base_url, timeout_s)
    try:
        if not imds.available():  # one timeout off EC2, not one per field
            return Identity()
        found = {key: imds.get(path) for key, path in IMDS_FIELDS.items()}
    finally:
        imds.close()
    lifecycle = found["lifecycle"]
    market = Market.SPOT if lifecycle == "spot" else Market.ON_DEMAND if lifecycle else None
    return Identity(found["instance_id"], found["instance_type"], market,
                    found["asg_name"], found["region"])


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


class CostMeter:
    """A round's cost and energy figures; keeps the GPUs' energy counter between rounds."""

    def __init__(self, cost: CostModel, clock: Callable[[], float]) -> None:
        self._cost = cost
        self._clock = clock
        self._energy: tuple[float, float] | None = None  # (joules, at) at the last round

    def figures(self, serving: ServingStats, gpus: Sequence[GpuReading]) -> Readings:
        tokens_per_s = serving.generation_tokens_per_s
        energy_j, elapsed_s = self._energy_since_last(summed([g.energy_j for g in gpus]))
        tokens = None if tokens_per_s is None or elapsed_s is None else tokens_per_s * elapsed_s
        return {
            COST_PER_HOUR: self._cost.usd_per_hour,
            COST_PER_MILLION_OUTPUT_TOKENS: self._cost.usd_per_million_output_tokens(
                tokens_per_s),
            GPU_ENERGY: energy_j,
            JOULES_PER_OUTPUT_TOKEN: None if energy_j is None
            else joules_per_output_token(energy_j, tokens),
        }

    def _energy_since_last(self, total_j: float | None) -> tuple[float | None, float | None]:
        """Joules used since the last round, and the seconds they took (None, None at first)."""
        now = self._clock()
        if total_j is None:
            return None, None
        last, self._energy = self._energy, (total_j, now)
        if last is None or now <= last[1]:
            return None, None
        return total_j - last[0], now - last[1]
