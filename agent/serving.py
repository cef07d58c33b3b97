"""Serving statistics over one interval, from router and vLLM scrapes.

Latency percentiles (end to end, time to first token, inter-token) and the
request and error rates come from the router, which sees every request as
the client does; token rates, queue depth and KV-cache use come from vLLM,
which knows them exactly. Where the router is not scraped, vLLM's own
histograms stand in for the latencies. Every field is None when its source
had nothing for the interval, and None fields are never published.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from agent.scrape import Buckets, Snapshot, buckets_delta, counter_delta, histogram_quantile

ROUTER_LATENCY = "llmfleet_request_duration_seconds"
ROUTER_TTFT = "llmfleet_time_to_first_token_seconds"
ROUTER_ITL = "llmfleet_inter_token_latency_seconds"
ROUTER_REQUESTS = "llmfleet_requests_total"
VLLM_LATENCY = "vllm:e2e_request_latency_seconds"
VLLM_TTFT = "vllm:time_to_first_token_seconds"
VLLM_ITL = "vllm:inter_token_latency_seconds"
VLLM_REQUESTS = "vllm:request_success_total"
VLLM_PROMPT_TOKENS = "vllm:prompt_tokens_total"
VLLM_GENERATION_TOKENS = "vllm:generation_tokens_total"
VLLM_RUNNING = "vllm:num_requests_running"
VLLM_WAITING = "vllm:num_requests_waiting"
VLLM_KV_USAGE = "vllm:kv_cache_usage_perc"


@dataclass(frozen=True)
class ServingStats:
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    ttft_p99_s: float | None = None
    itl_p50_s: float | None = None
    itl_p95_s: float | None = None
    requests_per_s: float | None = None
    error_rate: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage: float | None = None

    def present(self) -> dict[str, float]:
        """The fields that have a value."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


def _histogram(name: str, before: Snapshot | None, after: Snapshot | None) -> Buckets | None:
    if after is None:
        return None
    return buckets_delta(before.buckets(name) if before else None, after.buckets(name))


def _rate(name: str, before: Snapshot | None, after: Snapshot | None,
          **match: str) -> float | None:
    if before is None or after is None or after.taken_at <= before.taken_at:
        return None
    delta = counter_delta(before.total(name, **match), after.total(name, **match))
    return None if delta is None else delta / (after.taken_at - before.taken_at)


def _quantiles(buckets: Buckets | None, *qs: float) -> list[float | None]:
    return [histogram_quantile(q, buckets) for q in qs]


def compute(router: tuple[Snapshot | None, Snapshot | None],
            engine: tuple[Snapshot | None, Snapshot | None]) -> ServingStats:
    """Statistics for the interval between each pair's first and second scrape."""
    r0, r1 = router
    v0, v1 = engine
    latency = _histogram(ROUTER_LATENCY, r0, r1) or _histogram(VLLM_LATENCY, v0, v1)
    ttft = _histogram(ROUTER_TTFT, r0, r1) or _histogram(VLLM_TTFT, v0, v1)
    itl = _histogram(ROUTER_ITL, r0, r1) or _histogram(VLLM_ITL, v0, v1)
    lat50, lat95, lat99 = _quantiles(latency, 0.5, 0.95, 0.99)
    ttft50, ttft95, ttft99 = _quantiles(ttft, 0.5, 0.95, 0.99)
    itl50, itl95 = _quantiles(itl, 0.5, 0.95)
    requests = _rate(ROUTER_REQUESTS, r0, r1)
    errors = _rate(ROUTER_REQUESTS, r0, r1, status="5xx")
    if requests is None:
        requests = _rate(VLLM_REQUESTS, v0, v1)
    error_rate = None
    if requests is not None and requests > 0:
        error_rate = (errors or 0.0) / requests
    return ServingStats(
        latency_p50_s=lat50, latency_p95_s=lat95, latency_p99_s=lat99,
        ttft_p50_s=ttft50, ttft_p95_s=ttft95, ttft_p99_s=ttft99,
        itl_p50_s=itl50, itl_p95_s=itl95,
        requests_per_s=requests, error_rate=error_rate,
        prompt_tokens_per_s=_rate(VLLM_PROMPT_TOKENS, v0, v1),
        generation_tokens_per_s=_rate(VLLM_GENERATION_TOKENS, v0, v1),
        requests_running=v1.total(VLLM_RUNNING) if v1 else None,
        requests_waiting=v1.total(VLLM_WAITING) if v1 else None,
        kv_cache_usage=v1.mean(VLLM_KV_USAGE) if v1 else None,
    )
