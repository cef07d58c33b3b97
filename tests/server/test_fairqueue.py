"""The router's queue served fairly between keys (`server.fairqueue`): the order it serves,
the keys' weights, and a real router where one key floods and another is served in its turn.
The benchmark of the same: `make bench-fair` (BENCHMARKS.md)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from server.auth import KeyStore, load_keys_file
from server.errors import NoHealthyBackend
from server.fairqueue import FairQueue
from tests.helpers.fake_upstream import FakeControl, create_fake_upstream
from tests.helpers.router import TEST_KEY, RouterFactory, eventually, lists
from tests.helpers.servers import ServerThread


def served_order(fair: bool, arrivals: list[tuple[str, float]]) -> list[str]:
    """Queue `arrivals` (key, weight) while nothing has room, then free one slot at a time:
    the keys in the order they were served."""
    async def run() -> list[str]:
        queue: FairQueue[str] = FairQueue(fair)
        room = 0
        served: list[str] = []
        done: set[object] = set()

        def taker(key: str) -> Callable[[], str | None]:
            def take() -> str | None:
                nonlocal room
                if room == 0:
                    return None
                room -= 1
                return key
            return take

        waiters = [queue.join(key, weight, taker(key)) for key, weight in arrivals]
        queue.dispatch()
        for _ in arrivals:
            room = 1
            queue.dispatch()
            served += [w.key for w in waiters if w.future.done() and w not in done]
            done.update(w for w in waiters if w.future.done())
        return served

    return asyncio.run(run())


def test_a_flood_queued_first_does_not_keep_a_later_key_waiting_behind_it() -> None:
    arrivals = [("flood", 1.0)] * 8 + [("polite", 1.0)] * 2
    fair = served_order(True, arrivals)
    assert fair.index("polite") <= 1  # its first request goes at the next free slot
    fifo = served_order(False, arrivals)
    assert fifo == ["flood"] * 8 + ["polite"] * 2


def test_a_key_of_weight_two_gets_two_slots_for_each_of_a_key_of_weight_one() -> None:
    arrivals = [("light", 1.0)] * 6 + [("heavy", 2.0)] * 6
    first_six = served_order(True, arrivals)[:6]
    assert first_six.count("heavy") == 4 and first_six.count("light") == 2


def test_a_waiter_whose_model_lost_its_last_backend_gets_the_error() -> None:
    async def run() -> None:
        queue: FairQueue[str] = FairQueue()
        gone = False

        def take() -> str | None:
            if gone:
                raise NoHealthyBackend("no healthy backend serves model 'm'")
            return None

        waiter = queue.join("k", 1.0, take)
        queue.dispatch()
        assert not waiter.future.done()
        gone = True
        queue.dispatch()
        with pytest.raises(NoHealthyBackend):
            await waiter.future
        assert len(queue) == 0

    asyncio.run(run())


def test_a_key_served_at_once_on_a_model_with_room_does_not_move_a_full_models_clock() -> None:
    """Regression (review): one clock for every model. A flooding key's request served at
    once on another model set V past its backlog on the full one, and the next polite
    request there was queued behind all of it."""
    async def run() -> int:
        queue: FairQueue[str] = FairQueue()
        full = [queue.join("flood", 1.0, lambda: None, "a") for _ in range(10)]
        served_b = queue.join("flood", 1.0, lambda: "slot", "b")
        queue.dispatch()
        assert served_b.future.done() and not any(w.future.done() for w in full)
        polite = queue.join("polite", 1.0, lambda: None, "a")
        return sorted([*full, polite], key=lambda w: w.order).index(polite)

    assert asyncio.run(run()) <= 1


def test_requests_that_leave_unserved_give_their_key_its_place_back() -> None:
    """Regression (review): a key whose burst timed out kept the finish tags of requests
    never served, and its next request waited behind everyone else's."""
    async def run() -> int:
        queue: FairQueue[str] = FairQueue()
        for waiter in [queue.join("batch", 1.0, lambda: None, "a") for _ in range(10)]:
            queue.leave(waiter)
        others = [queue.join("steady", 1.0, lambda: None, "a") for _ in range(5)]
        again = queue.join("batch", 1.0, lambda: None, "a")
        return sorted([*others, again], key=lambda w: w.order).index(again)

    assert asyncio.run(run()) <= 1


