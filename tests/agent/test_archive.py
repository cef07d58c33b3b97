"""The agent sending the router's archive (`agent.archive`): `llmfleet agent` as systemd runs
it on an instance, beside a real router that writes the spool and holds no AWS credentials,
sending to S3 in moto's server mode; and, when the instance leaves, the last records sent
before the group may terminate it, or the drain's bound keeping it from waiting forever."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import openai
import pytest

from agent.cost import Identity
from agent.lifecycle import Phase, build_watcher
from agent.runner import Agent
from agent.settings import AgentSettings
from llmfleet.core.archive import Spool
from llmfleet.core.net import free_port
from tests.helpers.agent import agent_process, leaving_instance_env, wait_for
from tests.helpers.fake_upstream import FakeControl
from tests.helpers.imds import FakeImds, FakeLifecycle
from tests.helpers.router import TEST_KEY, RouterFactory, eventually

BUCKET = "llmfleet-archive"
IDENTITY = Identity(instance_id="i-0archive", instance_type="g5.xlarge",
                    asg_name="llmfleet-dev-gpu", region="us-east-1")
# The router writes the spool and never sends it: on an instance the agent does.
ROUTER_ARCHIVE = {"archive_content": "full", "archive_flush_s": 0.05,
                  "archive_segment_age_s": 3600.0, "archive_group_readable": True}


def s3(moto_port: int) -> tuple[Any, str]:
    """moto's S3 with the archive's bucket (the `lifecycle` fixture sets the credentials)."""
    endpoint = f"http://127.0.0.1:{moto_port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client, endpoint


def prompts_in(client: Any) -> list[str]:
    found = []
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        found += [json.loads(line)["request"]["prompt"]
                  for line in gzip.decompress(body).splitlines()]
    return sorted(found)


def complete(url: str, prompt: str) -> None:
    with openai.OpenAI(base_url=url + "/v1", api_key=TEST_KEY, max_retries=0) as api:
        api.completions.create(model="fake-model", prompt=prompt, max_tokens=2)


def test_the_agent_process_sends_the_router_s_archive_and_the_last_records_as_it_leaves(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str],
        moto_port: int, tmp_path: Path) -> None:
    _, upstream = fake
    metadata, imds_url = imds
    actions, autoscaling = lifecycle
    client, endpoint = s3(moto_port)
    spool, port = tmp_path / "archive", free_port()
    # Segments sealed after a second, for the agent's rounds; the drain seals at once.
    router_settings = {**ROUTER_ARCHIVE, "archive_dir": spool, "archive_segment_age_s": 1.0}
    with make_router([upstream], **router_settings) as router:
        env = leaving_instance_env(port, router.url, imds_url, autoscaling, "i-0archive",
                                   tmp_path, archive_dir=str(spool), archive_bucket=BUCKET,
                                   archive_interval_s="0.2", s3_endpoint_url=endpoint)
        with agent_process(env, tmp_path / "agent.log") as proc:
            wait_for(port, lambda body: int(body["rounds"]) >= 1)  # type: ignore[call-overload]
            complete(router.url, "early")
            eventually(lambda: prompts_in(client) == ["early"])  # the agent's rounds
            keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
            assert all("/model=fake-model/i-0archive-seg-" in k for k in keys)

            complete(router.url, "last")  # and the instance leaves at once
            notice(metadata, "autoscaling/target-lifecycle-state", "Terminated")
            eventually(lambda: bool(actions.calls), timeout_s=30)
            # By the time the group was told (the agent's rounds may have sent it first: the
            # in-process tests below show the drain's own send).
            assert prompts_in(client) == ["early", "last"]
            assert Spool(spool).size() == 0
            page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert "llmfleet_agent_archive_segments_sent_total 2.0" in page
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0


def leaving(settings: AgentSettings, metadata: FakeImds) -> tuple[Agent, float]:
    """The watcher alone (no periodic rounds of the sender): the instance is told to
    terminate; how long until the watcher let it go."""
    agent = Agent(settings, IDENTITY)
    watcher = build_watcher(settings, IDENTITY, archive=agent.archive)
    assert watcher is not None and agent.archive is not None

    async def leave() -> float:
        notice(metadata, "autoscaling/target-lifecycle-state", "Terminated")
        began = time.monotonic()
        await asyncio.wait_for(watcher.run(asyncio.Event(), 0.05), 30)
        return time.monotonic() - began

    took = asyncio.run(leave())
    assert watcher.state.phase is Phase.RELEASED
    return agent, took


@pytest.mark.parametrize("s3_up", [True, False], ids=["s3-up", "s3-down"])
def test_the_last_records_are_sent_before_the_instance_goes_within_the_drain_s_bound(
        s3_up: bool, fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str],
        moto_port: int, tmp_path: Path) -> None:
    _, upstream = fake
    metadata, imds_url = imds
    actions, autoscaling = lifecycle
    client, endpoint = s3(moto_port)
    spool = tmp_path / "archive"
    with make_router([upstream], **ROUTER_ARCHIVE, archive_dir=spool) as router:
        complete(router.url, "last words")  # a segment not due for an hour
        agent, took = leaving(AgentSettings(
            imds_url=imds_url, router_url=router.url, lifecycle_hook="llmfleet-dev-drain",
            autoscaling_endpoint_url=autoscaling, drain_timeout_s=1.5, publish=False,
            gpu=False, archive_dir=spool, archive_bucket=BUCKET, archive_margin_s=1.0,
            # S3 down: nothing listens there.
            s3_endpoint_url=endpoint if s3_up else f"http://127.0.0.1:{free_port()}"),
            metadata)
    assert len(actions.calls) == 1
    if s3_up:
        assert prompts_in(client) == ["last words"] and Spool(spool).size() == 0
        assert agent.status.archive_sent_total == 1
        return
    # Rounds until less than a pause (1 s) is left of the bound and the margin (2.5 s), plus
    # a round's connection attempts.
    assert 1.4 < took < 12.0
    (segment,) = Spool(spool).sealed()  # left behind: said in the log and the metrics
    assert b"last words" in segment.read_bytes()
    assert agent.status.archive_pending == 1 and agent.status.archive_failures_total >= 1


def notice(fake: FakeImds, path: str, value: str) -> None:
    fake.values[path] = value


def test_a_router_that_is_gone_leaves_its_last_records_for_the_agent_to_seal_and_send(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str],
        moto_port: int, tmp_path: Path) -> None:
    """Regression: a router that could not be asked to drain (it had crashed) left its
    current segment unsealed, and the agent let the instance go without it."""
    _, upstream = fake
    metadata, imds_url = imds
    actions, autoscaling = lifecycle
    client, endpoint = s3(moto_port)
    spool = tmp_path / "archive"
    with make_router([upstream], **ROUTER_ARCHIVE, archive_dir=spool) as router:
        complete(router.url, "before the crash")
    assert Spool(spool).current_bytes() > 0 and not Spool(spool).sealed()
    agent, _ = leaving(AgentSettings(
        imds_url=imds_url, router_url=f"http://127.0.0.1:{free_port()}",  # nobody there
        lifecycle_hook="llmfleet-dev-drain", autoscaling_endpoint_url=autoscaling,
        drain_timeout_s=5.0, publish=False, gpu=False, archive_dir=spool,
        archive_bucket=BUCKET, s3_endpoint_url=endpoint), metadata)
    assert len(actions.calls) == 1
    assert prompts_in(client) == ["before the crash"] and Spool(spool).size() == 0
    assert agent.status.archive_sent_total == 1


def test_on_a_spot_reclaim_the_last_send_ends_before_ec2_takes_the_instance(
        fake: tuple[FakeControl, str], make_router: RouterFactory,
        imds: tuple[FakeImds, str], lifecycle: tuple[FakeLifecycle, str],
        tmp_path: Path) -> None:
    """The group's terminating notice may come first, so the margin past the drain's bound
    is capped by the reclaim time the spot notice gave, not by which notice said what."""
    _, upstream = fake
    metadata, imds_url = imds
    _, autoscaling = lifecycle
    spool = tmp_path / "archive"
    with make_router([upstream], **ROUTER_ARCHIVE, archive_dir=spool) as router:
        complete(router.url, "stranded")
        reclaim = (datetime.now(UTC) + timedelta(seconds=124)).strftime("%Y-%m-%dT%H:%M:%SZ")
        notice(metadata, "spot/instance-action",
               json.dumps({"action": "terminate", "time": reclaim}))
        _, took = leaving(AgentSettings(
            imds_url=imds_url, router_url=router.url, lifecycle_hook="llmfleet-dev-drain",
            autoscaling_endpoint_url=autoscaling, drain_timeout_s=300, spot_margin_s=120,
            publish=False, gpu=False, archive_dir=spool, archive_bucket=BUCKET,
            archive_margin_s=30, s3_endpoint_url=f"http://127.0.0.1:{free_port()}"),
            metadata)
    # About 4 s to the reclaim less its 120 s margin: not the drain's 300 s, nor 30 s more.
    assert took < 12.0
    assert len(Spool(spool).sealed()) == 1  # S3 is down: the segment was not sent
