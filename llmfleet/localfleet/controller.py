"""The local fleet's controller: vLLM processes as instances, scaled by a simulator policy.

The simulator's policy comparisons are only as good as its fleet (issue 17); this runs
the same policy object (`simulator.sim.ScalingPolicy`) on real engines, so that a trace
can be replayed through both and the timelines compared (`benchmarks.fleet_bench`).

- An instance is one vLLM process (`new_engine` starts it; the benchmark pins each to a
  core of its own). It launches at once (there is no EC2 launch or boot here) and serves
  from when its `/health` passes: its start-up is the launch-to-serving delay.
- The router, in its own process, balances over the engines its backends file lists
  (`server.targets`): least outstanding requests, as the ALB does. The controller
  writes the file: an engine joins when it is healthy, and leaves by deregistration: it
  gets no new requests, the router forgets it when its last request has ended, and
  then it stops (at the latest after `deregistration_delay_s`, cutting off what runs).
- The controller runs in the load generator's event loop and does what the agent,
  CloudWatch and Auto Scaling do on AWS: every `sample_s` it reads each engine's
  `/metrics` into an `InstanceSample` (running and waiting requests, KV-cache use, the
  interval's p95 TTFT from vLLM's histogram, the requests that arrived), every
  `evaluate_s` it asks the policy for the desired capacity, and it launches or removes
  engines to match within `min_size` and `max_size`, the newest first, as the simulator
  does. A launching engine publishes zeros, as the simulator's agent does from the
  end of the boot (here, at once). Each engine's first sample counts from when it
  started serving (a baseline scrape then), not from the process's start.
- An engine that exits, or is not healthy `launch_timeout_s` after its launch, leaves the
  group (Auto Scaling would replace the instance), and the next evaluation launches
  another if the policy still wants it.
- This CPU has no GPU utilisation to read: samples carry 0, and a policy that reads it
  (gpu-70-30) would never scale here, so the benchmark runs the others.

The record (`llmfleet.localfleet.run`) has the simulator's shape (`simulator.report.Run`),
so one summary, one timeline and one plot serve both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from llmfleet.core.engine import EngineProcess
from llmfleet.core.prometheus import (
    ScrapeError,
    Snapshot,
    buckets_delta,
    counter_delta,
    histogram_quantile,
)
from llmfleet.core.serving import (
    VLLM_KV_USAGE,
    VLLM_REQUESTS,
    VLLM_RUNNING,
    VLLM_TTFT,
    VLLM_WAITING,
)
from llmfleet.localfleet.run import FleetShape, LocalInstance, LocalRun
from server.backends import bounded_get, describe, read_capped
from server.targets import write_targets
from simulator.sim import InstanceSample, ScalingAction, ScalingPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_S = 0.5  # how often a launching engine's health and a draining one's router are read
SCRAPE_TIMEOUT_S = 8.0  # under the 10 s sample interval: a busy API server answers late
MAX_METRICS_BYTES = 4 << 20
ROUTER_IN_FLIGHT = "llmfleet_requests_in_flight"  # per backend; gone once it drained


class LocalFleet:
    """Engines started and stopped by `policy`, behind a router that reads `targets`.

    `new_engine(slot)` makes (without starting) the engine for a free slot (0, 1, ...: the
    lowest no running engine holds): its port, its core. `router_url` is read for the drained check.
    """

    def __init__(self, policy: ScalingPolicy, shape: FleetShape, targets: Path,
                 new_engine: Callable[[int], EngineProcess], router_url: str,
                 client: httpx.AsyncClient) -> None:
        self.policy, self.shape, self.targets = policy, shape, targets
        self.new_engine, self.router_url, self.client = new_engine, router_url, client
        self.run = LocalRun()
        self._slots: dict[int, int] = {}  # instance id -> slot
        self._tasks: set[asyncio.Task[None]] = set()
        self._start = time.perf_counter()
        self._router_problem: str | None = None

    def now(self) -> float:
        """Seconds since the trace's start."""
        return time.perf_counter() - self._start

    # -- the run ---------------------------------------------------------------------

    def adopt(self, engine: EngineProcess, in_service_s: float) -> None:
        """An engine already serving when the trace starts (the group's initial one, its
        owner's to stop), in service since `in_service_s` (before 0: the simulator
        reports its initial instances at minus their launch delay)."""
        instance = LocalInstance(len(self.run.instances), engine, 0.0, owned=False,
                                 ready_s=0.0)
        self.run.instances.append(instance)
        self._slots[instance.id] = self._free_slot()
        self.policy.launched(instance.id, in_service_s)
        self._write_targets()

    async def control(self, start: float, done: asyncio.Future[T]) -> LocalRun:
        """Sample and scale from `start` (a `time.perf_counter()` reading, the trace's 0 s)
        until `done` (the replay) has finished; `shutdown` stops the engines after."""
        self._start = start
        for instance in self.run.instances:  # the deltas of the first samples start here
            await self._baseline(instance)
        tick = 1
        while not done.done():
            at_s = tick * self.shape.sample_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), max(0.0, at_s - self.now()))
            if done.done():
                break
            await self._sample(at_s)
            if tick % self.shape.samples_per_evaluation == 0:
                self._evaluate(at_s)
            tick += 1
        self.run.end_s = self.now()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return self.run

    def shutdown(self) -> None:
        """Stop every engine this fleet started."""
        for instance in self.run.instances:
            if instance.owned:
                instance.engine.stop()

    # -- the agent's part -----------------------------------------------------------

    async def _sample(self, at_s: float) -> None:
        """Every running instance's sample for the interval that ends at `at_s`."""
        running = [i for i in self.run.instances if i.terminated_s is None]
        samples = await asyncio.gather(*(self._sample_one(i, at_s) for i in running))
        fresh = [s for s in samples if s is not None]
        self.run.samples.extend(fresh)
        self.policy.observe(fresh)

    async def _sample_one(self, instance: LocalInstance, at_s: float) -> InstanceSample | None:
        if instance.owned and not instance.engine.alive():
            if instance.live:  # else it is leaving already, and said so
                log.error("instance %d exited:\n%s", instance.id, instance.engine.log_tail())
                self._spawn(self._lose(instance, at_s), f"instance {instance.id}'s exit")
            return None
        if instance.ready_s is None:  # loading its model: nothing runs, nothing waits
            return InstanceSample(instance.id, at_s, 0.0, 0, 0, 0.0)
        try:
            after = await self._scrape(instance.url)
        except (httpx.HTTPError, ScrapeError, TimeoutError, ValueError) as exc:
            log.warning("instance %d: no metrics this interval (%s)", instance.id,
                        type(exc).__name__)
            return None
        before, instance.before = instance.before, after
        running = int(after.total(VLLM_RUNNING) or 0)
        waiting = int(after.total(VLLM_WAITING) or 0)
        ttft = histogram_quantile(0.95, buckets_delta(
            before.buckets(VLLM_TTFT) if before else None, after.buckets(VLLM_TTFT)))
        return InstanceSample(instance.id, at_s, 0.0, running, waiting,
                              after.mean(VLLM_KV_USAGE) or 0.0,
                              routed=_arrived(before, after), ttft_p95_s=ttft)

    async def _baseline(self, instance: LocalInstance) -> None:
        with contextlib.suppress(httpx.HTTPError, ScrapeError, TimeoutError, ValueError):
            instance.before = await self._scrape(instance.url)

    async def _scrape(self, url: str) -> Snapshot:
        """One `/metrics` page, within SCRAPE_TIMEOUT_S and MAX_METRICS_BYTES."""
        async with bounded_get(self.client, f"{url}/metrics", SCRAPE_TIMEOUT_S) as resp:
            body = await read_capped(resp, MAX_METRICS_BYTES)
        return Snapshot.parse(body.decode(errors="replace"), time.time())

    # -- Auto Scaling's part ----------------------------------------------------------

    def _evaluate(self, at_s: float) -> None:
        live = [i for i in self.run.instances if i.live]
        wanted = max(self.shape.min_size,
                     min(self.shape.max_size, self.policy.desired(at_s)))
        if wanted != len(live):
            self.run.actions.append(ScalingAction(at_s, len(live), wanted))
            log.info("%.0f s: %d -> %d instances", at_s, len(live), wanted)
        for _ in range(wanted - len(live)):
            self._launch(at_s)
        newest_first = sorted(live, key=lambda i: (i.launched_s, i.id), reverse=True)
        for instance in newest_first[:max(0, len(live) - wanted)]:
            self._remove(at_s, instance)

    def _launch(self, at_s: float) -> None:
        slot = self._free_slot()
        instance = LocalInstance(len(self.run.instances), self.new_engine(slot), self.now())
        self.run.instances.append(instance)
        self._slots[instance.id] = slot
        self.policy.launched(instance.id, at_s)
        instance.engine.start()
        self._spawn(self._bring_up(instance), f"instance {instance.id}'s launch")

    async def _bring_up(self, instance: LocalInstance) -> None:
        """Poll the engine until it is healthy, then list it for the router; one that
        exits or stays unhealthy past the launch timeout leaves the group."""
        while instance.live:
            if self.now() - instance.requested_s > self.shape.launch_timeout_s \
                    or not instance.engine.alive():
                log.error("instance %d did not start:\n%s", instance.id,
                          instance.engine.log_tail())
                await self._lose(instance, self.now())
                return
            with contextlib.suppress(httpx.HTTPError):
                resp = await self.client.get(f"{instance.url}/health", timeout=POLL_S)
                if resp.status_code == 200:
                    await self._baseline(instance)
                    if not instance.live:  # removed meanwhile: it never served
                        return
                    instance.ready_s = self.now()
                    self._write_targets()
                    log.info("instance %d serving after %.0f s", instance.id,
                             instance.ready_s - instance.requested_s)
                    return
            await asyncio.sleep(POLL_S)

    def _remove(self, at_s: float, instance: LocalInstance) -> None:
        self._deregister(at_s, instance)
        if instance.ready_s is None:  # never served: nothing to drain
            self._spawn(self._stop(instance), f"instance {instance.id}'s stop")
        else:
            self._spawn(self._drain(instance), f"instance {instance.id}'s drain")

    def _deregister(self, at_s: float, instance: LocalInstance) -> None:
        """Out of the group's count and the router's list, before anything is awaited."""
        self.policy.leaving(at_s, instance.id)
        instance.deregistered_s = self.now()
        self._write_targets()

    async def _lose(self, instance: LocalInstance, at_s: float) -> None:
        """The instance failed (exited, or never became healthy): gone at once."""
        if instance.live:
            self._deregister(at_s, instance)
            await self._stop(instance)

    async def _drain(self, instance: LocalInstance) -> None:
        """Wait until the router has forgotten the engine (its last request ended) or the
        deregistration delay ran out, then stop it."""
        assert instance.deregistered_s is not None
        deadline = instance.deregistered_s + self.shape.deregistration_delay_s
        while self.now() < deadline:
            if not await self._router_holds(instance.url):
                break
            await asyncio.sleep(POLL_S)
        else:
            with contextlib.suppress(httpx.HTTPError, ScrapeError, TimeoutError, ValueError):
                instance.cut_off = _held(await self._scrape(instance.url))
        await self._stop(instance)

    async def _stop(self, instance: LocalInstance) -> None:
        """Stop the process (off the event loop: it may wait out a grace period)."""
        if instance.terminated_s is not None:
            return
        if instance.owned:
            await asyncio.to_thread(instance.engine.stop)
        if instance.terminated_s is None:
            instance.terminated_s = self.now()
            self._slots.pop(instance.id, None)
            self.policy.gone(instance.terminated_s, instance.id)

    async def _router_holds(self, url: str) -> bool:
        """Whether the router still counts `url` among its backends (it drops a drained
        backend's series); True, logged once, when the router cannot be read."""
        try:
            page = await self._scrape(self.router_url)
        except (httpx.HTTPError, ScrapeError, TimeoutError, ValueError) as exc:
            problem = describe(exc, "/metrics")
            if problem != self._router_problem:
                log.warning("the router's /metrics: %s; draining until the deadline", problem)
                self._router_problem = problem
            return True
        return url in page.label_values(ROUTER_IN_FLIGHT, "backend")

    # -- helpers --------------------------------------------------------------------------

    def _free_slot(self) -> int:
        """The lowest slot no running engine holds: beyond `max_size - 1` while a removed
        engine still drains and the group has launched its replacement."""
        used = set(self._slots.values())
        return next(s for s in itertools.count() if s not in used)

    def _write_targets(self) -> None:
        """List the engines that serve and are not deregistered; replaced whole."""
        write_targets(self.targets, [i.url for i in self.run.instances
                                     if i.ready_s is not None and i.live])

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("the fleet's %s failed", task.get_name(), exc_info=exc)


def _arrived(before: Snapshot | None, after: Snapshot) -> int:
    """Requests that reached the engine in the interval: those it finished, plus the
    growth of those it holds."""
    finished = counter_delta(before.total(VLLM_REQUESTS) if before else None,
                             after.total(VLLM_REQUESTS)) or 0.0
    held_before = 0 if before is None else _held(before)
    return max(0, round(finished + _held(after) - held_before))


def _held(page: Snapshot) -> int:
    """Requests the engine holds, running or waiting."""
    return int((page.total(VLLM_RUNNING) or 0) + (page.total(VLLM_WAITING) or 0))
