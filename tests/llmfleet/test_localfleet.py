"""The local fleet on real vLLM engines: a policy's scale-out starts an engine that the
router then serves from, its scale-in drains that engine and stops it, nothing is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from llmfleet.core.engine import EngineProcess, EngineSpec, engine_spec_for
from llmfleet.core.net import free_port
from llmfleet.localfleet import FleetShape, LocalFleet, LocalRun
from simulator.sim import InstanceSample
from tests.helpers.router import TEST_KEY, start_router


class OutThenIn:
    """Two instances at the first evaluation; one again once the second has been sent a
    request (a `simulator.sim.ScalingPolicy`, scripted)."""

    name = "out-then-in"

    def __init__(self) -> None:
        self.second_routed = 0
        self.events: list[tuple[str, int]] = []

    def observe(self, samples: Sequence[InstanceSample]) -> None:
        self.second_routed += sum(s.routed for s in samples if s.instance == 1)

    def launched(self, instance: int, in_service_s: float) -> None:
        self.events.append(("launched", instance))

    def leaving(self, at_s: float, instance: int) -> None:
        self.events.append(("leaving", instance))

    def gone(self, at_s: float, instance: int) -> None:
        self.events.append(("gone", instance))

    def desired(self, now_s: float) -> int:
        return 1 if self.second_routed else 2


def session_engine(url: str, name: str, log: Path) -> EngineProcess:
    """The test session's engine as the fleet's first instance (not started here, so
    never stopped here)."""
    port = urlsplit(url).port
    assert port is not None
    return EngineProcess(EngineSpec(name, name, port), log)


async def steady(router: str, model: str, every_s: float,
                 until: asyncio.Future[None]) -> list[int]:
    """A request every `every_s` through the router until `until`; their statuses."""
    async with httpx.AsyncClient(base_url=router, timeout=60,
                                 headers={"authorization": f"Bearer {TEST_KEY}"}) as client:
        async def one() -> int:
            resp = await client.post("/v1/completions", json={
                "model": model, "prompt": "hello", "max_tokens": 8})
            return resp.status_code

        sent: list[asyncio.Task[int]] = []
        while not until.done():
            sent.append(asyncio.ensure_future(one()))
            await asyncio.sleep(every_s)
        return list(await asyncio.gather(*sent))


async def when_second_stopped(fleet: LocalFleet, deadline_s: float,
                              done: asyncio.Future[None]) -> None:
    """Resolve `done` once the fleet's second instance has stopped, or at the deadline."""
    began = time.perf_counter()
    while time.perf_counter() - began < deadline_s:
        instances = fleet.run.instances
        if len(instances) > 1 and instances[1].terminated_s is not None:
            break
        await asyncio.sleep(0.5)
    done.set_result(None)


@pytest.mark.parametrize(("shape", "says"), [
    (dict(min_size=0), "min_size"), (dict(min_size=3, max_size=2), "min_size"),
    (dict(sample_s=10.0, evaluate_s=45.0), "whole number"),
    (dict(sample_s=10.0, evaluate_s=5.0), "whole number"),
])
def test_a_fleet_shape_the_simulator_could_not_share_is_refused(
        shape: dict[str, float], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        FleetShape(**shape)


@pytest.mark.engine
@pytest.mark.timeout(480)
def test_a_launched_engine_serves_through_the_router_then_drains_and_stops(
        vllm_engine: tuple[str, str], tmp_path: Path) -> None:
    url, model = vllm_engine
    targets = tmp_path / "backends"
    targets.write_text(f"{url}\n")
    started: list[EngineProcess] = []

    def new_engine(slot: int) -> EngineProcess:
        # Its threads on the other core: vLLM binds an engine's to core 0 by default.
        spec = replace(engine_spec_for("", free_port()),
                       env={"VLLM_CPU_OMP_THREADS_BIND": str(slot)})
        engine = EngineProcess(spec, tmp_path / f"vllm-{slot}.log")
        started.append(engine)
        return engine

    policy = OutThenIn()
    shape = FleetShape(min_size=1, max_size=2, sample_s=1.0, evaluate_s=2.0,
                       deregistration_delay_s=20.0)
    with start_router([], backends_file=targets, health_interval_s=0.2) as router:
        async def scenario() -> tuple[LocalRun, list[int]]:
            async with httpx.AsyncClient() as client:
                fleet = LocalFleet(policy, shape, targets, new_engine, router.url, client)
                fleet.adopt(session_engine(url, model, tmp_path / "first.log"), -60.0)
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                sending = asyncio.ensure_future(steady(router.url, model, 0.5, done))
                watching = asyncio.ensure_future(when_second_stopped(fleet, 300.0, done))
                try:
                    run = await fleet.control(time.perf_counter(), done)
                    await watching
                    return run, await sending
                finally:
                    fleet.shutdown()

        run, statuses = asyncio.run(scenario())
    assert statuses and set(statuses) == {200}
    assert policy.second_routed > 0  # the router sent the new engine requests
    first, second = run.instances
    assert first.terminated_s is None  # the group's minimum stays
    assert second.ready_s is not None and second.deregistered_s is not None
    assert second.terminated_s is not None and second.cut_off == 0
    assert not started[0].alive()
    assert policy.events == [("launched", 0), ("launched", 1), ("leaving", 1), ("gone", 1)]
    assert [(a.before, a.after) for a in run.actions] == [(1, 2), (2, 1)]
    assert targets.read_text() == f"{url}\n"
    # Both engines published while they served; the launching one published zeros.
    assert {s.instance for s in run.samples} == {0, 1}
    loading = [s for s in run.samples if s.instance == 1 and s.at_s < second.ready_s]
    assert loading and all(s.running == s.waiting == s.routed == 0 for s in loading)
    # The session engine's first sample counts from the trace's start, not its own.
    assert next(s for s in run.samples if s.instance == 0).routed <= 4
