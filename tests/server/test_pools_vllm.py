"""auto between two real vLLM engines of different generated models, by each policy.

The session's engine serves `llmfleet-tiny` (two layers of width 256); this module starts a
second one serving `llmfleet-wide` (eight of width 512). Prompts of about 10 and 600 tokens
(the router estimates four characters a token) land on different models under the
prompt-length rules and under the scored policy, on one router in front of both engines (a
laptop) and across two pools (a router per engine, joined by the stand-in for the internal
load balancer); a pool scaled to zero moves `auto` to the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from llmfleet.core.engine import EngineProcess, engine_spec_for
from llmfleet.core.net import free_port
from llmfleet.core.routing import LengthRule
from llmfleet.core.wire.scoring import LinearCost, ScoredModel
from server.settings import PolicyName
from tests.helpers.balancer import Seen, create_balancer
from tests.helpers.router import TEST_KEY, eventually, lists, start_router
from tests.helpers.servers import ServerThread

pytestmark = pytest.mark.engine

TINY, WIDE = "llmfleet-tiny", "llmfleet-wide"
SHORT = "Say hello."
LONG = "Summarise the following notes. " + "The fleet scales on what it serves. " * 70
RULES = [LengthRule(model=TINY, max_prompt_tokens=256), LengthRule(model=WIDE)]
# Fits that cross: the wide model's fixed cost is lower, its cost per prompt token higher,
# so the time-only score prefers it for short prompts and the tiny one for long ones
# (a large model on a faster GPU, a small one on a slower one, say). Quality and energy
# weigh nothing here.
SCORED = [
    ScoredModel(model=TINY, quality=0.5,
                runtime_s=LinearCost(intercept=0.20, per_input_token=1e-4, per_output_token=0.01),
                energy_j=LinearCost(intercept=1.0, per_output_token=0.1)),
    ScoredModel(model=WIDE, quality=0.5,
                runtime_s=LinearCost(intercept=0.05, per_input_token=1e-3, per_output_token=0.01),
                energy_j=LinearCost(intercept=1.0, per_output_token=0.1)),
]


@pytest.fixture(scope="module")
def engines(vllm_engine: tuple[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The served model name -> engine URL of both engines."""
    tiny_url, tiny = vllm_engine
    assert tiny == TINY
    spec = engine_spec_for(WIDE, free_port())
    wide = EngineProcess(spec, Path(tmp_path_factory.mktemp("wide")) / "vllm.log")
    wide.start()
    try:
        wide.wait_ready(timeout_s=600)
        yield {TINY: tiny_url, WIDE: spec.url}
    finally:
        wide.stop()


def chosen(router: ServerThread, prompt: str) -> tuple[str, str]:
    """The model `auto` chose for `prompt` (as the engine answered it), and why."""
    client = openai.OpenAI(base_url=f"{router.url}/v1", api_key=TEST_KEY, max_retries=0)
    raw = client.completions.with_raw_response.create(model="auto", prompt=prompt,
                                                      max_tokens=4)
    return raw.parse().model, raw.headers["x-llmfleet-route"]


@pytest.mark.parametrize("policy", [
    {"length_rules": RULES},
    {"policy": PolicyName.SCORED, "scored_models": SCORED,
     "score_weights": {"accuracy": 0, "energy": 0, "time": 1}},
], ids=["prompt_length", "scored"])
def test_short_and_long_prompts_land_on_different_models(engines: dict[str, str],
                                                         policy: dict[str, Any]) -> None:
    with start_router(list(engines.values()), **policy) as router:
        eventually(lists(router, {TINY, WIDE}))
        short, long = chosen(router, SHORT), chosen(router, LONG)
    assert short[0] != long[0], (short, long)
    if "length_rules" in policy:
        assert (short[0], long[0]) == (TINY, WIDE)
    else:
        assert (short[0], long[0]) == (WIDE, TINY)
        assert "scores" in short[1]


def test_across_pools_auto_uses_both_and_a_pool_scaled_to_zero_moves_it(
        engines: dict[str, str]) -> None:
    targets: dict[str, str] = {}
    seen: Seen = []
    with ServerThread(create_balancer(targets, seen)) as balancer:
        peers = {"tiny": balancer.url, "wide": balancer.url}
        with start_router([engines[TINY]], pool="tiny", peers=peers,
                          length_rules=RULES) as tiny_pool, \
                start_router([engines[WIDE]], pool="wide", peers=peers,
                             length_rules=RULES) as wide_pool:
            targets.update(tiny=tiny_pool.url, wide=wide_pool.url)
            for router in (tiny_pool, wide_pool):  # each learns the other pool
                eventually(lists(router, {TINY, WIDE}))
            assert chosen(tiny_pool, SHORT)[0] == TINY
            assert chosen(tiny_pool, LONG)[0] == WIDE  # through the balancer
            assert chosen(wide_pool, SHORT)[0] == TINY  # the other way
            del targets["wide"]  # the wide pool has no instance
            model, reason = chosen(tiny_pool, LONG)
    assert model == TINY
    assert f"{WIDE} unavailable" in reason
