"""Serving statistics over one interval, from router and vLLM scrapes.

Latency percentiles (end to end, time to first token, inter-token) and the
request and error rates come from the router, which sees every request as
the client does; token rates, queue depth and KV-cache use come from vLLM,
which knows them exactly. Where the router is not scraped, vLLM's own
histograms stand in for the latencies. Every field is None when its source
had nothing for the interval, and None fields are never published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from llmfleet.core.prometheus import (
    Buckets,
    Snapshot,
    buckets_delta,
    counter_delta,
    histogram_quantile,
)

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


Pair = tuple[Snapshot | None, Snapshot | None]  # one source's scrapes: before, after


def _histogram(name: str, pair: Pair, **match: str) -> Buckets | None:
    before, after = pair
    if after is None:
        return None
    return buckets_delta(before.buckets(name, **match) if before else None,
                         after.buckets(name, **match))


def _merged_histogram(name: str, pairs: Sequence[Pair]) -> Buckets | None:
    """Bucket deltas summed over engines (per engine first, so one restart stays local)."""
    by_bound: dict[float, float] = {}
    for pair in pairs:
        for bound, count in _histogram(name, pair) or []:
            by_bound[bound] = by_bound.get(bound, 0.0) + count
    return sorted(by_bound.items()) if by_bound else None


def rate(name: str, pair: Pair, **match: str) -> float | None:
    """A counter's increase per second over the pair; None without two scrapes or a series."""
    before, after = pair
    if before is None or after is None or after.taken_at <= before.taken_at:
        return None
    delta = counter_delta(before.total(name, **match), after.total(name, **match))
    return None if delta is None else delta / (after.taken_at - before.taken_at)


def summed(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def averaged(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _quantiles(buckets: Buckets | None, *qs: float) -> list[float | None]:
    return [histogram_quantile(q, buckets) for q in qs]


def compute(router: Pair, engines: Sequence[Pair], model: str | None = None) -> ServingStats:
    """Statistics for the interval between each source's previous and latest scrape.

    Engine figures are combined over every engine on the instance: rates and
    queue lengths add up, KV-cache use is averaged, histograms are merged. With `model`,
    the router's figures are that model's only: a router of one pool among several also
    answers, and sends on, requests for the other pools' models, whose latency and errors
    are theirs (their own routers count them again), not this instance's.
    """
    match = {} if model is None else {"model": model}
    latency = (_histogram(ROUTER_LATENCY, router, **match)
               or _merged_histogram(VLLM_LATENCY, engines))
    ttft = _histogram(ROUTER_TTFT, router, **match) or _merged_histogram(VLLM_TTFT, engines)
    itl = _histogram(ROUTER_ITL, router, **match) or _merged_histogram(VLLM_ITL, engines)
    lat50, lat95, lat99 = _quantiles(latency, 0.5, 0.95, 0.99)
    ttft50, ttft95, ttft99 = _quantiles(ttft, 0.5, 0.95, 0.99)
    itl50, itl95 = _quantiles(itl, 0.5, 0.95)
    requests = rate(ROUTER_REQUESTS, router, **match)
    errors = rate(ROUTER_REQUESTS, router, status="5xx", **match)
    if requests is None:
        requests = summed([rate(VLLM_REQUESTS, pair) for pair in engines])
    error_rate = None
    if requests is not None and requests > 0:
        error_rate = (errors or 0.0) / requests
    latest = [after for _, after in engines if after is not None]
    return ServingStats(
        latency_p50_s=lat50, latency_p95_s=lat95, latency_p99_s=lat99,
        ttft_p50_s=ttft50, ttft_p95_s=ttft95, ttft_p99_s=ttft99,
        itl_p50_s=itl50, itl_p95_s=itl95,
        requests_per_s=requests, error_rate=error_rate,
        prompt_tokens_per_s=summed([rate(VLLM_PROMPT_TOKENS, p) for p in engines]),
        generation_tokens_per_s=summed([rate(VLLM_GENERATION_TOKENS, p) for p in engines]),
        requests_running=summed([s.total(VLLM_RUNNING) for s in latest]),
        requests_waiting=summed([s.total(VLLM_WAITING) for s in latest]),
        kv_cache_usage=averaged([s.mean(VLLM_KV_USAGE) for s in latest]),
    )
