"""What a simulated run means for users and for the bill: one summary per policy.

A request meets the SLO when its time to first token and its time per output token
(the mean gap between its tokens after the first) are both within their targets; a
request refused for want of a serving instance, or cut off when its instance
terminated, misses it. Percentiles are over the completed requests (interpolated, the
same statistic the load tests report: `llmfleet.core.stats`), so the table also shows
how many were refused or cut off.
Cost is each instance's hourly price from the project's catalogue, billed per second
from launch to termination with EC2's one-minute minimum, launching and draining
time included: that is what AWS charges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from llmfleet.core.stats import percentile
from simulator.replica import Finished
from simulator.sim import InstanceSample, ScalingAction
from simulator.traffic import Arrival


class Lifetime(Protocol):
    """One instance's times, simulated (`simulator.fleet.Instance`) or real: asked for, run
    by EC2 (billed from then), first sent a request, deregistered, terminated."""

    @property
    def requested_s(self) -> float: ...
    @property
    def launched_s(self) -> float: ...
    @property
    def ready_s(self) -> float | None: ...
    @property
    def deregistered_s(self) -> float | None: ...
    @property
    def terminated_s(self) -> float | None: ...

    def billed_s(self, now_s: float) -> float: ...


class Run(Protocol):
    """A trace through a fleet: simulated (`simulator.sim.Outcome`) or measured on real
    engines (`llmfleet.localfleet`), summarised, binned and drawn the same way."""

    @property
    def finished(self) -> Sequence[Finished]: ...
    @property
    def refused(self) -> Sequence[Arrival]: ...
    @property
    def cut_off(self) -> int: ...
    @property
    def actions(self) -> Sequence[ScalingAction]: ...
    @property
    def samples(self) -> Sequence[InstanceSample]: ...
    @property
    def instances(self) -> Sequence[Lifetime]: ...
    @property
    def end_s(self) -> float: ...
    @property
    def interruptions(self) -> Sequence[tuple[float, int]]: ...


@dataclass(frozen=True)
class Slo:
    ttft_s: float = 2.0
    tpot_s: float = 0.1


@dataclass(frozen=True)
class Summary:
    """One policy's run; `as_json` is the `--json` contract's entry."""

    policy: str
    requests: int
    completed: int
    refused: int
    cut_off: int
    slo_attainment: float  # 0-1, of all requests
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    ttft_p99_s: float | None
    tpot_p50_s: float | None
    tpot_p95_s: float | None
    tpot_p99_s: float | None
    e2e_p50_s: float | None
    e2e_p95_s: float | None
    e2e_p99_s: float | None
    output_tokens: int
    instance_hours: float
    cost_usd: float
    cost_per_million_output_tokens: float | None
    scaling_actions: int
    peak_instances: int
    spot_interruptions: int = 0  # notices EC2 sent the group's instances

    def as_json(self) -> dict[str, object]:
        return {k: _rounded(v) for k, v in asdict(self).items()}


def _rounded(value: object) -> object:
    return round(value, 6) if isinstance(value, float) else value


def tpot_s(done: Finished) -> float | None:
    """Mean seconds between output tokens after the first; None for one-token answers."""
    if done.arrival.output_tokens < 2:
        return None
    return (done.finished_s - done.first_token_s) / (done.arrival.output_tokens - 1)


def summarise(policy: str, out: Run, slo: Slo, usd_per_hour: float) -> Summary:
    return summarise_parts(policy, [(out, usd_per_hour)], slo)


def summarise_parts(policy: str, parts: Sequence[tuple[Run, float]], slo: Slo) -> Summary:
    """Runs of groups side by side over the same trace's time (a deployment's pools), each
    with its instances' hourly price, as one: percentiles over all their requests, costs
    added, the peak of instances billed at once across them."""
    finished = [d for out, _ in parts for d in out.finished]
    ttft = sorted(d.first_token_s - d.arrival.at_s for d in finished)
    tpot = sorted(t for d in finished if (t := tpot_s(d)) is not None)
    e2e = sorted(d.finished_s - d.arrival.at_s for d in finished)
    refused = sum(len(out.refused) for out, _ in parts)
    cut_off = sum(out.cut_off for out, _ in parts)
    requests = len(finished) + refused + cut_off
    met = sum(1 for d in finished if meets(d, slo))
    billed = [sum(i.billed_s(out.end_s) for i in out.instances) / 3600 for out, _ in parts]
    cost = sum(hours * price for hours, (_, price) in zip(billed, parts, strict=True))
    tokens = sum(d.arrival.output_tokens for d in finished)
    return Summary(
        policy=policy, requests=requests, completed=len(finished), refused=refused,
        cut_off=cut_off, slo_attainment=met / requests if requests else 1.0,
        ttft_p50_s=percentile(ttft, 50), ttft_p95_s=percentile(ttft, 95),
        ttft_p99_s=percentile(ttft, 99), tpot_p50_s=percentile(tpot, 50),
        tpot_p95_s=percentile(tpot, 95), tpot_p99_s=percentile(tpot, 99),
        e2e_p50_s=percentile(e2e, 50), e2e_p95_s=percentile(e2e, 95),
        e2e_p99_s=percentile(e2e, 99), output_tokens=tokens, instance_hours=sum(billed),
        cost_usd=cost, cost_per_million_output_tokens=cost / tokens * 1e6 if tokens else None,
        scaling_actions=sum(len(out.actions) for out, _ in parts),
        peak_instances=_peak([i for out, _ in parts for i in out.instances]),
        spot_interruptions=sum(len(out.interruptions) for out, _ in parts))


def meets(done: Finished, slo: Slo) -> bool:
    """Whether a completed request met both the TTFT and the TPOT target."""
    tpot = tpot_s(done)
    return (done.first_token_s - done.arrival.at_s <= slo.ttft_s
            and (tpot is None or tpot <= slo.tpot_s))


def _peak(instances: Sequence[Lifetime]) -> int:
    """Most instances billed at once (launching, serving and draining)."""
    edges = sorted([(i.launched_s, 1) for i in instances]
                   + [(i.terminated_s, -1) for i in instances if i.terminated_s is not None])
    peak = current = 0
    for _, change in edges:
        current += change
        peak = max(peak, current)
    return peak


COLUMNS = (("policy", "policy", "{}"), ("SLO met", "slo_attainment", "{:.1%}"),
           ("TTFT p95 s", "ttft_p95_s", "{:.2f}"), ("TPOT p95 ms", "tpot_p95_s", "{:.0f}"),
           ("inst-hours", "instance_hours", "{:.2f}"), ("cost $", "cost_usd", "{:.2f}"),
           ("$/M out tok", "cost_per_million_output_tokens", "{:.2f}"),
           ("actions", "scaling_actions", "{}"), ("peak", "peak_instances", "{}"),
           ("refused", "refused", "{}"), ("cut off", "cut_off", "{}"))


def table(summaries: Sequence[Summary]) -> str:
    """A Markdown comparison table, one row per policy."""
    head = "| " + " | ".join(title for title, _, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = ["| " + " | ".join(_cell(s, key, fmt) for _, key, fmt in COLUMNS) + " |"
            for s in summaries]
    return "\n".join([head, rule, *rows])


def _cell(summary: Summary, key: str, fmt: str) -> str:
    value = getattr(summary, key)
    if value is None:
        return "-"
    if key == "tpot_p95_s":
        value *= 1000
    return fmt.format(value)