def test_a_full_queue_still_admits_a_request_for_a_model_with_room(
        make_router: RouterFactory) -> None:
    """Regression (review): with the queue full of requests for one model, a request for
    another model whose engine was idle got 503 instead of its slot."""
    busy, idle = FakeControl(models=("a",), chunk_delay_s=0.1), FakeControl(models=("b",))
    with ServerThread(create_fake_upstream(busy)) as first, \
            ServerThread(create_fake_upstream(idle)) as second, \
            make_router([first.url, second.url], max_inflight_per_backend=1,
                        max_queue=2) as router:
        eventually(lists(router, {"a", "b"}))

        def ask(model: str) -> int:
            return httpx.post(router.url + "/v1/chat/completions", timeout=30,
                              headers={"authorization": f"Bearer {TEST_KEY}"},
                              json={"model": model, "max_tokens": 10, "stream": True,
                                    "messages": [{"role": "user", "content": "hi"}]}
                              ).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            floods = [pool.submit(ask, "a") for _ in range(3)]  # one in flight, two queued
            eventually(lambda: busy.requests >= 1)
            time.sleep(0.2)
            assert ask("b") == 200
            assert [f.result() for f in floods] == [200] * 3


def test_the_keys_file_gives_each_key_its_weight(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("alice:sk-alice-key weight=4\nbob:sk-bob-key\n")
    store = KeyStore(load_keys_file(keys))
    assert (store.weight("alice"), store.weight("bob"), store.weight(None)) == (4.0, 1.0, 1.0)
    keys.write_text("carol:sk-carol-key weight=0\n")
    with pytest.raises(ValueError, match="line 1: after the key, only weight="):
        load_keys_file(keys)
    for typo in ("dave:sk-dave-key colour=red", "dave:sk-dave-key Weight=4",
                 "dave:sk-dave-key weight = 4", "dave:sk-dave-key weight=4 # gold"):
        keys.write_text(typo + "\n")
        with pytest.raises(ValueError, match="line 1") as refused:
            load_keys_file(keys)
        assert "sk-dave-key" not in str(refused.value), typo
    keys.write_text("erin:sk-erin-key weight=4\nerin:sk-erin-key-2 weight=1\n")
    assert KeyStore(load_keys_file(keys)).weight("erin") == 1.0  # the last line wins


FLOOD, POLITE = "sk-flood-key-0001", "sk-polite-key-0002"


def polite_wait(make_router: RouterFactory, fair: bool) -> tuple[float, float]:
    """One engine taking two requests at a time (each ~0.3 s); the flooding key queues 24
    at once, then the polite key sends one: the polite request's latency and the flood's
    slowest."""
    control = FakeControl(chunk_delay_s=0.03)
    with ServerThread(create_fake_upstream(control)) as engine, \
            make_router([engine.url], api_keys=[f"flood:{FLOOD}", f"polite:{POLITE}",
                                                f"tester:{TEST_KEY}"],
                        max_inflight_per_backend=2, fair_queue=fair) as router:
        eventually(lists(router, {"fake-model"}))

        def ask(key: str) -> float:
            started = time.perf_counter()
            resp = httpx.post(router.url + "/v1/chat/completions", timeout=60,
                              headers={"authorization": f"Bearer {key}"},
                              json={"model": "fake-model", "max_tokens": 10, "stream": True,
                                    "messages": [{"role": "user", "content": "hi"}]})
            assert resp.status_code == 200
            return time.perf_counter() - started

        with concurrent.futures.ThreadPoolExecutor(25) as pool:
            flood = [pool.submit(ask, FLOOD) for _ in range(24)]
            eventually(lambda: control.requests >= 2)  # the engine is full, the rest wait
            time.sleep(0.2)
            polite = pool.submit(ask, POLITE).result()
            slowest = max(f.result() for f in flood)
    return polite, slowest


def test_a_flooding_key_does_not_starve_a_polite_one(make_router: RouterFactory) -> None:
    """Fair: the polite request takes the next free slot (about one request's time);
    in arrival order it waits for most of the flood."""
    polite, slowest = polite_wait(make_router, fair=True)
    assert polite < slowest / 3, (polite, slowest)
    polite, slowest = polite_wait(make_router, fair=False)
    assert polite > slowest / 2, (polite, slowest)
