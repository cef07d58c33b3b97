"""Sending buffered datapoints to CloudWatch with PutMetricData.

Datapoints leave the on-disk buffer only after CloudWatch accepted them.
Each call carries at most 1,000 datapoints and stays under 1 MB (the API's
limits), oldest first, with the timestamps they were measured at. When
CloudWatch throttles or cannot be reached, publishing stops for the round
and waits an exponentially growing pause (with jitter, capped) before the
next try; the buffer keeps everything meanwhile. A batch CloudWatch rejects
as invalid can never succeed: it is dropped, logged and counted rather than
blocking everything behind it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from agent.buffer import Datapoint, DatapointBuffer

log = logging.getLogger(__name__)

MAX_DATAPOINTS_PER_CALL = 1000
MAX_BYTES_PER_CALL = 900_000  # under the 1 MB request limit, with room for the envelope
REJECTED = {"InvalidParameterValue", "InvalidParameterCombination", "MissingParameter"}


@dataclass
class PublishStats:
    sent_total: int = 0
    rejected_total: int = 0
    failed_calls_total: int = 0


def to_cloudwatch(point: Datapoint) -> dict[str, Any]:
    return {
        "MetricName": point.name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in point.dimensions],
        "Timestamp": datetime.fromtimestamp(point.timestamp, tz=UTC),
        "Value": point.value,
        "Unit": point.unit,
        "StorageResolution": point.storage_resolution,
    }


def batches(points: list[tuple[int, Datapoint]]) -> list[list[tuple[int, Datapoint]]]:
    """Split into calls within both the count and the size limit."""
    out: list[list[tuple[int, Datapoint]]] = []
    current: list[tuple[int, Datapoint]] = []
    size = 0
    for item in points:
        # A datapoint's query-protocol encoding is a few times its JSON; 4x is generous.
        cost = 4 * len(item[1].to_json()) + 200
        if current and (len(current) >= MAX_DATAPOINTS_PER_CALL
                        or size + cost > MAX_BYTES_PER_CALL):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += cost
    if current:
        out.append(current)
    return out


class Publisher:
    def __init__(self, client: Any, namespace: str, buffer: DatapointBuffer, *,
                 clock: Callable[[], float] = time.monotonic, max_backoff_s: float = 300.0,
                 base_backoff_s: float = 1.0) -> None:
        self._client = client
        self._namespace = namespace
        self._buffer = buffer
        self._clock = clock
        self._base = base_backoff_s
        self._max = max_backoff_s
        self._failures = 0
        self._next_try = 0.0
        self.stats = PublishStats()

    @property
    def backing_off(self) -> bool:
        return self._clock() < self._next_try

    def publish(self, max_calls: int | None = None, *, even_if_backing_off: bool = False) -> int:
        """Send what is buffered, oldest first; returns how many CloudWatch accepted.

        `max_calls` bounds one go, so that draining a long outage's backlog does
        not hold up the rounds that produce new datapoints; the rest goes next time.
        `even_if_backing_off` is for the last try before the process stops.
        """
        if self.backing_off and not even_if_backing_off:
            return 0
        sent, calls = 0, 0
        while pending := self._buffer.oldest(MAX_DATAPOINTS_PER_CALL * 4):
            for batch in batches(pending):
                if max_calls is not None and calls >= max_calls:
                    return sent
                calls += 1
                accepted = self._send(batch)
                if accepted is None:
                    return sent
                sent += accepted
        self._failures = 0
        return sent

    def _send(self, batch: list[tuple[int, Datapoint]]) -> int | None:
        """How many CloudWatch accepted (0 for a rejected batch); None when it failed."""
        try:
            self._client.put_metric_data(Namespace=self._namespace,
                                         MetricData=[to_cloudwatch(p) for _, p in batch])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in REJECTED:
                self.stats.rejected_total += len(batch)
                log.error("CloudWatch rejected %d datapoints (%s); dropped: %s",
                          len(batch), code, exc)
                self._buffer.remove(i for i, _ in batch)
                return 0
            self._back_off(f"{code}: {exc}")
            return None
        except BotoCoreError as exc:  # unreachable, timed out
            self._back_off(repr(exc))
            return None
        self._buffer.remove(i for i, _ in batch)
        self.stats.sent_total += len(batch)
        return len(batch)

    def _back_off(self, why: str) -> None:
        self.stats.failed_calls_total += 1
        self._failures += 1
        pause = min(self._max, self._base * 2 ** (self._failures - 1))
        pause *= random.uniform(0.5, 1.0)  # jitter: a fleet must not retry in step
        self._next_try = self._clock() + pause
        log.warning("CloudWatch publish failed (%s); %d datapoints kept, retrying in %.1f s",
                    why, len(self._buffer), pause)
