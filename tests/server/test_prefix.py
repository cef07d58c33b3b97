"""Cache-aware balancing (`server.prefix`): the block hashes, the per-engine index, the
choice with its load guard, and a real router keeping conversations on the engine that read
them. Its gain on real engines: `make bench-prefix` (BENCHMARKS.md)."""

from __future__ import annotations

import concurrent.futures
import json
from dataclasses import dataclass, field

import httpx

from server.prefix import BLOCK_CHARS, PrefixIndex, blocks, choose
from server.protocol import Endpoint, parse_request
from tests.helpers.fake_upstream import FakeControl, create_fake_upstream
from tests.helpers.prometheus import scrape
from tests.helpers.router import TEST_KEY, RouterFactory, eventually, lists
from tests.helpers.servers import ServerThread

AUTH = {"authorization": f"Bearer {TEST_KEY}"}


def test_a_blocks_hash_stands_for_the_whole_prefix_up_to_it() -> None:
    one = "a" * BLOCK_CHARS + "b" * BLOCK_CHARS + "c" * 10
    two = "z" * BLOCK_CHARS + "b" * BLOCK_CHARS
    assert len(blocks(one)) == 2  # the partial last block is left out
    assert blocks(one)[1] != blocks(two)[1]  # the same block after another prefix
    assert blocks(one + "more")[:2] == blocks(one)
    assert blocks("short") == ()
    assert len(blocks("x" * BLOCK_CHARS * 10, max_blocks=3)) == 3


def test_the_index_matches_the_first_blocks_in_a_row_and_forgets_the_oldest() -> None:
    index = PrefixIndex(capacity=4)
    index.record([1, 2, 3])
    assert index.matched([1, 2, 3, 4]) == 3
    assert index.matched([1, 9, 3]) == 1
    assert index.matched([9, 1]) == 0
    index.record([5, 6])  # one too many: 3, the tail of the older prompt, goes
    assert len(index) == 4 and index.matched([1, 2, 3]) == 2


def test_a_prefix_loses_its_tail_before_its_head() -> None:
    """Regression (review): recorded head first, a prompt's first block was its oldest and
    went first, and with it every match of the prefix, while its later blocks stayed."""
    index = PrefixIndex(capacity=4)
    index.record([11, 12, 13])
    index.record([21, 22])  # one block too many for four
    assert index.matched([11, 12, 13]) == 2  # before the fix: 0 (11 went, 12 and 13 stayed)
    assert index.matched([21, 22]) == 2


@dataclass
class Engine:
    name: str
    outstanding: int = 0
    prefixes: PrefixIndex = field(default_factory=PrefixIndex)


def test_the_longest_match_wins_within_the_slack_and_the_least_loaded_beyond_it() -> None:
    a, b = Engine("a", outstanding=3), Engine("b", outstanding=0)
    a.prefixes.record([1, 2, 3])
    b.prefixes.record([1])
    assert choose([b, a], [1, 2, 3], slack=4) == (a, 3)
    assert choose([b, a], [1, 2, 3], slack=2) == (b, 1)  # a is too busy: the guard
    assert choose([a, b], [7, 8], slack=4) == (b, 0)  # nothing shared: least loaded
    a.outstanding = 0
    assert choose([a, b], [7], slack=4)[0] is a  # a tie goes to the first


def test_chat_messages_hash_in_order_so_a_conversations_next_turn_extends_its_prefix() -> None:
    system = {"role": "system", "content": "You answer questions about fleets. " * 40}
    first = [system, {"role": "user", "content": "How many instances? " * 20}]
    second = [*first, {"role": "assistant", "content": "Four."},
              {"role": "user", "content": "Why?"}]

    def hashed(messages: list[dict[str, str]]) -> tuple[int, ...]:
        body = json.dumps({"model": "m", "messages": messages}).encode()
        return parse_request(Endpoint.CHAT, body, prefix=True).prefix

    assert len(hashed(first)) >= 6
    assert hashed(second)[:len(hashed(first))] == hashed(first)
    other = [{"role": "system", "content": "Something else. " * 80}, first[1]]
    assert hashed(other)[0] != hashed(first)[0]
    body = json.dumps({"model": "m", "messages": first}).encode()
    assert parse_request(Endpoint.CHAT, body).prefix == ()  # off unless asked


def conversation(topic: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"Context {topic}: " + "fleet facts. " * 60},
            {"role": "user", "content": "A question."}]


def test_the_router_keeps_each_conversation_on_the_engine_that_read_it(
        make_router: RouterFactory) -> None:
    """Seven conversations, each sent three times one after another: with cache-aware
    balancing every repeat goes where its conversation went first; without it, least
    outstanding takes turns between the idle engines (seven: each round starts on the
    other engine)."""
    for on in (True, False):
        one, two = FakeControl(), FakeControl()
        with ServerThread(create_fake_upstream(one)) as first, \
                ServerThread(create_fake_upstream(two)) as second, \
                make_router([first.url, second.url], prefix_routing=on) as router:
            eventually(lists(router, {"fake-model"}))
            where: dict[int, set[str]] = {}
            for _ in range(3):
                for topic in range(7):
                    before = one.requests
                    resp = httpx.post(router.url + "/v1/chat/completions", headers=AUTH,
                                      timeout=10, json={"model": "fake-model", "max_tokens": 1,
                                                        "messages": conversation(topic)})
                    assert resp.status_code == 200
                    where.setdefault(topic, set()).add(
                        "one" if one.requests > before else "two")
            if on:
                assert all(len(engines) == 1 for engines in where.values()), where
                assert 3 <= one.requests <= 18  # the conversations spread over both
                matched = scrape(router.url).total("llmfleet_prefix_blocks_total",
                                                   result="matched")
                body = json.dumps({"model": "m", "messages": conversation(0)}).encode()
                per_prompt = len(parse_request(Endpoint.CHAT, body, prefix=True).prefix)
                assert matched == 2 * 7 * per_prompt  # every block of every repeat
            else:
                assert all(len(engines) == 2 for engines in where.values()), where


def hot_prefix(make_router: RouterFactory, slack: int) -> tuple[int, int]:
    """Sixteen requests of one long prompt at once, through two engines: how many each
    engine took."""
    one, two = FakeControl(chunk_delay_s=0.05), FakeControl(chunk_delay_s=0.05)
    with ServerThread(create_fake_upstream(one)) as first, \
            ServerThread(create_fake_upstream(two)) as second, \
            make_router([first.url, second.url], prefix_slack=slack) as router:
        eventually(lists(router, {"fake-model"}))

        def ask(_: int) -> int:
            resp = httpx.post(router.url + "/v1/chat/completions", headers=AUTH, timeout=30,
                              json={"model": "fake-model", "max_tokens": 10, "stream": True,
                                    "messages": conversation(0)})
            return resp.status_code

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            assert set(pool.map(ask, range(16))) == {200}
    return one.requests, two.requests


def test_a_hot_prefix_spreads_over_the_engines_once_one_is_busier_by_the_slack(
        make_router: RouterFactory) -> None:
    """Everyone sends the same long prompt at once: the load guard sends the overflow to
    the other engine rather than queue it all on the one that holds the prefix; without
    the guard (a slack no load reaches) one engine takes nearly all."""
    guarded = hot_prefix(make_router, slack=2)
    assert min(guarded) >= 4, guarded
    unguarded = hot_prefix(make_router, slack=1000)
    assert min(unguarded) <= 2, unguarded  # at most the first ones, before any prefix
