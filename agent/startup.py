"""Time to serving: from the instance's boot to the first time its router says it is ready.

How long a new instance takes to serve decides how far ahead scaling must act, and what the
group's health-check grace and warm-up should be (docs/deploy.md "Time to serving"). The
agent measures it once per boot: each round, until the router's `/ready` (or, without a
router, the first engine's `/health`) answers 200, it asks; the round that sees the first
200 carries `TimeToServingSeconds`, the seconds since the kernel booted. A boot, not the
EC2 launch: the launch comes some seconds earlier (EC2 starts the machine, firmware runs)
and is not visible on the instance without an EC2 API call; a stopped instance that starts
again (a warm pool's) boots again, and its time counts from that boot, which is what its
next scale-out waits for.

An agent restarted on an instance that already served must not publish its uptime as a
start: the boot's id is written to the state directory once the figure is taken, and a
later process on the same boot publishes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import urllib3

from agent.fetch import PageFetcher
from llmfleet.core.prometheus import ScrapeError

log = logging.getLogger(__name__)

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PROC_STAT = Path("/proc/stat")


def boot_time(stat: Path = PROC_STAT) -> float | None:
    """When the kernel booted (seconds since the epoch), from /proc/stat's `btime`."""
    try:
        for line in stat.read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def boot_id(path: Path = BOOT_ID) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class StartupClock:
    """Watches for the first ready answer of this boot and says how long it took, once."""

    def __init__(self, ready_url: str | None, fetcher: PageFetcher, marker: Path,
                 wall: Callable[[], float], booted_at: float | None,
                 this_boot: str | None) -> None:
        """`marker` holds the id of the boot whose time was taken; `booted_at` None (no
        /proc) means nothing is measured."""
        self._url, self._fetcher, self._marker = ready_url, fetcher, marker
        self._wall, self._booted_at, self._boot = wall, booted_at, this_boot
        self.seconds: float | None = None  # this boot's time to serving, once seen
        self._done = ready_url is None or booted_at is None or self._already_taken()

    def _already_taken(self) -> bool:
        try:
            return self._boot is not None and self._marker.read_text().strip() == self._boot
        except OSError:
            return False

    def check(self) -> float | None:
        """The time to serving in the round the first ready answer is seen; None in every
        other round (blocking: call on a worker thread)."""
        if self._done:
            return None
        assert self._url is not None and self._booted_at is not None
        try:
            self._fetcher.get(self._url, {})
        except (urllib3.exceptions.HTTPError, ScrapeError):
            return None  # not ready yet (or not up): ask again next round
        self._done = True
        self.seconds = max(0.0, self._wall() - self._booted_at)
        log.info("serving %.1f s after boot", self.seconds)
        if self._boot is not None:
            try:
                self._marker.parent.mkdir(parents=True, exist_ok=True)
                self._marker.write_text(self._boot + "\n")
            except OSError as exc:  # a restart on this boot would publish again: say so
                log.warning("could not record that this boot's start was measured: %s", exc)
        return self.seconds
