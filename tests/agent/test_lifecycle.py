"""The agent on an instance leaving the fleet: it notices, drains the router, lets the group go.

Real parts: a router (uvicorn on an ephemeral port) whose fake engine paces its streams so
that they are still running when the notice comes, read to their end by the official
`openai` client; the agent's watcher with its real IMDSv2 and boto3 clients. Stand-ins:
instance metadata (tests.helpers.imds) and the Auto Scaling endpoint for
`CompleteLifecycleAction`, which moto does not implement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.buffer import Datapoint
from agent.cost import Identity
from agent.lifecycle import (
    REBALANCE,
    SPOT_ACTION,
    TARGET_STATE,
    LifecycleCollector,
    LifecycleState,
    LifecycleWatcher,
    Phase,
    build_watcher,
)
from agent.runner import Agent
from agent.settings import AgentSettings
from llmfleet.core.drain import RouterDrain
from llmfleet.core.gpu import GpuCollector
from llmfleet.core.net import free_port
from tests.helpers.agent import agent_process, leaving_instance_env, wait_for
from tests.helpers.fake_upstream import FakeControl
from tests.helpers.imds import FakeImds, FakeLifecycle
from tests.helpers.nvml import FakeGpu, fake_nvml
from tests.helpers.router import TEST_KEY, RouterFactory
from tests.helpers.streams import read_stream

STREAMS = 4
TOKENS = 30
CHUNK_DELAY_S = 0.05  # each stream lasts about 1.5 s
POLL_S = 0.05
IDENTITY = Identity(instance_id="i-0leaving", instance_type="g5.xlarge",
                    asg_name="llmfleet-dev-gpu", region="us-east-1")
META = "meta-data/"  # the fake's keys are the paths after it


def watcher(imds_url: str, router_url: str, endpoint: str,
            clock: Callable[[], float] = time.monotonic, **overrides: object
            ) -> LifecycleWatcher:
    values: dict[str, object] = {
        "imds_url": imds_url, "router_url": router_url, "lifecycle_hook": "llmfleet-dev-drain",
        "autoscaling_endpoint_url": endpoint, "drain_timeout_s": 30.0, "publish": False,
        "gpu": False}
    values.update(overrides)
    built = build_watcher(AgentSettings(**values), IDENTITY, clock)  # type: ignore[arg-type]
    assert built is not None
    return built


def metrics_page(w: LifecycleWatcher) -> str:
    """What the agent's /metrics shows of the watcher's state."""
    registry = CollectorRegistry()
    registry.register(LifecycleCollector(w.state))
    return generate_latest(registry).decode()


def notice(fake: FakeImds, path: str, value: str) -> None:
    fake.values[path.removeprefix(META)] = value


async def until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_scale_in_drains_every_live_stream_then_completes_the_lifecycle_action(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    control, upstream = fake
    control.chunk_delay_s = CHUNK_DELAY_S
    metadata, imds_url = imds
    actions, endpoint = lifecycle
    with make_router([upstream]) as router:
        w = watcher(imds_url, router.url, endpoint)

        async def scenario() -> None:
            stop = asyncio.Event()
            watching = asyncio.ensure_future(w.run(stop, POLL_S))
            client = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key=TEST_KEY,
                                        max_retries=0)
            streams = [asyncio.ensure_future(read_stream(client, TOKENS)) for _ in range(STREAMS)]
            await until(lambda: control.streams_started == STREAMS)
            await asyncio.sleep(3 * POLL_S)
            assert w.state.phase is Phase.SERVING  # InService: nothing happens

            notice(metadata, TARGET_STATE, "Terminated")  # the group scales in
            await until(lambda: w.state.phase is not Phase.SERVING)
            async with httpx.AsyncClient(base_url=router.url, timeout=10) as http:
                assert (await http.get("/ready")).status_code == 503
                late = await http.post("/v1/completions", json={"model": "fake-model"},
                                       headers={"authorization": f"Bearer {TEST_KEY}"})
                assert late.status_code == 503
                assert late.json()["error"]["code"] == "instance_draining"
            assert not actions.calls  # not while anything is in flight

            answers = await asyncio.gather(*streams)
            await asyncio.wait_for(watching, 10)  # ends once the action is completed
            await client.close()
            expected = "".join(f" t{i}" for i in range(TOKENS))
            assert [(text, finish) for text, finish, _ in answers] == \
                [(expected, "length")] * STREAMS
            assert control.requests == STREAMS  # the late request never reached the engine
            assert actions.calls == [{
                "Action": "CompleteLifecycleAction", "Version": "2011-01-01",
                "LifecycleHookName": "llmfleet-dev-drain",
                "AutoScalingGroupName": "llmfleet-dev-gpu", "InstanceId": "i-0leaving",
                "LifecycleActionResult": "CONTINUE"}]
            assert actions.call_times[0] >= max(end for _, _, end in answers)
            assert w.state.phase is Phase.RELEASED and w.state.completed
            assert w.state.in_flight_left == 0 and w.state.reason == "terminating"

        asyncio.run(scenario())


def test_a_spot_notice_cuts_the_drain_short_of_the_reclaim_and_completes_once_terminating(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    """EC2 reclaims the instance at the notice's time whatever runs: the wait ends
    `spot_margin_s` before it, even with requests in flight (the longest stream here lasts
    longer than that); the action is completed when the group terminates the instance."""
    control, upstream = fake
    control.chunk_delay_s = CHUNK_DELAY_S
    metadata, imds_url = imds
    actions, endpoint = lifecycle
    with make_router([upstream]) as router:
        w = watcher(imds_url, router.url, endpoint, spot_margin_s=119.5)

        async def scenario() -> None:
            stop = asyncio.Event()
            watching = asyncio.ensure_future(w.run(stop, POLL_S))
            client = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key=TEST_KEY,
                                        max_retries=0)
            streams = [asyncio.ensure_future(read_stream(client, TOKENS)) for _ in range(STREAMS)]
            await until(lambda: control.streams_started == STREAMS)
            reclaim = (datetime.now(UTC) + timedelta(seconds=120)).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            notice(metadata, SPOT_ACTION, json.dumps({"action": "terminate",
                                                       "time": reclaim}))
            await until(lambda: w.state.phase is Phase.DRAINED)
            assert w.state.reason == "spot interruption"
            assert w.state.in_flight_left == STREAMS  # the bound (about 0.5 s) ran out
            assert w.state.drain_began_at is not None and w.state.drain_deadline is not None
            assert w.state.drain_deadline - w.state.drain_began_at < 1.5
            await asyncio.sleep(3 * POLL_S)
            assert not actions.calls  # the group has not moved it to Terminating yet

            notice(metadata, TARGET_STATE, "Terminated")
            await asyncio.wait_for(watching, 10)
            assert len(actions.calls) == 1 and w.state.completed
            await asyncio.gather(*streams)  # the router still lets them finish
            await client.close()

        asyncio.run(scenario())


def test_a_rebalance_recommendation_alone_does_not_drain(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    _, upstream = fake
    metadata, imds_url = imds
    actions, endpoint = lifecycle
    with make_router([upstream]) as router:
        w = watcher(imds_url, router.url, endpoint)
        notice(metadata, REBALANCE, json.dumps({"noticeTime": "2026-12-06T21:00:00Z"}))
        asyncio.run(polls(w, 3))
        assert w.state.rebalance_recommended and w.state.phase is Phase.SERVING
        assert httpx.get(f"{router.url}/ready", timeout=5).status_code == 200
        assert not actions.calls
        page = metrics_page(w)
        assert "llmfleet_agent_rebalance_recommended 1.0" in page
        assert 'llmfleet_agent_lifecycle_phase{phase="serving"} 1.0' in page


def test_a_throttled_completion_is_tried_again_on_the_next_poll(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    _, upstream = fake
    metadata, imds_url = imds
    actions, endpoint = lifecycle
    notice(metadata, TARGET_STATE, "Terminated")
    with make_router([upstream]) as router:
        throttled = watcher(imds_url, router.url, endpoint)
        # boto3 makes 3 attempts a call (standard mode): the first poll's all fail.
        actions.fail_next = 4
        asyncio.run(polls(throttled, 1))
        assert throttled.state.phase is Phase.DRAINED and not actions.calls
        asyncio.run(polls(throttled, 1))  # the next poll tries again
        assert throttled.state.completed and len(actions.calls) == 1


def test_a_completion_before_the_hook_waits_is_tried_again_not_given_up(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    """The group deregisters the instance from the load balancer before the hook waits, and
    the target state reads Terminated from the start: an idle instance drains at once and
    its first call finds no action. Giving up there left the hook holding the instance for
    its whole timeout."""
    _, upstream = fake
    metadata, imds_url = imds
    actions, endpoint = lifecycle
    notice(metadata, TARGET_STATE, "Terminated")
    now = [1000.0]
    with make_router([upstream]) as router:
        early = watcher(imds_url, router.url, endpoint, lambda: now[0], drain_timeout_s=30.0)
        actions.no_action = True  # still deregistering
        asyncio.run(polls(early, 2))
        assert early.state.phase is Phase.DRAINED and not early.state.completed
        actions.no_action = False  # Terminating:Wait
        asyncio.run(polls(early, 1))
        assert early.state.completed and len(actions.calls) == 1

        lapsed = watcher(imds_url, router.url, endpoint, lambda: now[0], drain_timeout_s=30.0)
        actions.no_action = True  # and it stays so: the hook's timeout ran out
        asyncio.run(polls(lapsed, 1))
        now[0] += 2 * 30 + 59  # the deregistration delay and the hook's timeout: not yet
        asyncio.run(polls(lapsed, 1))
        assert lapsed.state.phase is Phase.DRAINED
        now[0] += 2
        asyncio.run(polls(lapsed, 1))
        assert lapsed.state.phase is Phase.RELEASED and not lapsed.state.completed


LAUNCH_HOOK = "llmfleet-dev-launch"


def launch_call(hook: str = LAUNCH_HOOK) -> dict[str, str]:
    return {"Action": "CompleteLifecycleAction", "Version": "2011-01-01",
            "LifecycleHookName": hook, "AutoScalingGroupName": "llmfleet-dev-gpu",
            "InstanceId": "i-0leaving", "LifecycleActionResult": "CONTINUE"}


async def router_ready(url: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"{url}/ready")).status_code == 200


@pytest.mark.parametrize("target_state", ["Warmed:Stopped", "InService"])
def test_a_launch_action_is_completed_once_the_router_serves_not_before(
        target_state: str, fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    """A warm pool stops each new instance as soon as it runs unless a launch hook holds it
    (Warmed:Stopped: cloud-init cut off, nothing installed), and puts a restarted one in
    the load balancer before its engine has loaded unless the hook holds it (InService)."""
    control, upstream = fake
    control.healthy = False  # the engine is still loading
    metadata, imds_url = imds
    notice(metadata, TARGET_STATE, target_state)
    actions, endpoint = lifecycle
    with make_router([upstream]) as router:
        w = watcher(imds_url, router.url, endpoint, launch_hook=LAUNCH_HOOK)

        async def scenario() -> None:
            await polls(w, 3)
            assert not actions.calls and not w.state.joined  # not ready: held
            control.healthy = True
            deadline = time.monotonic() + 10
            while not await router_ready(router.url):
                assert time.monotonic() < deadline, "the router never became ready"
                await asyncio.sleep(0.05)
            await polls(w, 1)
            assert actions.calls == [launch_call()]
            await polls(w, 3)  # once only, and nothing drains
            assert len(actions.calls) == 1
            assert w.state.joined and w.state.launch_completed
            assert w.state.phase is Phase.SERVING

        asyncio.run(scenario())
        assert "llmfleet_agent_launch_completed 1.0" in metrics_page(w)


def test_a_launch_action_not_yet_waiting_is_asked_again_then_left(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    _, upstream = fake
    _, imds_url = imds
    actions, endpoint = lifecycle
    now = [1000.0]
    with make_router([upstream]) as router:
        early = watcher(imds_url, router.url, endpoint, lambda: now[0], launch_hook=LAUNCH_HOOK)
        actions.no_action = True
        asyncio.run(polls(early, 2))
        assert not early.state.joined
        actions.no_action = False  # the group now holds it in Pending:Wait
        asyncio.run(polls(early, 1))
        assert early.state.launch_completed and actions.calls == [launch_call()]

        # The hook timed out, or the instance launched before the hook existed: nothing
        # waits, and the agent stops asking a minute after the router first served.
        lapsed = watcher(imds_url, router.url, endpoint, lambda: now[0], launch_hook=LAUNCH_HOOK)
        actions.no_action = True
        asyncio.run(polls(lapsed, 1))
        now[0] += 59
        asyncio.run(polls(lapsed, 1))
        assert not lapsed.state.joined
        now[0] += 2
        asyncio.run(polls(lapsed, 1))
        assert lapsed.state.joined and not lapsed.state.launch_completed
        assert lapsed.state.phase is Phase.SERVING


def test_a_launch_action_failing_for_a_while_is_warned_of_and_still_tried(
        fake: tuple[FakeControl, str], make_router: RouterFactory, caplog: pytest.LogCaptureFixture,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    """Throttled (or denied) past a minute: an operator must see it, since the hook abandons
    a serving instance at its timeout; and the agent goes on trying, so that it completes
    once the calls go through."""
    _, upstream = fake
    _, imds_url = imds
    actions, endpoint = lifecycle
    now = [1000.0]
    with make_router([upstream]) as router:
        w = watcher(imds_url, router.url, endpoint, lambda: now[0], launch_hook=LAUNCH_HOOK)
        actions.fail_next = 1000
        asyncio.run(polls(w, 1))
        now[0] += 61
        with caplog.at_level(logging.INFO, logger="agent.lifecycle"):
            asyncio.run(polls(w, 2))
        assert not w.state.joined
        assert [r.levelno for r in caplog.records if "still not completed" in r.message] == \
            [logging.WARNING]
        actions.fail_next = 0
        asyncio.run(polls(w, 1))
        assert w.state.launch_completed and actions.calls == [launch_call()]


def test_an_instance_the_pool_terminates_while_it_prepares_leaves_through_the_drain_hook(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    _, upstream = fake
    metadata, imds_url = imds
    notice(metadata, TARGET_STATE, "Warmed:Terminated")
    actions, endpoint = lifecycle
    with make_router([upstream]) as router:
        w = watcher(imds_url, router.url, endpoint, launch_hook=LAUNCH_HOOK)
        asyncio.run(polls(w, 3))
        assert w.state.reason == "terminating" and w.state.completed
        assert actions.calls == [launch_call("llmfleet-dev-drain")]  # the launch is moot
        assert not w.state.launch_completed


def test_an_instance_the_warm_pool_prepares_publishes_nothing_the_group_aggregates(
        fake: tuple[FakeControl, str], make_router: RouterFactory, tmp_path: Path,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    """Scaling averages the agents' figures over the group (AutoScalingGroupName alone): an
    idle instance being prepared for the pool, not in the group's capacity, would pull the
    average down and hold back a scale-out."""
    _, upstream = fake
    metadata, imds_url = imds
    _, endpoint = lifecycle
    notice(metadata, TARGET_STATE, "Warmed:Stopped")
    group = (("AutoScalingGroupName", "llmfleet-dev-gpu"),)
    with make_router([upstream]) as router:
        agent = Agent(AgentSettings(
            imds_url=imds_url, router_url=router.url, engine_urls=[], launch_hook=LAUNCH_HOOK,
            autoscaling_endpoint_url=endpoint, publish=False, gpu=False,
            state_dir=tmp_path), IDENTITY, gpu=GpuCollector(fake_nvml([FakeGpu(util=3)])))

        async def rounds() -> tuple[list[Datapoint], list[Datapoint]]:
            assert agent.lifecycle is not None
            await agent.start()
            await agent.lifecycle.poll()
            pooled = (await agent.collect()).points
            notice(metadata, TARGET_STATE, "InService")  # a scale-out started it
            await agent.lifecycle.poll()
            serving = (await agent.collect()).points
            await agent.close()
            return pooled, serving

        pooled, serving = asyncio.run(rounds())
    # Its price and its start still count for the group: it bills while it prepares, and
    # its cold start is what the launch hook's timeout must allow (llmfleet metrics --starts).
    fleet_wide = {"CostPerHourUSD", "TimeToServingSeconds"}
    assert "CostPerHourUSD" in {p.name for p in pooled if p.dimensions == group} <= fleet_wide
    assert all(dict(p.dimensions).get("InstanceId") == "i-0leaving"  # the rest: its own id
               for p in pooled if p.name not in fleet_wide)
    # In service (launch action completed, InService): its GPU joins the group's average.
    assert {"GPUUtilization", "CostPerHourUSD"} <= {p.name for p in serving
                                                    if p.dimensions == group}


def test_only_an_instance_in_service_counts_in_the_group() -> None:
    assert LifecycleState(joined=True).in_group  # no launch hook, metadata not read yet
    assert LifecycleState(joined=True, target_state="InService").in_group
    # Held by the launch hook until it serves (a cold launch, or a start from the pool).
    assert not LifecycleState(joined=False, target_state="InService").in_group
    assert not LifecycleState(joined=True, target_state="Warmed:Stopped").in_group


def test_a_failing_poll_does_not_end_the_watch(imds: tuple[FakeImds, str],
                                               lifecycle: tuple[FakeLifecycle, str]) -> None:
    _, imds_url = imds
    _, endpoint = lifecycle
    w = watcher(imds_url, f"http://127.0.0.1:{free_port()}", endpoint)
    calls = [0]

    async def broken() -> None:
        calls[0] += 1
        raise RuntimeError("boom")

    w.poll = broken  # type: ignore[method-assign]

    async def scenario() -> None:
        stop = asyncio.Event()
        watching = asyncio.ensure_future(w.run(stop, 0.01))
        await until(lambda: calls[0] >= 3)
        stop.set()
        await asyncio.wait_for(watching, 5)

    asyncio.run(scenario())


async def polls(w: LifecycleWatcher, n: int) -> None:
    for _ in range(n):
        await w.poll()


def test_an_unreachable_router_does_not_hold_the_instance(
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str]) -> None:
    metadata, imds_url = imds
    actions, endpoint = lifecycle
    notice(metadata, TARGET_STATE, "Terminated")
    w = watcher(imds_url, f"http://127.0.0.1:{free_port()}", endpoint)
    asyncio.run(polls(w, 3))
    assert w.state.completed and len(actions.calls) == 1


def test_off_ec2_or_told_not_to_there_is_no_watcher() -> None:
    assert build_watcher(AgentSettings(imds=False), IDENTITY) is None
    assert build_watcher(AgentSettings(lifecycle_watch=False), IDENTITY) is None
    assert build_watcher(AgentSettings(router_url=""), IDENTITY) is None


def test_the_agent_process_drains_its_router_and_releases_the_instance(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str],
        tmp_path: Path) -> None:
    """`llmfleet agent` as systemd runs it on an instance, configured only by environment."""
    _, upstream = fake
    metadata, imds_url = imds
    actions, endpoint = lifecycle
    port = free_port()
    with make_router([upstream]) as router:
        env = leaving_instance_env(port, router.url, imds_url, endpoint, "i-0leaving", tmp_path)
        with agent_process(env, tmp_path / "agent.log") as proc:
            wait_for(port, lambda body: int(body["rounds"]) >= 1)  # type: ignore[call-overload]
            assert not RouterDrain(router.url).status().draining
            notice(metadata, TARGET_STATE, "Terminated")
            deadline = time.monotonic() + 30
            while not actions.calls and time.monotonic() < deadline:
                time.sleep(0.05)
            assert actions.calls and actions.calls[0]["InstanceId"] == "i-0leaving"
            assert RouterDrain(router.url).status().draining
            page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert 'llmfleet_agent_lifecycle_phase{phase="released"} 1.0' in page
            assert proc.poll() is None  # the agent keeps publishing until the instance goes
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
