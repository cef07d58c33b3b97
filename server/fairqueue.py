"""The router's bounded queue, served fairly between API keys.

When every engine that serves a model holds its `max_inflight` requests, a request waits
here (at most `queue_timeout_s`, at most `max_queue` requests in all). Served in arrival
order, one key that sends hundreds of requests at once would fill the queue ahead of every
other key, and each of their requests would wait for all of the flood before it. Served
fairly, each key gets its share of the slots as they free, whatever the others send.

Weighted fair queueing with unit cost per request (each request is one slot, whatever its
length; tokens are the per-key limits' business, `server.ratelimit`): a key's waiting request
gets a virtual start `max(V, the key's last finish)` and finish `start + 1 / weight`, where
`V` is the start of the request served last, and the waiting request with the smallest
finish goes first. A key with weight 2 gets twice the slots of a key with weight 1 while
both wait; a key that sends one request now and then finds its finish just past `V`, ahead
of a flooding key's backlog. With `fair` off, requests are served in arrival order.

A waiter is served only when a backend for its own request has room (`take`), so requests
for a model with room never wait behind those for a full one. `dispatch` hands out slots
whenever some may have freed: a request ends, a backend comes back or leaves, a stalled one
moves again, a request joins.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from server.errors import APIError

T = TypeVar("T")


@dataclass(eq=False)
class Waiter(Generic[T]):
    """One queued request: `take` reserves a slot for it, or says there is none (None)."""

    order: tuple[float, int]  # the finish tag, then the arrival: smallest first
    start: float
    key: str
    take: Callable[[], T | None]
    # Waiters of one group find room or not alike (the same model, the same backends):
    # once one finds none, a round of `dispatch` asks no other of the group.
    group: object
    future: asyncio.Future[T] = field(repr=False)


class FairQueue(Generic[T]):
    """Waiting requests, and who goes first when a slot frees."""

    def __init__(self, fair: bool = True) -> None:
        self.fair = fair
        self._waiters: list[Waiter[T]] = []  # by `order`
        self._virtual = 0.0  # V: the start tag of the request served last
        self._finish: dict[str, float] = {}  # each key's last finish tag
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._waiters)

    def join(self, key: str, weight: float, take: Callable[[], T | None],
             group: object = None) -> Waiter[T]:
        """Queue a request of `key`; `dispatch` may serve it at once."""
        arrival = next(self._arrivals)
        start = max(self._virtual, self._finish.get(key, 0.0))
        finish = start + 1.0 / weight
        self._finish[key] = finish
        order = (finish, arrival) if self.fair else (float(arrival), arrival)
        waiter = Waiter(order, start, key, take, group,
                        asyncio.get_running_loop().create_future())
        bisect.insort(self._waiters, waiter, key=lambda w: w.order)
        return waiter

    def leave(self, waiter: Waiter[T]) -> None:
        """A waiter gave up (timed out, or its client left) before it was served."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._forget_idle()

    def dispatch(self) -> None:
        """Serve waiters in order, each when a backend for it has room; a waiter whose
        `take` raises (no backend serves its model any more) gets that error."""
        full: set[object] = set()
        for waiter in list(self._waiters):
            if waiter.group in full:
                continue
            try:
                taken = waiter.take()
            except APIError as exc:
                self._waiters.remove(waiter)
                waiter.future.set_exception(exc)
                continue
            if taken is None:
                full.add(waiter.group)
                continue
            self._waiters.remove(waiter)
            self._virtual = max(self._virtual, waiter.start)
            waiter.future.set_result(taken)
        self._forget_idle()

    def _forget_idle(self) -> None:
        """Drop the finish tags of keys with nothing queued that no longer lead `V`: they
        would start at `V` anyway (so the table holds at most the keys waiting)."""
        if len(self._finish) > len(self._waiters):
            waiting = {w.key for w in self._waiters}
            self._finish = {k: f for k, f in self._finish.items()
                            if k in waiting or f > self._virtual}
