"""Generated bad input against a real router: always a 4xx in OpenAI's shape, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.edge import uvicorn_options
from server.settings import RouterSettings
from tests.helpers.fake_upstream import FakeControl, create_fake_upstream
from tests.helpers.router import TEST_KEY
from tests.helpers.servers import ServerThread

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FIELDS = ["model", "messages", "prompt", "stream", "stream_options", "max_tokens",
          "max_completion_tokens", "user", "temperature", "n"]
VALID = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi",
         "max_tokens": 3}
# A valid request with a few fields replaced by anything, so that generated input reaches
# past validation into routing, limits and the proxy, not only the JSON parser.
mutated = st.dictionaries(st.sampled_from(FIELDS), st.text(min_size=1) | values,
                          min_size=1, max_size=2).map(lambda changes: {**VALID, **changes})
message_lists = st.lists(st.fixed_dictionaries(
    {"role": values | st.sampled_from(["user", "system"])},
    optional={"content": values}), max_size=3).map(lambda m: {**VALID, "messages": m})


@pytest.fixture(scope="module")
def router() -> Iterator[httpx.Client]:
    with ServerThread(create_fake_upstream(FakeControl())) as upstream:
        settings = RouterSettings(backends=[upstream.url], api_keys=[TEST_KEY],
                                  rate_limit_rpm=0, rate_limit_tpm=0)
        with ServerThread(create_app(settings), **uvicorn_options(settings.edge())) as server, \
                httpx.Client(base_url=server.url, timeout=10,
                             headers={"authorization": f"Bearer {TEST_KEY}"}) as client:
            yield client


def check(resp: httpx.Response) -> None:
    if resp.status_code == 200:
        return  # the generator stumbled on a valid request: fine
    assert 400 <= resp.status_code < 500, resp.text
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes(router: httpx.Client, raw: bytes) -> None:
    for path in ("/v1/chat/completions", "/v1/completions"):
        check(router.post(path, content=raw))


@settings(max_examples=500, deadline=None, suppress_health_check=FIXTURE_OK)
@given(body=mutated | message_lists | values)
def test_json_of_the_wrong_shape(router: httpx.Client, body: object) -> None:
    for path in ("/v1/chat/completions", "/v1/completions"):
        check(router.post(path, content=json.dumps(body)))
