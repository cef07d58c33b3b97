"""The scored routing policy: runtime, energy and quality, weighted, deterministic, explained."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import ValidationError

from llmfleet.core.wire.scoring import LinearCost, ScoredModel
from server.errors import InvalidRequest, NoHealthyBackend
from server.protocol import Endpoint, ParsedRequest, RouteWeights, parse_route_weights
from server.routing import ScoredPolicy, build_policy
from server.settings import PolicyName, RouterSettings
from tests.helpers.fake_upstream import FakeControl, create_fake_upstream
from tests.helpers.router import TEST_KEY, RouterFactory
from tests.helpers.servers import ServerThread

# small: fast, frugal, weaker; large: slow, hungry, better. The fits are per request:
# seconds and joules as a linear function of prompt and output tokens.
SMALL = ScoredModel(model="small", quality=0.55,
                    runtime_s=LinearCost(intercept=0.02, per_input_token=1e-5,
                                         per_output_token=0.008),
                    energy_j=LinearCost(intercept=1.0, per_input_token=0.002,
                                        per_output_token=0.6))
LARGE = ScoredModel(model="large", quality=0.80,
                    runtime_s=LinearCost(intercept=0.05, per_input_token=8e-5,
                                         per_output_token=0.030),
                    energy_j=LinearCost(intercept=4.0, per_input_token=0.02,
                                        per_output_token=4.5))
BOTH = frozenset({"small", "large"})


def request(tokens: int = 100, max_tokens: int | None = 200,
            weights: RouteWeights | None = None) -> ParsedRequest:
    return ParsedRequest(Endpoint.CHAT, "auto", False, False, max_tokens, tokens, b"{}",
                         weights)


def policy(weights: RouteWeights | None = None) -> ScoredPolicy:
    return ScoredPolicy([LARGE, SMALL], weights or RouteWeights(), default_max_tokens=256)


@pytest.mark.parametrize(("weights", "model"), [
    (RouteWeights(accuracy=1, energy=0, time=0), "large"),
    (RouteWeights(accuracy=0, energy=1, time=0), "small"),
    (RouteWeights(accuracy=0, energy=0, time=1), "small"),
    (RouteWeights(accuracy=3, energy=1, time=1), "large"),  # 3/5 against 2/5
    (RouteWeights(accuracy=1, energy=1, time=1), "small"),
])
def test_the_weights_decide(weights: RouteWeights, model: str) -> None:
    assert policy(weights).choose(request(), BOTH).model == model


def test_scores_are_normalised_weighted_means_and_explained() -> None:
    decision = policy(RouteWeights(accuracy=2, energy=1, time=1)).choose(request(), BOTH)
    # small is worst on accuracy only: 2/4; large worst on energy and time: 2/4. A tie,
    # broken by name: "large" sorts first.
    assert decision.model == "large"
    assert decision.reason.startswith("scores large=0.500 small=0.500 (lower wins); operator "
                                      "weights accuracy=2,energy=1,time=1; ~100 prompt + 200 "
                                      "output tokens")


def test_the_request_s_weights_win_over_the_operator_s() -> None:
    chosen = policy(RouteWeights(accuracy=1, energy=0, time=0)).choose(
        request(weights=RouteWeights(accuracy=0, energy=1, time=0)), BOTH)
    assert chosen.model == "small"
    assert "request weights accuracy=0,energy=1,time=0" in chosen.reason


def test_the_default_max_tokens_stands_in_for_a_missing_one() -> None:
    ranked = policy().scores(request(max_tokens=None), BOTH)
    small = next(s for s in ranked if s.model == "small")
    assert small.runtime_s == pytest.approx(0.02 + 1e-5 * 100 + 0.008 * 256)
    assert small.energy_j == pytest.approx(1.0 + 0.2 + 0.6 * 256)


def test_only_served_models_compete() -> None:
    assert policy(RouteWeights(accuracy=1, energy=0, time=0)).choose(
        request(), frozenset({"small"})).model == "small"
    with pytest.raises(NoHealthyBackend):
        policy().choose(request(), frozenset({"other"}))


def test_weights_headers_parse_and_bad_ones_are_rejected() -> None:
    assert parse_route_weights("time=2, Accuracy=0.5") == RouteWeights(0.5, 0.0, 2.0)
    for bad in ("speed=1", "time=-1", "time=fast", "time=0", "", "time=inf"):
        with pytest.raises(InvalidRequest) as exc:
            parse_route_weights(bad)
        assert exc.value.param == "x-llmfleet-weights"


def test_settings_require_scored_models_for_the_scored_policy() -> None:
    with pytest.raises(ValidationError, match="policy 'scored' needs scored_models"):
        RouterSettings(backends=["http://a"], policy=PolicyName.SCORED)
    with pytest.raises(ValidationError, match="at least one score weight"):
        RouterSettings(backends=["http://a"], score_weights={"accuracy": 0, "energy": 0,
                                                             "time": 0})
    settings = RouterSettings(backends=["http://a"], policy="scored",
                              scored_models=[SMALL.model_dump(), LARGE.model_dump()])
    assert isinstance(build_policy(settings), ScoredPolicy)


def test_the_router_routes_auto_by_score_with_the_official_client(
        make_router: RouterFactory) -> None:
    small, large = FakeControl(models=("small",)), FakeControl(models=("large",))
    with ServerThread(create_fake_upstream(small)) as s, \
            ServerThread(create_fake_upstream(large)) as big, \
            make_router([s.url, big.url], policy="scored",
                        scored_models=[SMALL.model_dump(), LARGE.model_dump()],
                        score_weights={"accuracy": 0, "energy": 1, "time": 1}) as router:
        client = openai.OpenAI(base_url=router.url + "/v1", api_key=TEST_KEY, max_retries=0)
        messages = [{"role": "user", "content": "hello"}]
        frugal = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, max_tokens=16)  # type: ignore[arg-type]
        assert frugal.headers["x-llmfleet-model"] == "small"
        assert frugal.headers["x-llmfleet-route"].startswith("scores small=0.000 large=1.000")
        picky = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, max_tokens=16,  # type: ignore[arg-type]
            extra_headers={"x-llmfleet-weights": "accuracy=1"})
        assert picky.headers["x-llmfleet-model"] == "large"
        assert json.loads(large.bodies[-1])["model"] == "large"
        with pytest.raises(openai.BadRequestError) as exc:
            client.chat.completions.create(
                model="auto", messages=messages,  # type: ignore[arg-type]
                extra_headers={"x-llmfleet-weights": "speed=1"})
        error = exc.value.body
        assert isinstance(error, dict) and error["param"] == "x-llmfleet-weights"
