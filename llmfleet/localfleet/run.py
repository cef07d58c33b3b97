"""What a local fleet's run records, in the simulator's shape (`simulator.report.Run`):
each engine's times, the scaling actions, the samples, the requests' outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from llmfleet.core.engine import EngineProcess
from llmfleet.core.prometheus import Snapshot
from simulator.fleet import billed_s
from simulator.replica import Finished
from simulator.sim import InstanceSample, ScalingAction
from simulator.traffic import Arrival


@dataclass
class LocalInstance:
    """One engine process and its times, in seconds from the trace's start (a
    `simulator.report.Lifetime`)."""

    id: int
    engine: EngineProcess
    requested_s: float
    owned: bool = True  # started (and so watched and stopped) by this fleet
    ready_s: float | None = None
    deregistered_s: float | None = None
    terminated_s: float | None = None
    cut_off: int = 0  # requests it still held when it was stopped (they failed)
    before: Snapshot | None = field(default=None, repr=False)  # its last scrape

    @property
    def launched_s(self) -> float:
        return self.requested_s  # a process runs as soon as it is asked for

    @property
    def url(self) -> str:
        return self.engine.spec.url

    def billed_s(self, now_s: float) -> float:
        return billed_s(self.launched_s, self.terminated_s, now_s)

    @property
    def live(self) -> bool:
        """Counted toward the group's capacity: launching or serving."""
        return self.deregistered_s is None and self.terminated_s is None


@dataclass
class LocalRun:
    """A measured run, in the simulator's shape (`simulator.report.Run`)."""

    finished: list[Finished] = field(default_factory=list)
    # Every failed request: a request cut off here fails too, so `cut_off` stays 0 (the
    # instances' own `cut_off` says how many their stop took).
    refused: list[Arrival] = field(default_factory=list)
    cut_off: int = 0
    actions: list[ScalingAction] = field(default_factory=list)
    samples: list[InstanceSample] = field(default_factory=list)
    instances: list[LocalInstance] = field(default_factory=list)
    end_s: float = 0.0
    interruptions: list[tuple[float, int]] = field(default_factory=list)  # none here


@dataclass(frozen=True)
class FleetShape:
    """The group's bounds and the agent's, CloudWatch's and the target group's timing.

    Raises:
        ValueError: bounds outside 1 <= min <= max, or an evaluation period that is not a
            whole number of sampling intervals (the simulator's events would fall elsewhere).
    """

    min_size: int = 1
    max_size: int = 2
    sample_s: float = 10.0
    evaluate_s: float = 60.0
    deregistration_delay_s: float = 30.0
    # An engine not healthy this long after its launch is stopped, and the group launches
    # another at its next evaluation, as Auto Scaling replaces an instance that fails its
    # load balancer health checks after the grace period.
    launch_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, not {self.min_size} and "
                             f"{self.max_size}")
        ratio = self.evaluate_s / self.sample_s if self.sample_s > 0 else 0.0
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"evaluate_s ({self.evaluate_s:g}) must be a whole number of "
                             f"sample_s ({self.sample_s:g}) intervals")

    @property
    def samples_per_evaluation(self) -> int:
        return round(self.evaluate_s / self.sample_s)


def measured_run(fleet: LocalRun, arrivals: Sequence[Arrival],
                 results: Sequence[tuple[float | None, float | None]]) -> LocalRun:
    """`fleet` with the requests' outcomes: `results[i]` is (TTFT, end-to-end) in seconds
    from `arrivals[i]`'s time, None for a request that failed."""
    for arrival, (ttft, e2e) in zip(arrivals, results, strict=True):
        if ttft is None or e2e is None:
            fleet.refused.append(arrival)
        else:
            fleet.finished.append(Finished(arrival, arrival.at_s + ttft,
                                           arrival.at_s + e2e, 0))
    return fleet
