"""The prompt-length routing policy."""

from __future__ import annotations

import pytest

from llmfleet.core.routing import LengthRule
from server.errors import NoHealthyBackend
from server.protocol import Endpoint, ParsedRequest
from server.routing import PromptLengthPolicy, build_policy
from server.settings import PolicyName, RouterSettings

RULES = [LengthRule(model="large"), LengthRule(model="small", max_prompt_tokens=100),
         LengthRule(model="medium", max_prompt_tokens=1000)]
BOTH = frozenset({"small", "medium", "large"})


def request(tokens: int) -> ParsedRequest:
    return ParsedRequest(Endpoint.CHAT, "auto", False, False, None, tokens, b"{}")


@pytest.mark.parametrize(("tokens", "model"), [
    (1, "small"), (100, "small"), (101, "medium"), (1000, "medium"), (1001, "large"),
    (10**6, "large"),
])
def test_prompt_length_picks_the_first_bound_that_fits(tokens: int, model: str) -> None:
    decision = PromptLengthPolicy(RULES).choose(request(tokens), BOTH)
    assert decision.model == model
    assert f"~{tokens} tokens" in decision.reason


def test_a_model_that_is_down_is_skipped_for_the_next_one() -> None:
    decision = PromptLengthPolicy(RULES).choose(request(10), frozenset({"medium", "large"}))
    assert decision.model == "medium"


def test_past_every_bound_without_catch_all_falls_back_to_largest_served() -> None:
    rules = [LengthRule(model="small", max_prompt_tokens=10),
             LengthRule(model="big", max_prompt_tokens=50)]
    decision = PromptLengthPolicy(rules).choose(request(500), frozenset({"small", "big"}))
    assert decision.model == "big"
    assert "fallback" in decision.reason


def test_no_rules_sends_alias_to_first_served_model() -> None:
    decision = PromptLengthPolicy([]).choose(request(5), frozenset({"zeta", "alpha"}))
    assert decision.model == "alpha"


def test_nothing_served_is_a_503_not_a_crash() -> None:
    with pytest.raises(NoHealthyBackend):
        PromptLengthPolicy(RULES).choose(request(5), frozenset({"unrelated"}))
    with pytest.raises(NoHealthyBackend):
        PromptLengthPolicy([]).choose(request(5), frozenset())


def test_build_policy_by_enum() -> None:
    policy = build_policy(RouterSettings(backends=["http://a"], length_rules=RULES))
    assert policy.name is PolicyName.PROMPT_LENGTH
