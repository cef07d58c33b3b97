"""Sending datapoints to CloudWatch with PutMetricData.

A round's datapoints go straight out (`send`) when nothing older is waiting;
the ones CloudWatch did not take, and every round behind a backlog, wait in
the on-disk buffer and leave it only after CloudWatch accepted them
(`publish`), oldest first, with the timestamps they were measured at. Each
call carries at most 1,000 datapoints and stays under 1 MB (the API's
limits). When CloudWatch throttles or cannot be reached, publishing stops for
the round and waits an exponentially growing pause (with jitter, capped)
before the next try; whatever was not sent meanwhile is kept.

One invalid datapoint makes CloudWatch reject the whole call
(InvalidParameterValue), good datapoints with it, so invalid ones must never
travel with the rest. They are caught twice. Before a call, datapoints that
PutMetricData is documented to refuse are dropped: NaN and ±Inf, values
beyond ±2^360, and timestamps more than two weeks old or two hours ahead
(a buffer kept through a long shutdown). A call rejected anyway (or refused
by botocore's own parameter validation) is split in halves and each half
sent again, until the invalid datapoints are alone: only they are dropped,
logged and counted (`rejected_total`). Halving needs no knowledge of the
error, where parsing CloudWatch's message would depend on its wording and
name only the first bad member; it finds one bad datapoint among 1,000 in
about 20 calls. Split calls count against the same per-round call budget, so
many bad datapoints cannot stall a round: what is left is settled next time.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from agent.buffer import Datapoint, DatapointBuffer

log = logging.getLogger(__name__)

MAX_DATAPOINTS_PER_CALL = 1000
MAX_BYTES_PER_CALL = 900_000  # under the 1 MB request limit, with room for the envelope
REJECTED = {"InvalidParameterValue", "InvalidParameterCombination", "MissingParameter"}
MAX_VALUE = 2.0 ** 360
MAX_AGE_S = 14 * 86400
MAX_AHEAD_S = 2 * 3600
SEND_CALLS = 20  # a round's own datapoints: one call, and room to split a rejected one

Item = tuple[int, Datapoint]  # a buffer row id (or a position in a round) and its datapoint


@dataclass
class PublishStats:
    sent_total: int = 0
    rejected_total: int = 0
    failed_calls_total: int = 0


@dataclass
class Delivery:
    """What became of one batch: settled items (accepted or refused for good), calls made,
    and whether an outage or throttling stopped it before everything was settled."""

    accepted: list[Item] = field(default_factory=list)
    rejected: list[Item] = field(default_factory=list)
    calls: int = 0
    failed: bool = False


def to_cloudwatch(point: Datapoint) -> dict[str, Any]:
    return {
        "MetricName": point.name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in point.dimensions],
        "Timestamp": datetime.fromtimestamp(point.timestamp, tz=UTC),
        "Value": point.value,
        "Unit": point.unit,
        "StorageResolution": point.storage_resolution,
    }


def acceptable(point: Datapoint, now: float) -> bool:
    """What PutMetricData documents it accepts: a finite value within ±2^360, measured
    at most two weeks before `now` and at most two hours after it."""
    return (math.isfinite(point.value) and abs(point.value) <= MAX_VALUE
            and now - MAX_AGE_S <= point.timestamp <= now + MAX_AHEAD_S)


def batches(points: list[Item]) -> list[list[Item]]:
    """Split into calls within both the count and the size limit."""
    out: list[list[Item]] = []
    current: list[Item] = []
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
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, max_backoff_s: float = 300.0,
                 base_backoff_s: float = 1.0) -> None:
        self._client = client
        self._namespace = namespace
        self._buffer = buffer
        self._clock = clock
        self._wall = wall
        self._base = base_backoff_s
        self._max = max_backoff_s
        self._failures = 0
        self._next_try = 0.0
        self._refusal = ""  # why the last call was rejected, for the log line
        self.stats = PublishStats()

    @property
    def backing_off(self) -> bool:
        return self._clock() < self._next_try

    def send(self, points: list[Datapoint], max_calls: int = SEND_CALLS) -> list[Datapoint]:
        """Send datapoints straight to CloudWatch; returns those it did not take.

        For datapoints with nothing older waiting. What comes back (an outage,
        throttling, the call budget spent) is the caller's to keep; invalid
        datapoints are dropped and counted, not returned.
        """
        if self.backing_off or not points:
            return points
        settled: set[int] = set()
        self._deliver_all(list(enumerate(points)), max_calls,
                          lambda items: settled.update(i for i, _ in items))
        return [p for i, p in enumerate(points) if i not in settled]

    def publish(self, max_calls: int | None = None, *, even_if_backing_off: bool = False) -> int:
        """Send what is buffered, oldest first; returns how many CloudWatch accepted.

        `max_calls` bounds one go, so that draining a long outage's backlog does
        not hold up the rounds that produce new datapoints; the rest goes next time.
        `even_if_backing_off` is for the last try before the process stops.
        """
        if self.backing_off and not even_if_backing_off:
            return 0
        budget = sys.maxsize if max_calls is None else max_calls
        sent = 0
        while pending := self._buffer.oldest(MAX_DATAPOINTS_PER_CALL * 4):
            accepted, calls, finished = self._deliver_all(pending, budget, self._forget)
            sent += accepted
            budget -= calls
            if not finished:
                break
        return sent

    def _forget(self, items: list[Item]) -> None:
        if items:
            self._buffer.remove(i for i, _ in items)

    def _deliver_all(self, items: list[Item], budget: int,
                     settled: Callable[[list[Item]], None]) -> tuple[int, int, bool]:
        """Deliver batch after batch within `budget` calls, handing each batch's settled
        items to `settled` at once; returns (accepted, calls, everything settled)."""
        accepted = calls = 0
        for batch in batches(items):
            done = self._deliver(batch, budget - calls)
            settled(done.accepted + done.rejected)
            accepted += len(done.accepted)
            calls += done.calls
            if len(done.accepted) + len(done.rejected) < len(batch):
                return accepted, calls, False
        return accepted, calls, True

    def _deliver(self, batch: list[Item], budget: int) -> Delivery:
        """One batch: invalid datapoints out first, then calls, halving rejected parts."""
        done, now = Delivery(), self._wall()
        valid: list[Item] = []
        for item in batch:
            (valid if acceptable(item[1], now) else done.rejected).append(item)
        if done.rejected:
            self._refusal = "NaN, infinite, out of range or too old to be accepted"
        todo = [valid] if valid else []
        while todo and done.calls < budget:
            part = todo.pop()
            done.calls += 1
            outcome = self._put(part)
            if outcome is None:
                done.failed = True
                break
            if outcome:
                done.accepted += part
            elif len(part) == 1:
                done.rejected += part
            else:
                middle = len(part) // 2
                todo += [part[middle:], part[:middle]]  # the older half goes first
        self._count(done)
        return done

    def _count(self, done: Delivery) -> None:
        self.stats.sent_total += len(done.accepted)
        if done.rejected:
            self.stats.rejected_total += len(done.rejected)
            log.error("dropped %d datapoints CloudWatch refuses (%s), e.g. %s",
                      len(done.rejected), self._refusal, done.rejected[0][1])

    def _put(self, part: list[Item]) -> bool | None:
        """True: accepted; False: refused as invalid; None: failed, backing off."""
        try:
            self._client.put_metric_data(Namespace=self._namespace,
                                         MetricData=[to_cloudwatch(p) for _, p in part])
        except ParamValidationError as exc:  # botocore's own checks: no outage to wait out
            self._refusal = str(exc).replace("\n", " ")
            return False
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in REJECTED:
                self._refusal = f"{code}: {exc}"
                return False
            self._back_off(f"{code}: {exc}")
            return None
        except BotoCoreError as exc:  # unreachable, timed out
            self._back_off(repr(exc))
            return None
        self._failures = 0
        return True

    def _back_off(self, why: str) -> None:
        self.stats.failed_calls_total += 1
        self._failures += 1
        pause = min(self._max, self._base * 2 ** (self._failures - 1))
        pause *= random.uniform(0.5, 1.0)  # jitter: a fleet must not retry in step
        self._next_try = self._clock() + pause
        log.warning("CloudWatch publish failed (%s); %d datapoints kept, retrying in %.1f s",
                    why, len(self._buffer), pause)
