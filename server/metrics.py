"""Every Prometheus metric the router exports, on a registry passed in.

Names follow `llmfleet_<thing>_<unit>`; labels stay bounded: `model` is only
ever a model some backend serves, `backend` a configured URL, `status` a
class such as `2xx`. Buckets are sized for LLM traffic: end-to-end latencies
reach minutes, first tokens seconds, and inter-token gaps are milliseconds.

Resolving a labelled child (`labels()`) costs microseconds, so the request
path uses `ModelSeries`, one model's children resolved once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from server.archiving import ArchiveMetrics

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5, 5)


@dataclass
class ModelSeries:
    """One model's metric children."""

    model: str
    latency: Histogram
    ttft: Histogram
    itl: Histogram
    prompt_tokens: Counter
    completion_tokens: Counter
    requests_family: Counter
    _requests: dict[str, Counter] = field(default_factory=dict)

    def count(self, status: str) -> None:
        child = self._requests.get(status)
        if child is None:
            child = self._requests[status] = self.requests_family.labels(self.model, status)
        child.inc()


class RouterMetrics:
    """The router's metric family handles."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._models: dict[str, ModelSeries] = {}
        self.requests = Counter(
            "llmfleet_requests_total", "Requests answered, by model and status class.",
            ["model", "status"], registry=registry)
        self.latency = Histogram(
            "llmfleet_request_duration_seconds",
            "End-to-end request latency as the router saw it.",
            ["model"], buckets=LATENCY_BUCKETS, registry=registry)
        self.ttft = Histogram(
            "llmfleet_time_to_first_token_seconds",
            "Time from request arrival to the first streamed chunk.",
            ["model"], buckets=TTFT_BUCKETS, registry=registry)
        self.itl = Histogram(
            "llmfleet_inter_token_latency_seconds",
            "Gap between consecutive streamed chunks.",
            ["model"], buckets=ITL_BUCKETS, registry=registry)
        self.prompt_tokens = Counter(
            "llmfleet_prompt_tokens_total", "Prompt tokens reported by the engines.",
            ["model"], registry=registry)
        self.completion_tokens = Counter(
            "llmfleet_completion_tokens_total",
            "Completion tokens reported by the engines (counted from streamed events when "
            "the client did not ask for usage).",
            ["model"], registry=registry)
        self.in_flight = Gauge(
            "llmfleet_requests_in_flight", "Requests being served, by backend.",
            ["backend"], registry=registry)
        self.backend_healthy = Gauge(
            "llmfleet_backend_healthy", "1 when the backend passed its last health check.",
            ["backend"], registry=registry)
        self.rate_limited = Counter(
            "llmfleet_rate_limited_total", "Requests refused by per-key limits or queue bounds.",
            ["reason"], registry=registry)
        self.retries = Counter(
            "llmfleet_retries_total", "Requests retried on another backend.",
            ["model"], registry=registry)
        self.access_log_dropped = Counter(
            "llmfleet_access_log_dropped_lines_total",
            "Access log lines dropped because they could not be written (e.g. a full disk).",
            registry=registry)
        self.draining = Gauge(
            "llmfleet_router_draining",
            "1 once the router drains: the instance is leaving the fleet.", registry=registry)
        self.drain_refused = Counter(
            "llmfleet_drain_refused_total",
            "Completion requests refused because the router drains.", registry=registry)
        self.routed = Counter(
            "llmfleet_routed_total", "Alias requests resolved by the routing policy.",
            ["policy", "model"], registry=registry)
        self.prefix_blocks = Counter(
            "llmfleet_prefix_blocks_total",
            "Cache-aware balancing: prompt blocks sent to an engine that was sent them before "
            "(matched) and not (unmatched).", ["result"], registry=registry)
        self.archive = ArchiveMetrics(
            Counter("llmfleet_archive_records_total",
                    "Archive records written to the spool (spooled) or lost (dropped: the "
                    "spool or the memory before it full, or the disk failing).", ["result"],
                    registry=registry),
            Gauge("llmfleet_archive_spool_bytes",
                  "Bytes in the archive's spool on disk, waiting for S3.", registry=registry),
            Counter("llmfleet_archive_segments_sent_total",
                    "Spool segments this router sent to S3 (on an instance the agent sends "
                    "them instead).", registry=registry))
        self.prefix_matched = self.prefix_blocks.labels("matched")
        self.prefix_unmatched = self.prefix_blocks.labels("unmatched")

    def model(self, model: str) -> ModelSeries:
        series = self._models.get(model)
        if series is None:
            series = self._models[model] = ModelSeries(
                model, self.latency.labels(model), self.ttft.labels(model),
                self.itl.labels(model), self.prompt_tokens.labels(model),
                self.completion_tokens.labels(model), self.requests)
        return series
