"""Leaving the fleet without dropping work: the agent watches for the instance's notices,
drains the router on this instance, and then lets the Auto Scaling group terminate it.

Three notices, read from instance metadata every `lifecycle_poll_s` (AWS polls its own
spot notice every 5 s):

- `autoscaling/target-lifecycle-state` turns `Terminated`: the group is terminating this
  instance (scale-in, an instance refresh, a rebalancing replacement that now serves, a
  failed health check). The termination lifecycle hook holds it in `Terminating:Wait`
  until the agent completes the action or the hook's timeout runs out; the infrastructure
  sets that timeout to the drain's bound plus a margin, so no heartbeat is needed.
- `spot/instance-action`: EC2 reclaims this spot instance at the time it names (two
  minutes' notice). The drain's bound is cut to end `spot_margin_s` before then.
- `events/recommendations/rebalance`: a raised risk of interruption. Logged and counted,
  no drain: with Capacity Rebalancing on, the group launches a replacement first and then
  terminates this instance through the hook, which the first notice covers; draining at
  once would take an instance out of service before its replacement serves.

A warm pool adds a way in: the group holds each new instance in `Warmed:Pending:Wait` while
it prepares for the pool (target state `Warmed:Stopped`) and in `Pending:Wait` when a
scale-out starts it again (`InService`), on the launch hook. Where one is named, the agent
completes that action (`CONTINUE`) once the router first says ready: prepared, the instance
is stopped; started again, it joins the load balancer already serving. "No active lifecycle
action" then (the hook timed out, or the instance launched before the hook existed) is
asked again for `LAUNCH_RETRY_S` and then left: nothing waits. Any other failure (throttled,
denied, unreachable) is tried again on every poll, with a warning once it has lasted that
long: the hook abandons the instance at its timeout unless a try succeeds. An instance the pool
terminates while it prepares (target state `Warmed:Terminated`) leaves like any other.

On the first of the first two, the agent asks the router to drain (`llmfleet.core.drain`:
`/ready` fails, so the load balancer stops sending; late requests are refused with 503 and
`Retry-After`, never half-served), waits until nothing is in flight or the bound has
passed (and the router's archive records are sealed: `agent.archive` then sends them,
within the bound and `archive_margin_s` beyond it, never past a spot reclaim), and then,
where the group is terminating the instance and a hook is named, calls
`CompleteLifecycleAction` with `CONTINUE`. The group deregisters the instance from the load
balancer before it puts it in `Terminating:Wait`, while the target state already reads
`Terminated`: an idle instance drains in seconds, before the hook waits, and the group
answers "no active lifecycle action". So that answer, like any failed call, is tried again
on each poll, until the hook cannot be waiting any more (the deregistration delay, which is
the bound, and the hook's timeout, the bound plus a minute, after the drain began); the
hook's default result, `CONTINUE`, ends the wait anyway. A
router that cannot be reached holds nothing worth waiting for: the agent goes on as if it
had drained. A poll that fails in an unexpected way is logged and the next one runs: the
watcher never ends the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.archive import ArchiveSender
from agent.cost import Identity
from agent.imds import Imds
from agent.settings import AgentSettings
from llmfleet.core.archive import seal_abandoned
from llmfleet.core.drain import DrainError, RouterDrain

log = logging.getLogger(__name__)

TARGET_STATE = "meta-data/autoscaling/target-lifecycle-state"
SPOT_ACTION = "meta-data/spot/instance-action"
REBALANCE = "meta-data/events/recommendations/rebalance"
SPOT_NOTICE_S = 120.0  # what EC2 gives when a notice's time cannot be read
NO_ACTION = "No active Lifecycle Action found"  # the group's answer while nothing waits
HOOK_MARGIN_S = 60.0  # the hook's timeout is the bound plus this (compute/main.tf)
LAUNCH_RETRY_S = 60.0  # how long a launch action that is not waiting is asked for again
LEAVING_STATES = frozenset({"Terminated", "Warmed:Terminated"})


class Phase(enum.StrEnum):
    SERVING = "serving"
    DRAINING = "draining"
    DRAINED = "drained"  # nothing in flight, or the bound passed
    RELEASED = "released"  # the lifecycle action completed (or there was none to complete)


@dataclass(frozen=True)
class Notices:
    """What instance metadata said on one poll (every field None when it did not answer)."""

    target_state: str | None = None
    spot_action: str | None = None  # the notice's JSON text
    rebalance: str | None = None

    @classmethod
    def read(cls, imds: Imds) -> Notices:
        return cls(imds.get(TARGET_STATE), imds.get(SPOT_ACTION), imds.get(REBALANCE))

    @property
    def terminating(self) -> bool:
        return self.target_state in LEAVING_STATES

    def spot_deadline(self, wall_now: float) -> float | None:
        """When EC2 reclaims the instance (wall-clock seconds), or None without a notice."""
        if self.spot_action is None:
            return None
        with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
            at = json.loads(self.spot_action)["time"]
            return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
        return wall_now + SPOT_NOTICE_S


class LifecycleActions(Protocol):
    """`CompleteLifecycleAction` for this instance (boto3's client in production)."""

    def complete_lifecycle_action(self, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class HookTarget:
    """Which lifecycle action to complete: the hook, the group and this instance."""

    hook: str
    group: str
    instance_id: str


@dataclass
class LifecycleState:
    """What the watcher has seen and done, for logs, `/metrics` and the tests."""

    phase: Phase = Phase.SERVING
    reason: str | None = None  # why it drains: "terminating" or "spot interruption"
    terminating: bool = False  # the group moved this instance to Terminating (sticky)
    rebalance_recommended: bool = False
    drain_deadline: float | None = None  # monotonic
    reclaim_at: float | None = None  # wall clock: when EC2 reclaims a spot instance, if told
    drain_began_at: float | None = None
    in_flight_left: int | None = None  # what was still in flight when the wait ended
    completed: bool = False
    target_state: str | None = None  # the last the instance metadata answered
    ready_at: float | None = None  # monotonic: when the router first said ready
    joined: bool = False  # the launch hook's question is settled (completed, or none waits)
    launch_completed: bool = False  # ... by this agent's CompleteLifecycleAction

    @property
    def pooled(self) -> bool:
        """Headed for (or in) the group's warm pool: target state `Warmed:*`."""
        return (self.target_state or "").startswith("Warmed:")

    @property
    def in_group(self) -> bool:
        """In the group's capacity: not being prepared for its warm pool, nor held by the
        launch hook before it serves. Only then do its figures join the group's, which
        scaling averages over its instances."""
        return self.joined and not self.pooled


class LifecycleCollector(Collector):
    """Prometheus view of a `LifecycleState`: where the instance is on its way out."""

    def __init__(self, state: LifecycleState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        phase = GaugeMetricFamily("llmfleet_agent_lifecycle_phase",
                                  "1 for the phase the instance is in on its way out.",
                                  labels=["phase"])
        for p in Phase:
            phase.add_metric([p.value], int(self._state.phase is p))
        yield phase
        yield GaugeMetricFamily("llmfleet_agent_rebalance_recommended",
                                "1 once EC2 recommended rebalancing this spot instance.",
                                value=int(self._state.rebalance_recommended))
        yield GaugeMetricFamily("llmfleet_agent_launch_completed",
                                "1 once the agent completed the warm pool's launch action.",
                                value=int(self._state.launch_completed))


class LifecycleWatcher:
    """One poll at a time: read the notices, then move the drain one step on."""

    def __init__(self, imds: Imds, drain: RouterDrain, actions: Callable[[], LifecycleActions],
                 target: HookTarget | None, *, bound_s: float, spot_margin_s: float,
                 launch: HookTarget | None = None, archive: ArchiveSender | None = None,
                 archive_margin_s: float = HOOK_MARGIN_S / 2,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        """`actions` builds the Auto Scaling client when it is first needed; `target` is
        None when no hook is named (the group then waits out the hook's timeout); `launch`
        is the launch hook's action, None without a warm pool."""
        self.state = LifecycleState(joined=launch is None)
        self._imds, self._drain, self._actions, self._target = imds, drain, actions, target
        self._launch, self._archive, self._archive_margin_s = launch, archive, archive_margin_s
        self._bound_s, self._spot_margin_s = bound_s, spot_margin_s
        self._clock, self._wall = clock, wall
        self._client: LifecycleActions | None = None
        self._complete_error: str | None = None  # the drain's last failed completion
        self._launch_error: str | None = None  # the launch's
        self._launch_warned = False

    async def run(self, stop: asyncio.Event, poll_s: float) -> None:
        """Poll until `stop` is set or the lifecycle action is completed."""
        while not stop.is_set() and self.state.phase is not Phase.RELEASED:
            try:
                await self.poll()
            except Exception:  # the loop's outer edge: the agent must outlive one bad poll
                log.exception("a lifecycle poll failed; the next one runs on time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    async def poll(self) -> None:
        notices = await asyncio.to_thread(Notices.read, self._imds)
        self._note(notices)
        if not self.state.joined and self.state.reason is None:
            await self._join(notices)
        if self.state.phase is Phase.SERVING and self.state.reason is not None:
            await self._begin(notices)
        if self.state.phase is Phase.DRAINING:
            await self._check()
        if self.state.phase is Phase.DRAINED and self.state.terminating:
            await self._complete()

    def _note(self, notices: Notices) -> None:
        s = self.state
        if notices.target_state is not None:
            s.target_state = notices.target_state
        if notices.rebalance is not None and not s.rebalance_recommended:
            s.rebalance_recommended = True
            log.warning("EC2 recommends rebalancing this spot instance: its replacement "
                        "launches first; the drain begins when the group terminates it")
        if notices.terminating and not s.terminating:
            s.terminating = True
            log.info("the Auto Scaling group is terminating this instance")
        if s.reason is None:
            if s.terminating:
                s.reason = "terminating"
            elif notices.spot_action is not None:
                s.reason = "spot interruption"

    async def _join(self, notices: Notices) -> None:
        """Complete the launch action once the router first says ready."""
        s, launch = self.state, self._launch
        assert launch is not None
        if s.ready_at is None:
            if not await asyncio.to_thread(self._drain.ready):
                return
            s.ready_at = self._clock()
            log.info("the router serves: completing the launch action (target state %s)",
                     notices.target_state)
        try:
            await asyncio.to_thread(self._complete_action, launch)
        except (BotoCoreError, ClientError) as exc:
            late = self._clock() > s.ready_at + LAUNCH_RETRY_S
            if NO_ACTION in str(exc) and late:
                log.info("no launch action waits for this instance (%s)", exc)
                s.joined = True
                return
            if repr(exc) != self._launch_error:  # said once while it repeats
                log.info("CompleteLifecycleAction (launch): %s; trying again", exc)
            elif late and not self._launch_warned:  # throttled, denied, unreachable
                log.warning("the launch action is still not completed (%s): the hook "
                            "abandons this instance at its timeout unless a try succeeds", exc)
                self._launch_warned = True
            self._launch_error = repr(exc)
            return
        s.joined, s.launch_completed = True, True
        log.info("launch action completed: %s", "the group stops this instance into its warm "
                 "pool" if s.pooled else "the group puts this instance in service")

    async def _begin(self, notices: Notices) -> None:
        s = self.state
        now, bound = self._clock(), self._bound_s
        reclaim_at = s.reclaim_at = notices.spot_deadline(self._wall())
        if reclaim_at is not None:  # whatever the reason, EC2 will not wait past this
            bound = min(bound, reclaim_at - self._wall() - self._spot_margin_s)
        s.drain_began_at, s.drain_deadline = now, now + max(bound, 0.0)
        s.phase = Phase.DRAINING
        try:
            began = await asyncio.to_thread(self._drain.begin)
        except DrainError as exc:
            log.warning("could not ask the router to drain (%s); going on without it", exc)
            try:
                await self._send_archive(router_gone=True)
            finally:  # whatever happens to the archive, the instance goes
                s.phase = Phase.DRAINED
            return
        log.info("draining (%s): %d requests in flight, waiting up to %.0f s",
                 s.reason, began.in_flight, max(bound, 0.0))

    async def _check(self) -> None:
        s = self.state
        assert s.drain_deadline is not None and s.drain_began_at is not None
        outcome = await asyncio.to_thread(self._drain.settled, s.drain_began_at,
                                          s.drain_deadline)
        if outcome is None:
            return
        if outcome.drained:
            log.info("drained after %.1f s", outcome.waited_s)
        elif outcome.in_flight:
            log.warning("drain bound reached after %.0f s with %d requests still in flight",
                        outcome.waited_s, outcome.in_flight)
        else:
            log.warning("drain bound reached after %.0f s with the archive's last records "
                        "not yet sealed by the router", outcome.waited_s)
        try:
            await self._send_archive(outcome.router_gone)
        finally:  # whatever happens to the archive, the instance goes
            s.phase, s.in_flight_left = Phase.DRAINED, outcome.in_flight

    async def _send_archive(self, router_gone: bool) -> None:
        """Send what is left of the router's archive before the instance goes (its disk goes
        with it): within the drain's bound and `archive_margin_s` beyond it, which the hook
        still waits, and never past a spot reclaim's margin. A router that is gone cannot
        seal its last records: the agent does, when the spool's writer lock says it is gone
        and not only slow. Sending raises nothing (`ArchiveSender.send`)."""
        s, archive = self.state, self._archive
        if archive is None:
            return
        if router_gone:  # unless it is only slow: then it still holds the spool's lock
            try:
                await asyncio.to_thread(seal_abandoned, archive.uploader.directory)
            except OSError as exc:  # the instance must still go
                log.warning("could not seal the archive's last records: %s", exc.strerror)
        assert s.drain_deadline is not None
        left = s.drain_deadline + self._archive_margin_s - self._clock()  # this clock's
        if s.reclaim_at is not None:  # EC2 does not wait: end as the drain does, before it
            left = min(left, s.reclaim_at - self._spot_margin_s - self._wall())
        if not await archive.send(time.monotonic() + max(0.0, left)):
            log.warning("the archive's last segments could not be sent in time: they leave "
                        "with the instance")

    async def _complete(self) -> None:
        s = self.state
        if self._target is None:
            log.warning("no lifecycle hook named: the group terminates this instance when "
                        "its hook's timeout runs out")
            s.phase = Phase.RELEASED
            return
        try:
            await asyncio.to_thread(self._complete_action, self._target)
        except (BotoCoreError, ClientError) as exc:
            assert s.drain_began_at is not None
            if self._clock() > s.drain_began_at + 2 * self._bound_s + HOOK_MARGIN_S:
                log.info("no lifecycle action waits for this instance any more (%s)", exc)
                s.phase = Phase.RELEASED
                return
            if repr(exc) != self._complete_error:  # said once while it repeats
                waiting = "the hook is not waiting yet" if NO_ACTION in str(exc) else "failed"
                log.info("CompleteLifecycleAction: %s (%s); trying again", waiting, exc)
            self._complete_error = repr(exc)
            return
        s.phase, s.completed = Phase.RELEASED, True
        log.info("lifecycle action completed: the group may terminate this instance")

    def _complete_action(self, target: HookTarget) -> None:
        if self._client is None:
            self._client = self._actions()
        self._client.complete_lifecycle_action(
            LifecycleHookName=target.hook, AutoScalingGroupName=target.group,
            InstanceId=target.instance_id, LifecycleActionResult="CONTINUE")


def build_watcher(settings: AgentSettings, identity: Identity,
                  clock: Callable[[], float] = time.monotonic,
                  archive: ArchiveSender | None = None) -> LifecycleWatcher | None:
    """The watcher these settings ask for, or None (off EC2, or told not to watch)."""
    if not (settings.imds and settings.lifecycle_watch and settings.router_url):
        return None
    target = launch = None
    if identity.asg_name and identity.instance_id:
        if settings.lifecycle_hook:
            target = HookTarget(settings.lifecycle_hook, identity.asg_name, identity.instance_id)
        if settings.launch_hook:
            launch = HookTarget(settings.launch_hook, identity.asg_name, identity.instance_id)
    elif settings.lifecycle_hook or settings.launch_hook:
        log.warning("lifecycle hooks named, but the group or instance is unknown: the agent "
                    "drains on notices and leaves each action to its hook's timeout")

    def actions() -> LifecycleActions:
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2,
                        read_timeout=5)
        client: LifecycleActions = boto3.client(
            "autoscaling", region_name=identity.region, config=config,
            endpoint_url=settings.autoscaling_endpoint_url)
        return client

    # One clock for the drain's deadline and the router's answers.
    return LifecycleWatcher(Imds(settings.imds_url), RouterDrain(settings.router_url, clock=clock),
                            actions, target, bound_s=settings.drain_timeout_s,
                            spot_margin_s=settings.spot_margin_s, launch=launch,
                            archive=archive, archive_margin_s=settings.archive_margin_s,
                            clock=clock)
