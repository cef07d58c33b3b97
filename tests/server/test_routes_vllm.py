"""The routes beyond chat through the router against real vLLM engines: the official
client's Responses API (streamed and not) and tokenize/detokenize on the generated model,
embeddings, score and rerank on the same weights served as an embedding model (vLLM's
`--runner pooling --convert embed`), one router in front of both."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llmfleet.core.engine import EngineProcess, engine_spec_for
from llmfleet.core.net import free_port
from tests.helpers.prometheus import scrape
from tests.helpers.router import TEST_KEY, eventually, lists, start_router
from tests.helpers.servers import ServerThread

pytestmark = pytest.mark.engine

EMBED = "llmfleet-tiny-embed"
AUTH = {"authorization": f"Bearer {TEST_KEY}"}


@pytest.fixture(scope="module")
def embed_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The generated tiny model's weights served for embeddings; yields its URL."""
    spec = engine_spec_for("llmfleet-tiny", free_port(), "--runner pooling --convert embed")
    spec = dataclasses.replace(spec, served_name=EMBED)
    engine = EngineProcess(spec, Path(tmp_path_factory.mktemp("vllm-embed")) / "vllm.log")
    engine.start()
    try:
        engine.wait_ready(timeout_s=600)
        yield spec.url
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def both(vllm_engine: tuple[str, str],
         embed_engine: str) -> Iterator[tuple[ServerThread, str]]:
    url, model = vllm_engine
    with start_router([url, embed_engine]) as router:
        eventually(lists(router, {model, EMBED}), timeout_s=30)
        yield router, model


@pytest.fixture(scope="module")
def official(both: tuple[ServerThread, str]) -> Iterator[openai.OpenAI]:
    """The official client for the router, closed at the end."""
    with openai.OpenAI(base_url=both[0].url + "/v1", api_key=TEST_KEY, max_retries=0,
                       timeout=120) as made:
        yield made


def test_the_official_clients_response_from_real_vllm(
        both: tuple[ServerThread, str], official: openai.OpenAI) -> None:
    router, model = both
    before = scrape(router.url).total("llmfleet_completion_tokens_total", model=model) or 0
    answer = official.responses.create(model=model, input="Say hello.", max_output_tokens=8)
    assert answer.status in ("completed", "incomplete") and answer.model == model
    assert answer.usage is not None and 1 <= answer.usage.output_tokens <= 8
    after = scrape(router.url).total("llmfleet_completion_tokens_total", model=model)
    assert after == before + answer.usage.output_tokens


def test_a_streamed_response_from_real_vllm(both: tuple[ServerThread, str],
                                            official: openai.OpenAI) -> None:
    model = both[1]
    stream = official.responses.create(model=model, input="Count.", max_output_tokens=6,
                                       stream=True)
    kinds = [event.type for event in stream]
    assert kinds[0] == "response.created"
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert "response.output_text.delta" in kinds


def test_embeddings_score_and_rerank_from_real_vllm(both: tuple[ServerThread, str],
                                                    official: openai.OpenAI) -> None:
    router, model = both
    answer = official.embeddings.create(model=EMBED, input=["hello", "world"])
    assert [len(d.embedding) for d in answer.data] == [256, 256]  # the tiny model's width
    assert answer.usage.prompt_tokens >= 2
    for path, body in (("/v1/score", {"text_1": "hello", "text_2": ["a", "b"]}),
                       ("/v1/rerank", {"query": "hello", "documents": ["a", "b"]})):
        resp = httpx.post(router.url + path, headers=AUTH, timeout=60,
                          json={"model": EMBED, **body})
        assert resp.status_code == 200, resp.text
    # A model that does not pool answers the engine's own 4xx, passed through.
    resp = httpx.post(router.url + "/v1/embeddings", headers=AUTH, timeout=60,
                      json={"model": model, "input": "x"})
    assert 400 <= resp.status_code < 500


def test_tokenize_then_detokenize_through_the_router(both: tuple[ServerThread, str]) -> None:
    router, model = both
    tokens = httpx.post(router.url + "/tokenize", headers=AUTH, timeout=60,
                        json={"model": model, "prompt": "hello world"}).json()
    assert tokens["count"] == len(tokens["tokens"]) >= 2
    text = httpx.post(router.url + "/detokenize", headers=AUTH, timeout=60,
                      json={"model": model, "tokens": tokens["tokens"]}).json()
    assert text["prompt"].strip() == "hello world"
