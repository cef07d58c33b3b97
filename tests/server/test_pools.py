"""Pools: every router takes any request and sends another pool's model to that pool.

Two pools, each a real router in front of a fake engine of its own model, joined by a
stand-in for the internal load balancer that routes on the pool header
(tests/helpers/balancer.py), as on AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from pydantic import ValidationError

from llmfleet.core.routing import LengthRule
from llmfleet.core.wire.pools import POOL_HEADER
from server.settings import RouterSettings
from tests.helpers.balancer import Seen, create_balancer
from tests.helpers.fake_upstream import FakeControl, Mode, create_fake_upstream
from tests.helpers.router import OTHER_KEY, TEST_KEY, eventually, lists, start_router
from tests.helpers.servers import ServerThread

ENGINE_KEY = "sk-engine-only-0001"  # what a router sends its own engine, never a peer
# Short prompts to the small model, the rest to the large one.
RULES = [LengthRule(model="small", max_prompt_tokens=50), LengthRule(model="large")]
SHORT = "hello there"
LONG = "a long prompt " * 100


@dataclass
class Pools:
    small: FakeControl
    large: FakeControl
    small_router: ServerThread
    large_router: ServerThread
    targets: dict[str, str]  # the balancer's: pool -> router URL
    seen: Seen  # method and headers of every request through the balancer


@pytest.fixture
def pools() -> Iterator[Pools]:
    small, large = FakeControl(models=("small",)), FakeControl(models=("large",))
    targets: dict[str, str] = {}
    seen: Seen = []
    with ServerThread(create_fake_upstream(small)) as small_engine, \
            ServerThread(create_fake_upstream(large)) as large_engine, \
            ServerThread(create_balancer(targets, seen)) as balancer:
        # Every router gets the same peers, its own pool among them (skipped), as the
        # infrastructure renders them.
        peers = {"small": balancer.url, "large": balancer.url}
        common = {"peers": peers, "backend_api_key": ENGINE_KEY, "length_rules": RULES}
        with start_router([small_engine.url], pool="small", **common) as small_router, \
                start_router([large_engine.url], pool="large", **common) as large_router:
            targets.update(small=small_router.url, large=large_router.url)
            for router in (small_router, large_router):  # each learns the other pool
                eventually(lists(router, {"small", "large"}))
            yield Pools(small, large, small_router, large_router, targets, seen)


def complete(router: ServerThread, model: str, prompt: str, key: str = TEST_KEY,
             **headers: str) -> httpx.Response:
    return httpx.post(f"{router.url}/v1/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}", **headers},
                      json={"model": model, "prompt": prompt, "max_tokens": 4})


def test_a_request_for_another_pools_model_is_served_by_that_pool(pools: Pools) -> None:
    resp = complete(pools.small_router, "large", SHORT, key=OTHER_KEY)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "large"
    assert (pools.small.requests, pools.large.requests) == (0, 1)
    # The large pool's router checked the client's own key and sent its engine its own.
    hop = [h for method, h in pools.seen if method == "POST" and h[POOL_HEADER] == "large"]
    assert hop[-1]["authorization"] == f"Bearer {OTHER_KEY}"
    assert pools.large.headers[-1]["authorization"] == f"Bearer {ENGINE_KEY}"


def test_the_engine_key_never_leaves_for_a_peer(pools: Pools) -> None:
    complete(pools.small_router, "large", SHORT)
    assert pools.seen
    assert all(ENGINE_KEY not in str(headers) for _, headers in pools.seen)


def test_auto_chooses_among_every_pools_models_through_the_openai_client(
        pools: Pools) -> None:
    client = openai.OpenAI(base_url=f"{pools.small_router.url}/v1", api_key=TEST_KEY,
                           max_retries=0)
    short = client.completions.with_raw_response.create(model="auto", prompt=SHORT,
                                                        max_tokens=4)
    long = client.completions.with_raw_response.create(model="auto", prompt=LONG,
                                                       max_tokens=4)
    assert short.parse().model == "small"
    assert long.parse().model == "large"
    assert "rule <= 50" in short.headers["x-llmfleet-route"]
    assert (pools.small.requests, pools.large.requests) == (1, 1)
    # From the large pool's router too: the short prompt crosses to the small pool.
    assert complete(pools.large_router, "auto", SHORT).json()["model"] == "small"


def test_a_pool_scaled_to_zero_moves_auto_to_the_other_pool(pools: Pools) -> None:
    del pools.targets["large"]  # the balancer has no target for the large pool
    resp = complete(pools.small_router, "auto", LONG)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "small"
    assert "large unavailable" in resp.headers["x-llmfleet-route"]
    # Asked for by name, the large model is unavailable in OpenAI's shape, not an HTML page.
    named = complete(pools.small_router, "large", LONG)
    assert named.status_code == 503
    assert named.json()["error"]["code"] == "no_healthy_backend"
    # The pool comes back: the next health round sees it, and auto uses it again.
    pools.targets["large"] = pools.large_router.url
    eventually(lambda: complete(pools.small_router, "auto", LONG).json()["model"] == "large")


def test_a_pool_that_refuses_work_moves_auto_to_the_other_at_once(pools: Pools) -> None:
    """Its routers answer 503 in OpenAI's shape (their engines refuse, or are down and
    the health checks have not caught up): the alias goes to the other pool, while a
    request naming the model gets the pool's own answer."""
    pools.large.mode, pools.large.status = Mode.STATUS, 503
    resp = complete(pools.small_router, "auto", LONG)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "small"
    assert "large unavailable" in resp.headers["x-llmfleet-route"]
    assert complete(pools.small_router, "large", LONG).status_code == 503
    # Every slot taken on the way was given back: nothing in flight to either pool.
    metrics = httpx.get(f"{pools.small_router.url}/metrics").text
    in_flight = [line for line in metrics.splitlines()
                 if line.startswith("llmfleet_requests_in_flight{")]
    assert in_flight and all(line.endswith(" 0.0") for line in in_flight), in_flight


