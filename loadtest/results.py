"""Exact per-request samples, merged across processes, and the summary made from them.

Locust keeps its own statistics at 1 ms resolution (2 significant digits above
100 ms), too coarse for a TPOT of a few milliseconds; so every process also
keeps the exact samples here. In Locust's distributed mode each worker
`drain()`s what it gathered since its last report into the report it sends
the master, which `merge()`s it; the plan search uses one `Recorder` per
concurrency level. The `Summary` is what `make load` prints and the SLA is
checked against.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from llmfleet.core.stats import percentile
from loadtest.stream import Outcome

QUANTILES = (50, 95, 99)
LAG_WARNING_MS = 10.0


@dataclass
class Recorder:
    ttft_ms: list[float] = field(default_factory=list)
    tpot_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0
    failures: int = 0
    unreported_usage: int = 0  # requests whose tokens were counted from chunks
    loop_lag_ms: list[float] = field(default_factory=list)  # the load generator's own delay
    first_sent: float | None = None
    last_done: float | None = None

    @property
    def requests(self) -> int:
        return len(self.e2e_ms)

    def add(self, outcome: Outcome, sent_at: float) -> None:
        self.e2e_ms.append(outcome.e2e_s * 1000)
        if outcome.ttft_s is not None:
            self.ttft_ms.append(outcome.ttft_s * 1000)
        if (tpot := outcome.tpot_s) is not None:
            self.tpot_ms.append(tpot * 1000)
        self.prompt_tokens += outcome.prompt_tokens
        self.output_tokens += outcome.completion_tokens
        self.unreported_usage += not outcome.usage_reported
        self._window(sent_at, sent_at + outcome.e2e_s)

    def lag(self, seconds: float) -> None:
        """How late the load generator woke from a timed sleep: its own queueing."""
        self.loop_lag_ms.append(seconds * 1000)

    def fail(self, sent_at: float, done_at: float) -> None:
        self.failures += 1
        self._window(sent_at, done_at)

    def _window(self, sent_at: float, done_at: float) -> None:
        self.first_sent = sent_at if self.first_sent is None else min(self.first_sent, sent_at)
        self.last_done = done_at if self.last_done is None else max(self.last_done, done_at)

    def drain(self) -> dict[str, object]:
        """What was gathered since the last drain, as plain data for Locust's messages."""
        data = asdict(self)
        fresh = Recorder()
        self.__dict__.update(fresh.__dict__)
        return data

    def merge(self, data: dict[str, object]) -> None:
        other = Recorder(**data)  # type: ignore[arg-type]
        self.ttft_ms += other.ttft_ms
        self.tpot_ms += other.tpot_ms
        self.e2e_ms += other.e2e_ms
        self.prompt_tokens += other.prompt_tokens
        self.output_tokens += other.output_tokens
        self.failures += other.failures
        self.unreported_usage += other.unreported_usage
        self.loop_lag_ms += other.loop_lag_ms
        if other.first_sent is not None and other.last_done is not None:
            self._window(other.first_sent, other.last_done)

    def summary(self) -> Summary:
        duration = ((self.last_done - self.first_sent)
                    if self.first_sent is not None and self.last_done is not None else 0.0)
        attempts = self.requests + self.failures
        return Summary(
            duration_s=duration, requests=self.requests, failures=self.failures,
            error_rate=self.failures / attempts if attempts else None,
            requests_per_s=self.requests / duration if duration > 0 else None,
            prompt_tokens=self.prompt_tokens, output_tokens=self.output_tokens,
            output_tokens_per_s=self.output_tokens / duration if duration > 0 else None,
            unreported_usage=self.unreported_usage,
            client_lag_p99_ms=percentile(self.loop_lag_ms, 99),
            latency_ms={name: tuple(percentile(samples, q) for q in QUANTILES)
                        for name, samples in (("ttft", self.ttft_ms), ("tpot", self.tpot_ms),
                                              ("e2e", self.e2e_ms))})


@dataclass(frozen=True)
class Summary:
    duration_s: float
    requests: int  # finished without error
    failures: int
    error_rate: float | None
    requests_per_s: float | None
    prompt_tokens: int
    output_tokens: int
    output_tokens_per_s: float | None
    unreported_usage: int
    client_lag_p99_ms: float | None
    latency_ms: dict[str, tuple[float | None, ...]]  # ttft/tpot/e2e -> p50, p95, p99

    def values(self) -> dict[str, float | None]:
        """Flat metric values, named as SLA checks name them (see `loadtest.sla`)."""
        flat: dict[str, float | None] = {
            f"{name}_p{q}_ms": value for name, row in self.latency_ms.items()
            for q, value in zip(QUANTILES, row, strict=True)}
        flat.update(error_rate=self.error_rate, requests_per_s=self.requests_per_s,
                    output_tokens_per_s=self.output_tokens_per_s)
        return flat

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "values": self.values()}, indent=2)

    def render(self) -> str:
        """The table `make load` prints."""
        lines = [
            f"{self.requests} requests in {self.duration_s:.1f} s "
            f"({_num(self.requests_per_s, '.2f')} req/s), {self.failures} failed "
            f"({_num(None if self.error_rate is None else self.error_rate * 100, '.2f')}%)",
            f"{self.output_tokens} output tokens ({_num(self.output_tokens_per_s, '.1f')} "
            f"tokens/s), {self.prompt_tokens} prompt tokens",
            "",
            f"{'latency (ms)':<26}{'p50':>10}{'p95':>10}{'p99':>10}",
        ]
        titles = {"ttft": "time to first token", "tpot": "time per output token",
                  "e2e": "end to end"}
        for name, row in self.latency_ms.items():
            cells = "".join(f"{_num(v, '.1f'):>10}" for v in row)
            lines.append(f"{titles[name] + ' (' + name.upper() + ')':<26}{cells}")
        if self.client_lag_p99_ms is not None:
            lines.append(f"load generator event-loop lag p99: {self.client_lag_p99_ms:.1f} ms")
            if self.client_lag_p99_ms > LAG_WARNING_MS:
                lines.append("warning: the load generator is short of CPU; its latencies "
                             "include its own queueing (add Locust workers)")
        if self.unreported_usage:
            lines.append(f"note: {self.unreported_usage} responses reported no usage; their "
                         "output tokens were counted from text chunks")
        return "\n".join(lines)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)
