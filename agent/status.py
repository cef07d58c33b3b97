"""The agent's own state, as `/health` reports it and `/metrics` exposes it.

One `AgentState` object is updated by the agent as it works; a Prometheus
collector renders it on each scrape, so the counters that live in the
on-disk buffer (datapoints dropped, kept across restarts) need no second
copy that could drift from the truth. The HTTP server reads it from another
thread: fields are replaced, never mutated in place (a frozenset, a fresh
dict), so a reader never iterates a collection that is changing. What
`/health` and `/status` answer is a wire model (`llmfleet.core.wire.agent`),
built from it on each request.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmfleet.core.wire.agent import AgentHealth, AgentStatus, DatapointCounts, LatestRound


@dataclass
class AgentState:
    interval_s: float
    started_at: float  # monotonic
    rounds_total: int = 0
    last_round_at: float | None = None  # monotonic
    last_round_duration_s: float = 0.0
    scrape_errors_total: dict[str, int] = field(default_factory=dict)
    failing_sources: frozenset[str] = frozenset()
    buffered: int = 0
    sent_total: int = 0
    rejected_total: int = 0
    failed_calls_total: int = 0
    dropped_total: int = 0
    lost_total: int = 0  # neither sent nor stored: the buffer could not be written
    nonfinite_total: dict[str, int] = field(default_factory=dict)  # metric -> values left out
    round_errors_total: int = 0
    corrupt_rows_total: int = 0
    # The router's archive (agent/archive.py): segments sent, failed rounds, and waiting.
    archive_sent_total: int = 0
    archive_failures_total: int = 0
    archive_pending: int = 0
    buffer_on_disk: bool = True
    backing_off: bool = False
    gpu_available: bool = False
    last_round: LatestRound | None = None  # the latest round's figures, for /status

    def scrape_failed(self, source: str) -> bool:
        """Count a failed scrape; True when the source was working until now."""
        errors = self.scrape_errors_total
        self.scrape_errors_total = {**errors, source: errors.get(source, 0) + 1}
        newly = source not in self.failing_sources
        self.failing_sources = self.failing_sources | {source}
        return newly

    def scrape_worked(self, source: str) -> bool:
        """True when the source was failing until now."""
        recovered = source in self.failing_sources
        self.failing_sources = self.failing_sources - {source}
        return recovered

    def values_left_out(self, names: list[str]) -> list[str]:
        """Count NaN or infinite readings; returns those not seen before."""
        counts = self.nonfinite_total
        self.nonfinite_total = {**counts, **{n: counts.get(n, 0) + 1 for n in names}}
        return [n for n in names if n not in counts]

    def healthy(self, now: float) -> bool:
        """Rounds are happening: the last one ended within three intervals.

        CloudWatch being unreachable does not make the agent unhealthy: it is
        doing its job by keeping the datapoints, and restarting it would not help.
        """
        since = self.last_round_at if self.last_round_at is not None else self.started_at
        return now - since <= 3 * self.interval_s + 5

    def health(self, now: float) -> AgentHealth:
        """What `/health` answers."""
        return AgentHealth(
            status="ok" if self.healthy(now) else "stalled",
            interval_s=self.interval_s,
            rounds=self.rounds_total,
            last_round_age_s=None if self.last_round_at is None
            else round(now - self.last_round_at, 3),
            failing_sources=tuple(sorted(self.failing_sources)),
            gpu=self.gpu_available,
            round_errors=self.round_errors_total,
            buffer="disk" if self.buffer_on_disk else "memory",
            datapoints=DatapointCounts(buffered=self.buffered, sent=self.sent_total,
                                       dropped=self.dropped_total,
                                       rejected=self.rejected_total, lost=self.lost_total),
            cloudwatch="backing off" if self.backing_off else "ok",
        )

    def status(self, now: float) -> AgentStatus:
        """What `/status` answers: the health and the latest round's figures."""
        return AgentStatus(health=self.health(now), latest=self.last_round)


class StatusCollector(Collector):
    """Prometheus view of an `AgentState` (names `llmfleet_agent_*`)."""

    def __init__(self, status: AgentState) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        s = self._status
        yield CounterMetricFamily("llmfleet_agent_rounds", "Collection rounds completed.",
                                  value=s.rounds_total)
        yield CounterMetricFamily("llmfleet_agent_round_errors",
                                  "Rounds that failed with an unexpected error (logged).",
                                  value=s.round_errors_total)
        yield GaugeMetricFamily("llmfleet_agent_round_duration_seconds",
                                "Time the last round took.", value=s.last_round_duration_s)
        yield _labelled("llmfleet_agent_scrape_errors",
                        "Scrapes that failed or returned non-Prometheus text.", "source",
                        s.scrape_errors_total)
        yield GaugeMetricFamily("llmfleet_agent_datapoints_buffered",
                                "Datapoints on disk waiting for CloudWatch.", value=s.buffered)
        for name, help_text, value in (
            ("sent", "Datapoints CloudWatch accepted.", s.sent_total),
            ("dropped", "Oldest datapoints dropped because the buffer was full.",
             s.dropped_total),
            ("rejected", "Datapoints CloudWatch rejected as invalid.", s.rejected_total),
            ("lost", "Datapoints neither sent nor stored: the buffer could not be written.",
             s.lost_total),
        ):
            yield CounterMetricFamily(f"llmfleet_agent_datapoints_{name}", help_text,
                                      value=value)
        yield _labelled("llmfleet_agent_values_nonfinite",
                        "Readings left out because they were NaN or infinite.", "metric",
                        s.nonfinite_total)
        yield CounterMetricFamily("llmfleet_agent_buffer_corrupt_rows",
                                  "Buffer rows that were not datapoints, deleted.",
                                  value=s.corrupt_rows_total)
        yield GaugeMetricFamily("llmfleet_agent_buffer_on_disk",
                                "1 when the buffer is on disk; 0 when it fell back to memory.",
                                value=int(s.buffer_on_disk))
        yield CounterMetricFamily("llmfleet_agent_publish_failures",
                                  "PutMetricData calls that failed and were retried later.",
                                  value=s.failed_calls_total)
        yield CounterMetricFamily("llmfleet_agent_archive_segments_sent",
                                  "Archive spool segments sent to S3.",
                                  value=s.archive_sent_total)
        yield CounterMetricFamily("llmfleet_agent_archive_send_failures",
                                  "Archive segments that could not be sent (tried again "
                                  "at the next round).", value=s.archive_failures_total)
        yield GaugeMetricFamily("llmfleet_agent_archive_segments_pending",
                                "Archive spool segments on disk waiting for S3.",
                                value=s.archive_pending)
        yield GaugeMetricFamily("llmfleet_agent_gpu_available",
                                "1 when NVML reads GPUs.", value=int(s.gpu_available))


def _labelled(name: str, help_text: str, label: str,
              counts: Mapping[str, int]) -> CounterMetricFamily:
    """A counter with one series per value of `label`."""
    family = CounterMetricFamily(name, help_text, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family