def test_a_request_from_a_peer_is_never_sent_on(pools: Pools) -> None:
    """One hop at most: the large pool's router, asked for the small model by a peer
    (the header), refuses rather than sending it back through the balancer."""
    sent = sum(method == "POST" for method, _ in pools.seen)
    resp = complete(pools.large_router, "small", SHORT, **{POOL_HEADER: "large"})
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "no_healthy_backend"
    assert pools.small.requests == 0
    assert sum(method == "POST" for method, _ in pools.seen) == sent
    # auto from a peer chooses among this pool's own models only.
    assert complete(pools.large_router, "auto", SHORT,
                    **{POOL_HEADER: "large"}).json()["model"] == "large"


def test_a_balancer_502_is_the_pools_failure_not_a_reason_to_choose_again(
        pools: Pools) -> None:
    """A 502 from the load balancer between pools: the router it chose failed with the
    request, which may have done work; not retried elsewhere, and the pool stays in."""
    pools.targets["large"] = "http://127.0.0.1:9"  # a router that cannot be reached
    resp = complete(pools.small_router, "auto", LONG)
    assert resp.status_code == 502
    assert resp.json()["error"]["type"] == "server_error"
    pools.targets["large"] = pools.large_router.url
    assert complete(pools.small_router, "auto", LONG).json()["model"] == "large"


def test_a_pool_header_naming_another_pool_is_refused(pools: Pools) -> None:
    """The load balancer between pools routes on the header, so a request naming the small
    pool can reach the large pool's router only from a client: 400, not a 503 later."""
    resp = complete(pools.large_router, "small", SHORT, **{POOL_HEADER: "small"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == POOL_HEADER
    assert pools.small.requests == pools.large.requests == 0


def test_ready_speaks_for_the_routers_own_engines_only(pools: Pools) -> None:
    ready = httpx.get(f"{pools.small_router.url}/ready").json()
    assert ready["models"] == ["small"]
    assert ready["healthy_backends"] == 1


def test_reroute_on_one_router_when_the_large_engine_is_gone() -> None:
    """On a laptop (one router, both engines): a large engine that stopped answering
    sends auto to the small one, before any health check noticed."""
    small, large = FakeControl(models=("small",)), FakeControl(models=("large",))
    with ServerThread(create_fake_upstream(small)) as small_engine, \
            ServerThread(create_fake_upstream(large)) as large_engine, \
            start_router([small_engine.url, large_engine.url], length_rules=RULES,
                         health_interval_s=60) as router:
        eventually(lists(router, {"small", "large"}))
        # The large engine stops (connection refused); the router has not checked since.
        large_engine.__exit__(None, None, None)
        resp = complete(router, "auto", LONG)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "small"
    assert "large unavailable" in resp.headers["x-llmfleet-route"]


@pytest.mark.parametrize(("peers", "message"), [
    ({"Large": "http://10.0.0.1"}, "lower-case"),
    ({"large": "http://10.0.0.1/v1"}, "without a path"),
    ({"large": "https://10.0.0.1"}, "http"),
])
def test_bad_peers_are_refused_with_a_clear_error(peers: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RouterSettings(backends=["http://127.0.0.1:1"], peers=peers)


def test_peers_from_the_environment_as_name_url_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's environment files unquote JSON, so the instances write pairs."""
    monkeypatch.setenv("LLMFLEET_PEERS", "small=http://10.0.0.1,large=http://10.0.0.1:8080")
    settings = RouterSettings(backends=["http://127.0.0.1:1"])
    assert settings.peers == {"small": "http://10.0.0.1", "large": "http://10.0.0.1:8080"}
    monkeypatch.setenv("LLMFLEET_PEERS", "small")
    with pytest.raises(ValidationError, match="name=url pairs"):
        RouterSettings(backends=["http://127.0.0.1:1"])


def test_a_router_skips_its_own_pool_among_the_peers() -> None:
    settings = RouterSettings(backends=["http://127.0.0.1:1"], pool="small",
                              peers={"small": "http://10.0.0.1", "large": "http://10.0.0.1"})
    assert settings.peer_pools() == {"large": "http://10.0.0.1"}
