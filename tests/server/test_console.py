"""The console's endpoints over HTTP: static files, the fleet view, the planner, CORS.

Real routers on ephemeral ports in front of the fake engine; the agent's figures
come from the agent's own status server. The page itself is driven in a browser
by tests/server/test_console_browser.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.app import StatusServer
from agent.status import AgentState
from llmfleet.core.net import free_port
from llmfleet.core.wire.agent import AgentStatus, GpuStatus, LatestRound
from llmfleet.core.wire.sizing import SizedCandidate, SizingAnswer
from server.console import WEB_DIR
from server.fleet import agent_view, per_million
from server.settings import RouterSettings
from tests.helpers.fake_upstream import FakeControl
from tests.helpers.router import TEST_KEY, RouterFactory
from tests.helpers.servers import ServerThread

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
FAST = {"console_interval_s": 0.2, "console_window_s": 1.0}


def poll(url: str, until: Any, headers: dict[str, str] | None = None,
         attempts: int = 50) -> dict[str, Any]:
    """GET `url` until `until(body)` holds (bounded)."""
    body: dict[str, Any] = {}
    for _ in range(attempts):
        body = httpx.get(url, headers=headers, timeout=5).json()
        if until(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"never true; last body: {body}")


@pytest.fixture
def agent_status() -> Iterator[tuple[AgentState, str]]:
    status = AgentState(interval_s=1, started_at=time.monotonic())
    server = StatusServer(status, "127.0.0.1", 0)
    server.start()
    try:
        yield status, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_the_page_and_its_files_are_served_and_unknown_paths_stay_openai_errors(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    with make_router([fake[1]]) as router:
        page = httpx.get(router.url + "/", timeout=5)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<title>llmfleet console</title>" in page.text
        for name, kind in (("app.js", "javascript"), ("chart.js", "javascript"),
                           ("style.css", "text/css")):
            assert kind in httpx.get(f"{router.url}/{name}", timeout=5).headers["content-type"]
        assert httpx.get(router.url + "/config.json", timeout=5).json() == {"api_base": ""}
        missing = httpx.get(router.url + "/v1/nope", timeout=5)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        posted = httpx.post(router.url + "/index.html", timeout=5)
        assert posted.status_code == 405 and "error" in posted.json()


def test_console_off_serves_no_page(make_router: RouterFactory,
                                    fake: tuple[FakeControl, str]) -> None:
    with make_router([fake[1]], console=False) as router:
        assert httpx.get(router.url + "/", timeout=5).status_code == 404
        assert httpx.get(router.url + "/console/fleet", timeout=5).status_code == 404


def test_fleet_numbers_move_after_requests_and_carry_the_agents_cost(
        make_router: RouterFactory, fake: tuple[FakeControl, str],
        agent_status: tuple[AgentState, str]) -> None:
    control, url = fake
    control.chunk_delay_s = 0.01
    status, agent_url = agent_status
    status.last_round = LatestRound(
        at=time.time(), instance_type="g5.xlarge", model="fake-model",
        gpus=(GpuStatus(index=0, utilization_pct=80.0, power_w=200.0),
              GpuStatus(index=1, utilization_pct=40.0, power_w=100.0)),
        cost_usd_per_hour=1.006)
    with make_router([url], agent_url=agent_url, **FAST) as router:
        idle = poll(router.url + "/console/fleet", lambda b: len(b["series"]) >= 2)
        assert idle["series"][-1]["requests_per_s"] == 0
        assert idle["backends"] == [{"url": url, "pool": None, "healthy": True, "draining": False,
                                     "models": ["fake-model"], "in_flight": 0,
                                     "last_error": None, "stalled": False}]
        client = openai.OpenAI(base_url=router.url + "/v1", api_key=TEST_KEY)
        for _ in range(5):
            list(client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "hi"}],
                max_tokens=10, stream=True))
        busy = poll(router.url + "/console/fleet",
                    lambda b: (b["series"][-1]["requests_per_s"] or 0) > 0)
    point = busy["series"][-1]
    assert point["output_tokens_per_s"] > 0 and point["latency_p50_s"] > 0
    assert point["ttft_p95_s"] is not None and point["error_rate"] == 0
    assert point["gpu_utilization_pct"] == 60.0 and point["gpu_power_w"] == 300.0
    assert point["cost_usd_per_hour"] == 1.006
    assert point["cost_usd_per_million_output_tokens"] == pytest.approx(
        1.006 / (point["output_tokens_per_s"] * 3600) * 1e6)
    assert busy["agent"]["state"] == "ok" and busy["agent"]["instance_type"] == "g5.xlarge"


def test_fleet_says_why_the_agents_figures_are_missing(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    with make_router([fake[1]], **FAST) as router:
        body = poll(router.url + "/console/fleet", lambda b: len(b["series"]) >= 1)
        assert body["agent"]["state"] == "not configured"
        assert body["series"][-1]["cost_usd_per_hour"] is None
    with make_router([fake[1]], agent_url=f"http://127.0.0.1:{free_port()}", **FAST) as router:
        body = poll(router.url + "/console/fleet", lambda b: len(b["series"]) >= 1)
        assert body["agent"]["state"] == "unreachable"


def test_an_agent_answer_that_breaks_the_status_contract_reads_as_unreachable(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    async def status(request: Request) -> Response:
        return JSONResponse({"health": {"interval_s": 1}, "latest": {"at": "yesterday"}})

    with ServerThread(Starlette(routes=[Route("/status", status)])) as agent, \
            make_router([fake[1]], agent_url=agent.url, **FAST) as router:
        body = poll(router.url + "/console/fleet", lambda b: len(b["series"]) >= 2)
    assert body["agent"]["state"] == "unreachable"
    assert body["series"][-1]["cost_usd_per_hour"] is None


def test_fleet_is_protected_like_metrics(make_router: RouterFactory,
                                         fake: tuple[FakeControl, str]) -> None:
    with make_router([fake[1]], protect_metrics=True) as router:
        refused = httpx.get(router.url + "/console/fleet", timeout=5)
        assert refused.status_code == 401 and refused.json()["error"]["type"]
        assert httpx.get(router.url + "/console/fleet", headers=AUTH, timeout=5).status_code == 200


def test_plan_ranks_catalogue_models_behind_a_key(make_router: RouterFactory,
                                                  fake: tuple[FakeControl, str]) -> None:
    question = {"model": "meta-llama/Llama-3.1-8B-Instruct", "input_len": 512, "output_len": 256,
                "ttft_ms": 1000, "tpot_ms": 50, "rate": 20, "limit": 10}
    with make_router([fake[1]]) as router:
        options = httpx.get(router.url + "/console/plan", headers=AUTH, timeout=5).json()
        assert "Llama-3.1-8B" in options["models"] and "spot" in options["markets"]
        answer = httpx.post(router.url + "/console/plan", json=question, headers=AUTH,
                            timeout=30)
        assert httpx.post(router.url + "/console/plan", json=question,
                          timeout=5).status_code == 401
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["candidates"]) == 10 and body["searched"] > 10
    best = body["recommended"]
    assert best == body["candidates"][0] and best["feasible"] and best["on_frontier"]
    assert best["ttft_ms"] <= 1000 and best["tpot_ms"] <= 50
    assert f'instance_type = "{best["instance_type"]}"' in body["tfvars"]
    assert body["cost_unit"] == "fleet $/hr for 20 requests/s"
    costs = [c["cost"] for c in body["candidates"] if c["feasible"]]
    assert costs[1:] == sorted(costs[1:]) and costs[0] <= min(costs) * 1.05  # a close tie
    assert best["tpot_ms_at_rate"] <= best["tpot_ms"]
    SizingAnswer.model_validate(body)  # every key of the contract, and no other


def test_the_sizing_page_reads_only_keys_of_the_planners_answer() -> None:
    script = (WEB_DIR / "sizing.js").read_text()
    render = script[script.index("function renderPlan"):script.index("async function copyTfvars")]
    answer_keys = set(re.findall(r"\bresult\.(\w+)", render))
    candidate_keys = set(re.findall(r"\bc\.(\w+)", render))
    assert {"candidates", "cost_unit"} <= answer_keys <= set(SizingAnswer.model_fields)
    assert {"on_frontier", "e2e_ms"} <= candidate_keys <= set(SizedCandidate.model_fields)


@pytest.mark.parametrize(("change", "param"), [
    ({"model": "no-such-model"}, "model"),
    ({"model": "/etc/hostname"}, "model"),  # the CLI reads config.json paths; the web may not
    ({"input_len": 0}, "input_len"),
    ({"market": "reserved"}, "market"),
    ({"surprise": 1}, "surprise"),
])
def test_plan_rejects_bad_questions_with_a_400_naming_the_field(
        make_router: RouterFactory, fake: tuple[FakeControl, str],
        change: dict[str, Any], param: str) -> None:
    question = {"model": "Llama-3.1-8B", **change}
    with make_router([fake[1]]) as router:
        resp = httpx.post(router.url + "/console/plan", json=question, headers=AUTH, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param


def test_plan_counts_against_the_keys_request_limit(make_router: RouterFactory,
                                                    fake: tuple[FakeControl, str]) -> None:
    with make_router([fake[1]], rate_limit_rpm=1) as router:
        question = {"model": "Llama-3.1-8B", "limit": 1}
        first = httpx.post(router.url + "/console/plan", json=question, headers=AUTH, timeout=10)
        second = httpx.post(router.url + "/console/plan", json=question, headers=AUTH, timeout=10)
    assert first.status_code == 200
    assert second.status_code == 429 and "retry-after" in second.headers


def test_cors_admits_only_the_configured_origins_and_exposes_the_route(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    site = "https://d1234.cloudfront.net"
    preflight = {"access-control-request-method": "POST",
                 "access-control-request-headers": "authorization,content-type,x-api-key"}
    with make_router([fake[1]], cors_allowed_origins=[site]) as router:
        ok = httpx.options(router.url + "/v1/chat/completions",
                           headers={"origin": site, **preflight}, timeout=5)
        evil = httpx.options(router.url + "/v1/chat/completions",
                             headers={"origin": "https://evil.example", **preflight}, timeout=5)
        with httpx.stream("POST", router.url + "/v1/chat/completions", timeout=10, json={
                "model": "auto", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4, "stream": True}, headers={"origin": site, **AUTH}) as streamed:
            streamed.read()
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == site
    assert "x-api-key" in ok.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in ok.headers  # keys travel in headers only
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers
    assert streamed.status_code == 200
    assert streamed.headers["access-control-allow-origin"] == site
    assert "x-llmfleet-route" in streamed.headers["access-control-expose-headers"]


def test_without_origins_no_page_elsewhere_may_read_answers(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    with make_router([fake[1]]) as router:
        resp = httpx.get(router.url + "/v1/models",
                         headers={"origin": "https://d1234.cloudfront.net", **AUTH}, timeout=5)
    assert resp.status_code == 200 and "access-control-allow-origin" not in resp.headers


@pytest.mark.parametrize("origin", ["https://d1234.cloudfront.net/", "d1234.cloudfront.net",
                                    "https://x.example/path"])
def test_an_origin_with_a_path_or_no_scheme_is_refused(origin: str) -> None:
    with pytest.raises(ValidationError, match="scheme://host"):
        RouterSettings(backends=["http://127.0.0.1:1"], cors_allowed_origins=[origin])


def agent_status_body(latest: LatestRound | None) -> AgentStatus:
    """A `/status` body from an agent with a 10 s interval (stale after 35 s)."""
    health = AgentState(interval_s=10, started_at=0.0).health(now=0.0)
    return AgentStatus(health=health, latest=latest)


def test_agent_view_averages_utilisation_sums_power_and_goes_stale() -> None:
    status = agent_status_body(LatestRound(
        at=100.0, instance_type="g5.12xlarge", cost_usd_per_hour=5.672,
        gpus=(GpuStatus(index=0, utilization_pct=90, power_w=150),
              GpuStatus(index=1, utilization_pct=30, power_w=None))))
    fresh = agent_view(status, now=110.0)
    assert (fresh.state, fresh.gpu_utilization_pct, fresh.gpu_power_w) == ("ok", 60.0, 150.0)
    assert fresh.gpus[1] == {"index": 1, "utilization_pct": 30.0, "power_w": None,
                             "memory_used_bytes": None, "memory_total_bytes": None,
                             "temperature_c": None}  # as the agent sent it
    assert agent_view(status, now=200.0).state == "stale"
    assert agent_view(agent_status_body(None), now=0.0).state == "stale"
    assert per_million(1.006, 0.0) is None and per_million(None, 10.0) is None
    assert per_million(3.6, 1000.0) == pytest.approx(1.0)  # $3.6/hr at 1000 tok/s: $1/M


def test_a_newer_agent_with_new_words_and_fields_is_still_read() -> None:
    """Router and agent are upgraded one after the other: a state word or a field this
    router does not know must not make the agent look unreachable."""
    body = agent_status_body(LatestRound(at=100.0)).model_dump(mode="json")
    body["health"].update(buffer="object-store", cloudwatch="throttled", new_figure=1)
    body["latest"]["new_figure"] = 2
    status = AgentStatus.model_validate_json(json.dumps(body))
    assert agent_view(status, now=110.0).state == "ok"


def test_plan_without_a_key_is_refused_before_its_body_is_read(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    """Regression: a 150 MB body with no key was buffered and parsed, then answered 400."""
    junk = b"x" * (2 << 20)
    with make_router([fake[1]]) as router:
        anonymous = httpx.post(router.url + "/console/plan", content=junk, timeout=10)
        keyed = httpx.post(router.url + "/console/plan", content=junk, headers=AUTH, timeout=10)
    assert anonymous.status_code == 401
    assert keyed.status_code == 413
    assert keyed.json()["error"]["code"] == "request_too_large"


def test_fleet_and_metrics_ask_a_client_off_loopback_for_a_key_by_default(
        fake: tuple[FakeControl, str]) -> None:
    """Regression: /console/fleet and /metrics were open to anyone unless protect_metrics
    was set, and the instances never set it."""
    from starlette.testclient import TestClient

    from server.app import create_app

    app = create_app(RouterSettings(backends=[fake[1]], api_keys=[f"t:{TEST_KEY}"]))
    for client, needs_key in ((("10.0.1.7", 40000), True), (("127.0.0.1", 40000), False)):
        with TestClient(app, client=client) as http:
            for path in ("/metrics", "/console/fleet"):
                assert http.get(path).status_code == (401 if needs_key else 200), (client, path)
                assert http.get(path, headers=AUTH).status_code == 200


def test_the_console_refuses_to_be_framed(make_router: RouterFactory,
                                          fake: tuple[FakeControl, str]) -> None:
    """Regression: the console could be framed by any site (a meta CSP cannot set
    frame-ancestors), inviting clickjacking of a pasted key."""
    with make_router([fake[1]]) as router:
        for path in ("/", "/app.js"):
            headers = httpx.get(router.url + path, timeout=5).headers
            assert headers["content-security-policy"] == "frame-ancestors 'none'"
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"


def test_every_405_names_the_allowed_methods(make_router: RouterFactory,
                                             fake: tuple[FakeControl, str]) -> None:
    """Regression: 405 answers carried no Allow header, which HTTP requires."""
    with make_router([fake[1]]) as router:
        for method, path, allow in (("GET", "/v1/chat/completions", "POST"),
                                    ("PUT", "/v1/completions", "POST"),
                                    ("DELETE", "/console/fleet", "GET"),
                                    ("POST", "/index.html", "GET, HEAD")):
            resp = httpx.request(method, router.url + path, timeout=5)
            assert resp.status_code == 405, (method, path)
            assert resp.headers["allow"] == allow, (method, path)
            assert resp.json()["error"]["code"] == "method_not_allowed"


def test_a_route_the_router_does_not_serve_is_404_not_405(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    """Regression: the console's static files answered 405 to a POST anywhere, so a client
    calling a route the router does not pass on read "method not allowed"."""
    with make_router([fake[1]]) as router:
        for method, path in (("POST", "/v1/files"), ("POST", "/v1/nothing"),
                             ("DELETE", "/v1/responses/resp-1"), ("GET", "/v1/nothing")):
            resp = httpx.request(method, router.url + path, timeout=5)
            assert resp.status_code == 404, (method, path)
            assert resp.json()["error"]["code"] == "not_found"


def test_the_openapi_document_describes_the_completion_routes(
        make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    """Regression: the two routes that carry all the traffic were missing from it."""
    with make_router([fake[1]]) as router:
        spec = httpx.get(router.url + "/openapi.json", timeout=5).json()
    for path, field in (("/v1/chat/completions", "messages"), ("/v1/completions", "prompt")):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert field in body["schema"]["properties"] and "model" in body["schema"]["required"]
    plan = spec["paths"]["/console/plan"]["post"]["requestBody"]["content"]["application/json"]
    assert "input_len" in plan["schema"]["properties"]
