"""Every OpenAI-compatible route the engines serve, through a real router in front of the
fake engine: the official client's Responses and embeddings calls, the pooling and
tokenizer routes, with the same auth, limits, metrics, access log, retries and error
shapes as chat. The same routes against real vLLM: tests/server/test_routes_vllm.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from server.accesslog import LOGGER_NAME
from server.protocol import Endpoint
from tests.helpers.fake_upstream import POOLING_PATHS, FakeControl, Mode, create_fake_upstream
from tests.helpers.prometheus import scrape
from tests.helpers.router import TEST_KEY, RouterFactory, eventually, lists
from tests.helpers.servers import ServerThread

AUTH = {"authorization": f"Bearer {TEST_KEY}"}


@pytest.fixture
def client() -> Iterator[Callable[[str], openai.OpenAI]]:
    """The official client for a router's URL, each closed after the test (an unclosed
    one leaves its sockets to the garbage collector, and a warning in some later test)."""
    made: list[openai.OpenAI] = []

    def make(url: str) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=url + "/v1", api_key=TEST_KEY, max_retries=0,
                                  timeout=10))
        return made[-1]

    yield make
    for one in made:
        one.close()


def tokens(url: str, kind: str, model: str = "fake-model") -> float:
    return scrape(url).total(f"llmfleet_{kind}_tokens_total", model=model) or 0.0


def test_the_official_clients_responses_call_is_answered_and_its_tokens_counted(
        client: Callable[[str], openai.OpenAI],
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    """Regression: /v1/responses answered 405 although the engine serves it."""
    control, url = fake
    with make_router([url]) as router:
        answer = client(router.url).responses.create(model="fake-model", input="hello there",
                                                     max_output_tokens=4)
        assert answer.output_text == "t0 t1 t2 t3"
        assert answer.usage is not None and answer.usage.output_tokens == 4
        assert (tokens(router.url, "prompt"), tokens(router.url, "completion")) == (7, 4)
        assert json.loads(control.bodies[-1])["input"] == "hello there"


def test_a_streamed_response_is_relayed_event_by_event_and_counted_from_its_usage(
        client: Callable[[str], openai.OpenAI],
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    _, url = fake
    with make_router([url]) as router:
        stream = client(router.url).responses.create(model="fake-model", input="hi",
                                                     max_output_tokens=5, stream=True)
        kinds = [event.type for event in stream]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        assert kinds.count("response.output_text.delta") == 5
        assert tokens(router.url, "completion") == 5


def test_a_response_stream_broken_midway_ends_with_an_error_and_is_charged_its_deltas(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    control.mode, control.fail_after = Mode.DIE_MIDSTREAM, 4
    with make_router([url]) as router:
        with httpx.stream("POST", router.url + "/v1/responses", headers=AUTH, timeout=10,
                          json={"model": "fake-model", "input": "hi", "stream": True,
                                "max_output_tokens": 8}) as resp:
            text = resp.read().decode()
        assert resp.status_code == 200
        assert text.count('"response.output_text.delta"') == 3  # the fourth event was cut
        assert '"upstream_error"' in text.strip().splitlines()[-1]
        eventually(lambda: tokens(router.url, "completion") == 3)


def test_auto_chooses_the_model_of_a_response_by_the_prompt(
        make_router: RouterFactory) -> None:
    small, large = FakeControl(models=("small",)), FakeControl(models=("large",))
    with ServerThread(create_fake_upstream(small)) as one, \
            ServerThread(create_fake_upstream(large)) as two, \
            make_router([one.url, two.url],
                        length_rules=[{"model": "small", "max_prompt_tokens": 50},
                                      {"model": "large"}]) as router:
        eventually(lists(router, {"small", "large"}))
        for text, model in (("hi", "small"), ("word " * 100, "large")):
            resp = httpx.post(router.url + "/v1/responses", headers=AUTH, timeout=10,
                              json={"model": "auto", "input": text})
            assert resp.status_code == 200
            assert resp.headers["x-llmfleet-model"] == model
            assert "rule" in resp.headers["x-llmfleet-route"]


def test_the_official_clients_embeddings_call_is_answered_and_charged_its_prompt(
        client: Callable[[str], openai.OpenAI],
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    """Regression: /v1/embeddings answered 405 although the engine serves it."""
    _, url = fake
    with make_router([url]) as router:
        answer = client(router.url).embeddings.create(model="fake-model", input=["a b", "c"])
        assert [d.embedding for d in answer.data] == [[0.5, -0.25, 0.125]] * 2
        assert answer.usage.prompt_tokens == 10
        assert (tokens(router.url, "prompt"), tokens(router.url, "completion")) == (10, 0)


def test_a_pooling_route_may_leave_its_model_out_when_the_router_serves_one(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    with make_router([url]) as router:
        eventually(lists(router, {"fake-model"}))
        for path in POOLING_PATHS:
            body = {"input": "a", "prompt": "a b", "tokens": [1, 2], "query": "q",
                    "documents": ["d"]}
            resp = httpx.post(router.url + path, headers=AUTH, json=body, timeout=10)
            assert resp.status_code == 200, (path, resp.text)
            assert json.loads(control.bodies[-1])["model"] == "fake-model", path


def test_a_route_without_model_is_refused_when_the_router_serves_several(
        make_router: RouterFactory) -> None:
    one, two = FakeControl(models=("a",)), FakeControl(models=("b",))
    with ServerThread(create_fake_upstream(one)) as first, \
            ServerThread(create_fake_upstream(two)) as second, \
            make_router([first.url, second.url]) as router:
        eventually(lists(router, {"a", "b"}))
        resp = httpx.post(router.url + "/v1/embeddings", headers=AUTH, json={"input": "x"})
        assert resp.status_code == 400
        assert resp.json()["error"]["param"] == "model"
        assert "serves a, b" in resp.json()["error"]["message"]
        resp = httpx.post(router.url + "/v1/embeddings", headers=AUTH,
                          json={"model": "b", "input": "x"})
        assert resp.status_code == 200 and two.requests == 1 and one.requests == 0


def test_auto_is_refused_on_routes_that_do_not_generate(
        client: Callable[[str], openai.OpenAI],
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    with make_router([url]) as router:
        with pytest.raises(openai.BadRequestError) as refused:
            client(router.url).embeddings.create(model="auto", input="x")
        assert refused.value.body["param"] == "model"  # type: ignore[index]
        assert control.requests == 0


@pytest.mark.parametrize("path", [e.value for e in Endpoint])
def test_every_route_needs_a_key_and_answers_bad_bodies_in_openais_shape(
        make_router: RouterFactory, fake: tuple[FakeControl, str], path: str) -> None:
    control, url = fake
    with make_router([url]) as router:
        resp = httpx.post(router.url + path, json={"model": "fake-model", "input": "x"})
        assert resp.status_code == 401
        resp = httpx.post(router.url + path, headers=AUTH, content=b"[1, 2]")
        assert resp.status_code == 400
        assert resp.json()["error"]["type"] == "invalid_request_error"
        resp = httpx.get(router.url + path, headers=AUTH)
        assert resp.status_code == 405 and resp.headers["allow"] == "POST"
        assert control.requests == 0


def test_tokenizer_routes_use_no_token_budget_and_pooling_routes_use_their_prompt(
        client: Callable[[str], openai.OpenAI],
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    """A key allowed 100 tokens a minute: tokenizing 4,000 characters runs no model and is
    admitted; embedding them would read ~1,000 tokens and is refused before the engine."""
    control, url = fake
    text = "word " * 800
    with make_router([url], rate_limit_tpm=100) as router:
        for path, body in (("/tokenize", {"model": "fake-model", "prompt": text}),
                           ("/detokenize", {"model": "fake-model", "tokens": [1] * 500})):
            resp = httpx.post(router.url + path, headers=AUTH, json=body, timeout=10)
            assert resp.status_code == 200, path
        with pytest.raises(openai.RateLimitError) as refused:
            client(router.url).embeddings.create(model="fake-model", input=text)
        # Regression: it said "lower max_tokens (or n)", which an embedding request has not.
        assert refused.value.body["param"] == "input"  # type: ignore[index]
        assert "input is about" in refused.value.body["message"]  # type: ignore[index]
        assert control.requests == 2
        client(router.url).embeddings.create(model="fake-model", input="short")
        assert control.requests == 3


def test_a_pooling_request_refused_by_one_engine_is_retried_on_another(
        client: Callable[[str], openai.OpenAI],
        make_router: RouterFactory) -> None:
    busy, idle = FakeControl(mode=Mode.STATUS, status=503), FakeControl()
    with ServerThread(create_fake_upstream(busy)) as first, \
            ServerThread(create_fake_upstream(idle)) as second, \
            make_router([first.url, second.url]) as router:
        eventually(lists(router, {"fake-model"}))
        for _ in range(4):
            answer = client(router.url).embeddings.create(model="fake-model", input="x")
            assert len(answer.data) == 1
        assert idle.requests == 4


def test_an_engines_4xx_on_a_pooling_route_passes_through(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    control, url = fake
    control.mode, control.status = Mode.STATUS, 400
    with make_router([url]) as router:
        resp = httpx.post(router.url + "/v1/rerank", headers=AUTH,
                          json={"model": "fake-model", "query": "q", "documents": ["d"]})
        assert resp.status_code == 400 and resp.json()["error"]["message"] == "fake 400"


def test_each_routes_access_log_line_names_it(
        client: Callable[[str], openai.OpenAI],
        make_router: RouterFactory, fake: tuple[FakeControl, str],
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    _, url = fake
    with make_router([url]) as router:
        client(router.url).embeddings.create(model="fake-model", input="x")
        client(router.url).responses.create(model="fake-model", input="x", max_output_tokens=2)
        httpx.post(router.url + "/tokenize", headers=AUTH,
                   json={"model": "fake-model", "prompt": "a"})
        httpx.post(router.url + "/v1/embeddings", json={"model": "fake-model", "input": "x"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()
             if f'"logger": "{LOGGER_NAME}"' in line]
    assert [(x["endpoint"], x.get("prompt_tokens"), x.get("completion_tokens"))
            for x in lines] == [
        ("/v1/embeddings", 5, None), ("/v1/responses", 7, 2), ("/tokenize", None, None),
        ("/v1/embeddings", None, None)]  # refused: no key
    assert lines[-1]["status"] == 401
