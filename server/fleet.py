"""The console's live view of this router: its figures every few seconds, and its agent's.

A background task snapshots the router's own Prometheus registry every
`interval_s` and turns the difference from the snapshot `window_s` earlier into
rates and percentiles, with the same arithmetic the agent uses for CloudWatch
(`llmfleet.core.prometheus`, `llmfleet.core.serving`): one implementation of `rate()` and
`histogram_quantile()`, so the console and the dashboards agree. Where the
agent runs beside the router (`agent_url`), its latest round adds GPU
utilisation, power and cost. The last `history_s` of points are kept, so a page
opened in the middle of a load test sees the minutes before it too.

Each router reports itself and the agent on its instance; the fleet-wide
picture, every instance summed, is the CloudWatch dashboard's.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from llmfleet.core.prometheus import Snapshot
from llmfleet.core.serving import compute, rate
from llmfleet.core.wire.agent import AgentStatus
from server.backends import BackendPool, bounded_get, describe, read_capped
from server.periodic import Periodic

log = logging.getLogger(__name__)

OUTPUT_TOKENS = "llmfleet_completion_tokens_total"
PROMPT_TOKENS = "llmfleet_prompt_tokens_total"
MAX_STATUS_BYTES = 1 << 20  # the agent's /status; a few KB with eight GPUs


@dataclass(frozen=True)
class AgentView:
    """What the agent's latest round said, or why there is nothing to say."""

    state: str  # "ok", "stale", "unreachable" or "not configured"
    instance_type: str | None = None
    model: str | None = None
    age_s: float | None = None
    gpus: tuple[dict[str, float | None], ...] = ()  # GpuStatus as JSON, for `view()`
    gpu_utilization_pct: float | None = None
    gpu_power_w: float | None = None
    cost_usd_per_hour: float | None = None


@dataclass(frozen=True)
class FleetPoint:
    """One sample: rates and percentiles over the window that ends at `t`."""

    t: float  # seconds since the epoch
    requests_per_s: float | None
    error_rate: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    output_tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    in_flight: int
    queued: int
    healthy_backends: int
    gpu_utilization_pct: float | None
    gpu_power_w: float | None
    cost_usd_per_hour: float | None
    cost_usd_per_million_output_tokens: float | None


def registry_snapshot(registry: CollectorRegistry, taken_at: float) -> Snapshot:
    """The registry's samples as the agent would have scraped them, without the text."""
    values = {(s.name, tuple(sorted(s.labels.items()))): float(s.value)
              for family in registry.collect() for s in family.samples}
    return Snapshot(values, taken_at)


def _zero_if_unseen(value: float | None, before: Snapshot, after: Snapshot) -> float | None:
    """A rate that is None only for want of time: a counter with no series yet is 0, since
    this router counts every request it answers."""
    return 0.0 if value is None and after.taken_at > before.taken_at else value


def per_million(usd_per_hour: float | None, tokens_per_s: float | None) -> float | None:
    """Cost per million output tokens at this rate; None while nothing is generated."""
    if usd_per_hour is None or not tokens_per_s:
        return None
    return usd_per_hour / (tokens_per_s * 3600) * 1e6


def agent_view(status: AgentStatus, now: float) -> AgentView:
    """Summarise the agent's `/status` body: GPU utilisation averaged, power summed."""
    latest = status.latest
    if latest is None:
        return AgentView("stale")
    gpus = latest.gpus
    utils = [g.utilization_pct for g in gpus if g.utilization_pct is not None]
    powers = [g.power_w for g in gpus if g.power_w is not None]
    age = now - latest.at
    # Stale after three of the agent's rounds; its /health knows its interval.
    stale_after_s = 3 * status.health.interval_s + 5
    return AgentView(
        "ok" if age <= stale_after_s else "stale",
        instance_type=latest.instance_type, model=latest.model,
        age_s=round(age, 1), gpus=tuple(g.model_dump(mode="json") for g in gpus),
        gpu_utilization_pct=sum(utils) / len(utils) if utils else None,
        gpu_power_w=sum(powers) if powers else None,
        cost_usd_per_hour=latest.cost_usd_per_hour)


