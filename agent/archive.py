"""Sending the router's archive to S3 from the instance (`llmfleet.core.archive`).

On an instance the router writes its archive's spool (`server/archiving.py`) and the agent
sends it: the router faces the network and holds no AWS credentials (it cannot reach the
instance metadata service), while the agent already publishes to AWS with the instance
role, whose policy lets it put objects under the archive's prefix and nothing else there.
The spool's directory is the router's to write and the agent's group's to read and delete
(`infrastructure/modules/compute/user_data`).

A round every `archive_interval_s` sends every sealed segment; a failed round (S3 down,
throttled, refused) leaves its segments for the next. When the instance leaves the fleet
the lifecycle watcher, once the router has drained and sealed its last records, sends what
is left before it lets the group terminate the instance (`LifecycleWatcher._check`), within
the drain's bound: the disk leaves with the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agent.cost import Identity
from agent.settings import AgentSettings
from agent.status import AgentState
from llmfleet.core.archive import Uploader, s3_client

log = logging.getLogger(__name__)


class ArchiveSender:
    """Rounds of `Uploader.round` on the agent's loop, in a worker thread (boto3 blocks),
    counted in the agent's status."""

    def __init__(self, uploader: Uploader, status: AgentState, interval_s: float) -> None:
        self.uploader, self._status, self._interval_s = uploader, status, interval_s
        self._lock = asyncio.Lock()  # one sender at a time: rounds and the final send

    async def run(self, stop: asyncio.Event) -> None:
        """Send a round every interval until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
            await self.send(None)

    async def send(self, deadline: float | None) -> bool:
        """One round (`deadline` None), or rounds until all is sent or `deadline`
        (time.monotonic) passes. True when nothing sealed is left."""
        async with self._lock:
            left = await asyncio.to_thread(self._send, deadline)
            s, u = self._status, self.uploader
            s.archive_sent_total, s.archive_failures_total = u.sent_segments, u.failures
            if left is not None:
                s.archive_pending = left
            return left == 0

    def _send(self, deadline: float | None) -> int | None:
        """In the worker thread: send, then count what is left (listed once, off the
        agent's loop); None when the spool's directory cannot be read."""
        try:
            if deadline is None:
                self.uploader.round()
            else:
                self.uploader.send_all(deadline)
            return len(self.uploader.pending())
        except OSError as exc:  # the spool's directory unreadable: say so, go on
            log.warning("archive: the spool cannot be read: %s", exc.strerror)
            return None


def build_sender(settings: AgentSettings, identity: Identity,
                 status: AgentState) -> ArchiveSender | None:
    """The sender these settings ask for: None unless both the spool and the bucket are
    named. Objects carry the instance's id (else its host name) in their keys."""
    if settings.archive_dir is None or settings.archive_bucket is None:
        return None
    host = identity.instance_id or settings.archive_host
    client = s3_client(identity.region, settings.s3_endpoint_url)
    uploader = Uploader(settings.archive_dir, client, settings.archive_bucket,
                        settings.archive_prefix, host)
    return ArchiveSender(uploader, status, settings.archive_interval_s)
