"""The project's catalogue of AWS GPU instances and their prices.

Kept in `llmfleet/core/data/aws_instances.csv`, one row per instance type, each with
its source. Prices are us-east-1 on-demand and the spread of spot prices seen
per availability zone when the catalogue was taken; the agent uses them for
cost per hour, the sizing work for choosing instances. Refresh the file from
its source rather than editing numbers by hand.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources


class Market(StrEnum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"


@dataclass(frozen=True)
class Instance:
    name: str
    gpu: str
    gpu_count: int
    vcpu: int
    ram_gib: float
    ondemand_usd_hr: float
    spot_usd_hr_low: float | None
    spot_usd_hr_high: float | None
    region: str
    source: str

    def price_usd_hr(self, market: Market) -> float | None:
        """Hourly price; for spot the middle of the seen range, None when none was seen."""
        if market is Market.ON_DEMAND:
            return self.ondemand_usd_hr
        if self.spot_usd_hr_low is None or self.spot_usd_hr_high is None:
            return None
        return (self.spot_usd_hr_low + self.spot_usd_hr_high) / 2


def _optional(text: str) -> float | None:
    return float(text) if text.strip() else None


@cache
def instances() -> dict[str, Instance]:
    """Every catalogued instance type by name."""
    text = resources.files("llmfleet.core").joinpath("data/aws_instances.csv").read_text()
    return {row["instance"]: Instance(
        name=row["instance"], gpu=row["gpu"], gpu_count=int(row["gpu_count"]),
        vcpu=int(row["vcpu"]), ram_gib=float(row["ram_gib"]),
        ondemand_usd_hr=float(row["ondemand_usd_hr"]),
        spot_usd_hr_low=_optional(row["spot_usd_hr_low"]),
        spot_usd_hr_high=_optional(row["spot_usd_hr_high"]),
        region=row["region"], source=row["source"],
    ) for row in csv.DictReader(text.splitlines())}
