"""The `/metrics` pages a round scrapes: the router's (when set) and every engine's.

All sources are fetched concurrently, on worker threads (urllib3, which boto3
loads anyway; `agent.fetch` bounds each page in size and time). A source that
fails, answers with more than `scrape_max_bytes`, takes longer than about
`scrape_timeout_s` in all (a page that trickles in), or returns something that
is not Prometheus text is counted and skipped for the round; its previous
scrape is kept, so the next good one covers both intervals and no counts are
lost. The first scrape of a source only primes it: cumulative histograms since
the engine started say nothing about this interval. A failure is logged when a
source starts failing and when it works again, not every round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import urllib3

from agent.fetch import PageFetcher
from agent.settings import AgentSettings
from agent.status import AgentState
from llmfleet.core.prometheus import ScrapeError, Snapshot
from llmfleet.core.serving import VLLM_GENERATION_TOKENS, Pair

log = logging.getLogger(__name__)


@dataclass
class Source:
    """One `/metrics` endpoint and what it said last time."""

    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    previous: Snapshot | None = None

    def advance(self, latest: Snapshot | None) -> Pair:
        """The pair to compute over; a failed scrape keeps the previous one for next time."""
        if latest is None:
            return (None, None)
        previous, self.previous = self.previous, latest
        return (previous, latest) if previous is not None else (None, None)


class Scraper:
    """Fetches every source once a round and pairs each page with the one before."""

    def __init__(self, router: Source | None, engines: list[Source], fetcher: PageFetcher,
                 status: AgentState, clock: Callable[[], float]) -> None:
        self._router = router
        self._engines = engines
        self._fetcher = fetcher
        self._status = status
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: AgentSettings, status: AgentState,
                      clock: Callable[[], float]) -> Scraper:
        router = Source("router", settings.router_url + "/metrics", _auth(settings)) \
            if settings.router_url else None
        engines = [Source(f"engine{i}", url + "/metrics")
                   for i, url in enumerate(settings.engine_urls)]
        fetcher = PageFetcher(settings.scrape_timeout_s, settings.scrape_max_bytes, clock)
        return cls(router, engines, fetcher, status, clock)

    def close(self) -> None:
        self._fetcher.close()

    async def scrape(self) -> tuple[Pair, list[Pair]]:
        """The router's pair ((None, None) without a router) and each engine's."""
        sources = [*([self._router] if self._router else []), *self._engines]
        scraped = await asyncio.gather(*(self._scrape(s) for s in sources))
        pairs = [s.advance(snap) for s, snap in zip(sources, scraped, strict=True)]
        return ((None, None), pairs) if self._router is None else (pairs[0], pairs[1:])

    def served_model(self) -> str | None:
        """The model vLLM names in its labels, when every engine serves the same one."""
        names = set().union(*(s.previous.label_values(VLLM_GENERATION_TOKENS, "model_name")
                              for s in self._engines if s.previous is not None))
        return names.pop() if len(names) == 1 else None

    async def _scrape(self, source: Source) -> Snapshot | None:
        loop = asyncio.get_running_loop()
        try:
            text = await loop.run_in_executor(None, self._fetcher.get, source.url,
                                              source.headers)
            snapshot = Snapshot.parse(text, self._clock())
        except (urllib3.exceptions.HTTPError, ScrapeError) as exc:
            if self._status.scrape_failed(source.name):  # say it once, not every round
                log.warning("scraping %s (%s) failed: %s", source.name, source.url, exc)
            return None
        if self._status.scrape_worked(source.name):
            log.info("scraping %s works again", source.name)
        return snapshot


def _auth(settings: AgentSettings) -> dict[str, str]:
    key = settings.router_api_key
    return {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}
