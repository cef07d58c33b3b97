"""The clairvoyant bound: per-minute sizing that knows the trace, and the cheapest such schedule.

`Oracle` is a scaling policy that is given the arrivals when it is built. For every
minute it counts the requests that will arrive and needs ceil(rate / capacity) instances,
capacity being the requests/s one instance serves within the SLO (the planner's figure,
`group_policy.Sizing.capacity_rps`, times a factor). At each evaluation it asks for the most
any minute needs from now until a launch delay and one evaluation ahead: what it launches
now serves exactly when the first minute it was launched for begins (the launch delay is
still paid, and billed), and an instance leaves as soon as no minute needs it before a
replacement launched at the next evaluation could serve. On AWS it would be a set of
scheduled actions (PutScheduledUpdateGroupAction), written from a trace known in advance.

`cheapest` searches the capacity factor: the largest (fewest instances) whose simulated
SLO attainment is still at least the target. It starts at 1 (the planner's capacity),
doubles or halves until the target is bracketed (within 1/8 to 8), then bisects in log
space until the bracket is within `tolerance`, running the real `Simulation` for each
factor; factors that give the same schedule are run once. Attainment is not strictly
monotone in the factor (which instance a change removes and how the load balancer spreads
a burst differ between schedules), so the answer is a bracket's edge, not a proven
optimum: the cheapest schedule found within this family (per-minute sizing with perfect
foresight of arrivals, a fixed capacity per instance), which a better family (per-second
sizing, per-request placement) could beat.

The target's contract, as `llmfleet simulate` applies it: the `--oracle-target`
attainment (default 0.99), lowered to the best attainment any other policy in the same
comparison reached, so that the oracle's cost reads against the policies at no better a
service than theirs. If even the smallest factor misses the target, the answer is that
smallest factor's run (`Found.met` is False).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from simulator.report import Slo, summarise
from simulator.sim import InstanceSample, Outcome, SimConfig, Simulation
from simulator.traffic import Arrival

DEFAULT_TARGET = 0.99
SPAN = 8.0  # the search looks for the factor within [1 / SPAN, SPAN]
ROUNDING_SLACK = 1e-9  # a rate of exactly k instances' capacity needs k, not k + 1


def minute_needs(arrivals: Sequence[Arrival], capacity_rps: float,
                 period_s: float = 60.0) -> list[int]:
    """Instances each period of the trace needs: its arrival rate over `capacity_rps`.

    Raises:
        ValueError: a capacity that is not above 0.
    """
    if capacity_rps <= 0:
        raise ValueError(f"capacity_rps must be above 0, not {capacity_rps}")
    counts: list[int] = []
    for arrival in arrivals:
        index = int(arrival.at_s // period_s)
        counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += 1
    return [math.ceil(c / period_s / capacity_rps - ROUNDING_SLACK) for c in counts]


class Oracle:
    """A `ScalingPolicy` that sizes each minute from the arrivals it was given."""

    name = "oracle"

    def __init__(self, arrivals: Sequence[Arrival], capacity_rps: float, lead_s: float,
                 period_s: float = 60.0) -> None:
        self.needs = minute_needs(arrivals, capacity_rps, period_s)
        self.lead_s, self.period_s = lead_s, period_s

    def observe(self, samples: Sequence[InstanceSample]) -> None:
        """It needs nothing CloudWatch sees."""

    def launched(self, instance: int, in_service_s: float) -> None:
        """Nor anything the group does."""

    def leaving(self, at_s: float, instance: int) -> None:
        """Nor anything the group does."""

    def gone(self, at_s: float, instance: int) -> None:
        """Nor anything the group does."""

    def desired(self, now_s: float) -> int:
        """The most instances a minute needs in [now, now + launch delay + one period)."""
        first = math.floor(now_s / self.period_s)
        last = math.ceil((now_s + self.lead_s + self.period_s) / self.period_s
                         - ROUNDING_SLACK)
        return max(self.needs[max(first, 0):last], default=0)


@dataclass(frozen=True)
class Trial:
    """One simulated run of the oracle at one capacity factor."""

    factor: float
    attainment: float
    outcome: Outcome


@dataclass(frozen=True)
class Found:
    """The search's answer: the chosen run and what bracketed it."""

    outcome: Outcome
    factor: float  # the capacity factor of the chosen run
    attainment: float
    target: float
    met: bool  # False: even the smallest factor searched missed the target
    missed: float | None  # the smallest factor seen to miss the target (None: none did)
    runs: int  # simulations run; factors with the same schedule share one


@dataclass
class _Runs:
    """Simulates the oracle per factor, once per distinct schedule."""

    config: SimConfig
    arrivals: Sequence[Arrival]
    slo: Slo
    capacity_rps: float
    _seen: dict[tuple[int, ...], tuple[float, Outcome]] = field(default_factory=dict)

    def trial(self, factor: float) -> Trial:
        policy = Oracle(self.arrivals, self.capacity_rps * factor,
                        self.config.launch.total_s, self.config.evaluate_s)
        limits = self.config.limits
        key = tuple(min(limits.max_size, max(limits.min_size, n)) for n in policy.needs)
        if key not in self._seen:
            out = Simulation(self.config, policy).run(self.arrivals)
            self._seen[key] = (summarise(policy.name, out, self.slo, 0.0).slo_attainment, out)
        attainment, out = self._seen[key]
        return Trial(factor, attainment, out)

    @property
    def runs(self) -> int:
        return len(self._seen)


def cheapest(config: SimConfig, arrivals: Sequence[Arrival], slo: Slo, capacity_rps: float,
             target: float = DEFAULT_TARGET, *, tolerance: float = 0.05) -> Found:
    """The largest capacity factor whose oracle run meets `target` (module docstring).

    Raises:
        ValueError: a capacity that is not above 0, or a tolerance that is not.
    """
    if tolerance <= 0:
        raise ValueError(f"tolerance must be above 0, not {tolerance}")
    runs = _Runs(config, arrivals, slo, capacity_rps)
    good, bad = _bracket(runs, target)
    while good is not None and bad is not None and bad.factor > good.factor * (1 + tolerance):
        trial = runs.trial(math.sqrt(good.factor * bad.factor))
        if trial.attainment >= target:
            good = trial
        else:
            bad = trial
    chosen = good if good is not None else bad
    assert chosen is not None  # _bracket returns at least one side
    return Found(chosen.outcome, chosen.factor, chosen.attainment, target,
                 met=good is not None, missed=None if bad is None else bad.factor,
                 runs=runs.runs)


def _bracket(runs: _Runs, target: float) -> tuple[Trial | None, Trial | None]:
    """A trial that meets the target and the next, larger factor's that misses it, doubling
    or halving from 1; None for a side the span does not reach."""
    last = runs.trial(1.0)
    meets = last.attainment >= target
    while (last.factor < SPAN) if meets else (last.factor > 1 / SPAN):
        trial = runs.trial(last.factor * (2.0 if meets else 0.5))
        if (trial.attainment >= target) != meets:
            return (last, trial) if meets else (trial, last)
        last = trial
    return (last, None) if meets else (None, last)
