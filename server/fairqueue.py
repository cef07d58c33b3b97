"""The router's bounded queue, served fairly between API keys.

When every engine that serves a model holds its `max_inflight` requests, a request waits
here (at most `queue_timeout_s`, at most `max_queue` requests in all). Served in arrival
order, one key that sends hundreds of requests at once would fill the queue ahead of every
other key, and each of their requests would wait for all of the flood before it. Served
fairly, each key gets its share of the slots as they free, whatever the others send.

Weighted fair queueing with unit cost per request (each request is one slot, whatever its
length; tokens are the per-key limits' business, `server.ratelimit`), for each group of
waiters that compete for the same slots (one model's engines: `group`): a key's waiting
request gets a virtual start `max(V, the key's last finish)` and finish `start + 1 / weight`,
where `V` is the start of the group's request served last, and the waiting request with the
smallest finish goes first. A key with weight 2 gets twice the slots of a key with weight 1
while both wait; a key that sends one request now and then finds its finish just past `V`,
ahead of a flooding key's backlog. Each group keeps its own clock: a key served at once on
a model with room does not move the clock of a model that is full. A request that leaves
before it is served (timed out, or its client gone) gives its key back its place. With
`fair` off, requests are served in arrival order.

A waiter is served only when a backend for its own request has room (`take`), so requests
for a model with room never wait behind those for a full one. `dispatch` hands out slots
whenever some may have freed: a request ends, a backend comes back or leaves, a stalled one
moves again, a request joins.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Waiter(Generic[T]):
    """One queued request: `take` reserves a slot for it, or says there is none (None)."""

    order: tuple[float, int]  # the finish tag, then the arrival: smallest first
    start: float
    key: str
    weight: float
    take: Callable[[], T | None]
    # Waiters of one group compete for the same slots, and find room or not alike: once
    # one finds none, a round of `dispatch` asks no other of the group.
    group: Hashable
    future: asyncio.Future[T] = field(repr=False)


class FairQueue(Generic[T]):
    """Waiting requests, and who goes first when a slot frees."""

    def __init__(self, fair: bool = True) -> None:
        self.fair = fair
        self._waiters: list[Waiter[T]] = []  # by `order`
        self._virtual: dict[Hashable, float] = {}  # each group's V
        self._finish: dict[tuple[Hashable, str], float] = {}  # each key's last finish
        self._queued: Counter[Hashable] = Counter()  # waiters by group
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._waiters)

    def waiting(self, group: Hashable) -> bool:
        """Whether requests of `group` wait (a new one must queue behind them)."""
        return self._queued[group] > 0

    def join(self, key: str, weight: float, take: Callable[[], T | None],
             group: Hashable = None) -> Waiter[T]:
        """Queue a request of `key`; `dispatch` may serve it at once."""
        arrival = next(self._arrivals)
        start = max(self._virtual.get(group, 0.0), self._finish.get((group, key), 0.0))
        finish = start + 1.0 / weight
        self._finish[(group, key)] = finish
        order = (finish, arrival) if self.fair else (float(arrival), arrival)
        waiter = Waiter(order, start, key, weight, take, group,
                        asyncio.get_running_loop().create_future())
        bisect.insort(self._waiters, waiter, key=lambda w: w.order)
        self._queued[group] += 1
        return waiter

    def leave(self, waiter: Waiter[T]) -> None:
        """A waiter gave up (timed out, or its client left) before it was served: its
        key's later requests move up by its share, as if it had never come."""
        if waiter not in self._waiters:
            return
        self._remove(waiter)
        if not self.fair:
            return
        cost = 1.0 / waiter.weight
        later = [w for w in self._waiters if w.group == waiter.group and w.key == waiter.key
                 and w.order > waiter.order]
        for w in later:
            w.order, w.start = (w.order[0] - cost, w.order[1]), w.start - cost
        slot = (waiter.group, waiter.key)
        if slot in self._finish:
            self._finish[slot] -= cost
        if later:
            self._waiters.sort(key=lambda w: w.order)
        self._forget_idle()

    def dispatch(self) -> None:
        """Serve waiters in order, each when a backend for it has room; a waiter whose
        `take` raises (no backend serves its model any more) gets that error."""
        full: set[Hashable] = set()
        for waiter in list(self._waiters):
            if waiter.group in full:
                continue
            try:
                taken = waiter.take()
            except Exception as exc:  # its own error; the others are still served
                self._remove(waiter)
                waiter.future.set_exception(exc)
                continue
            if taken is None:
                full.add(waiter.group)
                continue
            self._remove(waiter)
            group = waiter.group
            self._virtual[group] = max(self._virtual.get(group, 0.0), waiter.start)
            waiter.future.set_result(taken)
        self._forget_idle()

    def _remove(self, waiter: Waiter[T]) -> None:
        self._waiters.remove(waiter)
        self._queued[waiter.group] -= 1
        if not self._queued[waiter.group]:
            del self._queued[waiter.group]

    def _forget_idle(self) -> None:
        """Drop the state of keys and groups with nothing queued once it no longer leads
        their group's `V` (a key would start at `V` anyway): what is kept is bounded by the
        keys that wait or were served since their group's clock last moved past them."""
        if len(self._finish) > len(self._waiters):
            waiting = {(w.group, w.key) for w in self._waiters}
            self._finish = {slot: f for slot, f in self._finish.items()
                            if slot in waiting or f > self._virtual.get(slot[0], 0.0)}
        if len(self._virtual) > len(self._queued):
            live = {slot[0] for slot in self._finish}
            self._virtual = {g: v for g, v in self._virtual.items()
                             if g in self._queued or g in live}