class FleetMonitor:
    """Samples the router (and its agent) in the background; `view()` is the JSON."""

    def __init__(self, registry: CollectorRegistry, pool: BackendPool,
                 client: httpx.AsyncClient, *, interval_s: float, window_s: float,
                 history_s: float, agent_url: str | None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._pool = pool
        self._client = client  # the router's background client (server.app); not closed here
        self.interval_s = interval_s
        self.window_s = window_s
        self._agent_url = agent_url
        self._clock = clock
        self._wall = wall
        self._snapshots: deque[Snapshot] = deque(maxlen=max(2, round(window_s / interval_s) + 1))
        self.points: deque[FleetPoint] = deque(maxlen=max(1, round(history_s / interval_s)))
        self.agent = AgentView("not configured" if agent_url is None else "unreachable")
        self._sampler = Periodic("fleet-monitor", interval_s, self.sample)

    async def start(self) -> None:
        self._snapshots.append(registry_snapshot(self._registry, self._clock()))
        self._sampler.start()

    async def stop(self) -> None:
        await self._sampler.stop()

    async def sample(self) -> FleetPoint:
        """Take one snapshot, refresh the agent's figures and append a point."""
        if self._agent_url is not None:
            self.agent = await self._read_agent(self._agent_url)
        snapshot = registry_snapshot(self._registry, self._clock())
        before = self._snapshots[0] if self._snapshots else snapshot
        self._snapshots.append(snapshot)
        point = self._point(before, snapshot)
        self.points.append(point)
        return point

    async def _read_agent(self, url: str) -> AgentView:
        """The agent's `/status`, read whole within one interval (1 s at most) and
        `MAX_STATUS_BYTES`, or "unreachable" (logged once, with no more than `describe`)."""
        try:
            async with bounded_get(self._client, f"{url}/status",
                                   min(1.0, self.interval_s)) as resp:
                body = AgentStatus.model_validate_json(await read_capped(resp, MAX_STATUS_BYTES))
        except (httpx.HTTPError, TimeoutError, ValueError) as exc:
            if self.agent.state != "unreachable":
                log.warning("the agent at %s cannot be read: %s", url, describe(exc, "/status"))
            return AgentView("unreachable")
        return agent_view(body, self._wall())

    def _point(self, before: Snapshot, after: Snapshot) -> FleetPoint:
        stats = compute((before, after), [])
        requests = _zero_if_unseen(stats.requests_per_s, before, after)
        tokens = _zero_if_unseen(rate(OUTPUT_TOKENS, (before, after)), before, after)
        prompt = _zero_if_unseen(rate(PROMPT_TOKENS, (before, after)), before, after)
        agent = self.agent if self.agent.state == "ok" else AgentView(self.agent.state)
        backends = self._pool.backends
        return FleetPoint(
            t=self._wall(), requests_per_s=requests, error_rate=stats.error_rate,
            latency_p50_s=stats.latency_p50_s, latency_p95_s=stats.latency_p95_s,
            ttft_p50_s=stats.ttft_p50_s, ttft_p95_s=stats.ttft_p95_s,
            output_tokens_per_s=tokens, prompt_tokens_per_s=prompt,
            in_flight=sum(b.outstanding for b in backends), queued=self._pool.waiting,
            healthy_backends=sum(b.serving for b in backends),
            gpu_utilization_pct=agent.gpu_utilization_pct, gpu_power_w=agent.gpu_power_w,
            cost_usd_per_hour=agent.cost_usd_per_hour,
            cost_usd_per_million_output_tokens=per_million(agent.cost_usd_per_hour, tokens))

    def view(self) -> dict[str, Any]:
        """What `/console/fleet` answers."""
        return {
            "interval_s": self.interval_s, "window_s": self.window_s, "now": self._wall(),
            "backends": [{"url": b.url, "pool": b.pool, "healthy": b.healthy,
                          "draining": b.draining,
                          "models": sorted(b.models),
                          "in_flight": b.outstanding, "last_error": b.last_error,
                          "stalled": self._pool.is_stalled(b)}
                         for b in self._pool.backends],
            "agent": asdict(self.agent),
            "series": [asdict(p) for p in self.points],
        }
