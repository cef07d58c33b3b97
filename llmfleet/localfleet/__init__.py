"""A fleet on this machine: vLLM processes as instances, scaled by a simulator policy
behind the router (`controller`), and what a run of it records (`run`)."""

from llmfleet.localfleet.controller import LocalFleet
from llmfleet.localfleet.run import FleetShape, LocalInstance, LocalRun, measured_run

__all__ = ["FleetShape", "LocalFleet", "LocalInstance", "LocalRun", "measured_run"]
