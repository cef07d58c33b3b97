"""The built-in scaling policies on a simulated fleet, and `llmfleet simulate`'s contract."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from llmfleet.cli import main
from simulator import group_policy, policies, serving_policies
from simulator.autoscaling import Group
from simulator.cloudwatch import MetricStream, Statistic
from simulator.policy_config import PolicyFileError, QueueGuardScaling, Scaling
from simulator.queue_guard_file import queue_guard_rules
from simulator.replica import Replica
from simulator.report import Slo
from simulator.service import RooflineService
from simulator.sim import GroupLimits, InstanceSample, SimConfig, Simulation
from simulator.traffic import Arrival

REPO = Path(__file__).resolve().parents[2]
SCALING = Scaling(
    policy="gpu", scale_out_pct=70, scale_in_pct=30, evaluation_minutes=3, cooldown_s=300,
    queue_guard=QueueGuardScaling(ttft_slo_s=2, waiting_per_instance=1, out_minutes=2,
                                  quiet_minutes=15, cooldown_s=300),
    scheduled_minimums=())
SHAPE = group_policy.GroupShape(min_size=1, max_size=3, desired=1, warmup_s=90)


def service() -> RooflineService:
    return RooflineService.for_names("Qwen2.5-1.5B-Instruct", "A10G")


def run(policy: group_policy.GroupPolicy, arrivals: list[Arrival]) -> Simulation:
    sim = Simulation(SimConfig(new_replica=lambda: Replica(service()),
                               limits=GroupLimits(SHAPE.min_size, SHAPE.max_size,
                                                  SHAPE.desired)), policy)
    sim.run(arrivals)
    return sim


def busy_then_quiet() -> list[Arrival]:
    """Ten minutes that keep one engine stepping, then twenty nearly idle."""
    busy = [Arrival(i * 0.5, 300, 150) for i in range(1200)]
    quiet = [Arrival(600 + i * 60.0, 300, 150) for i in range(20)]
    return busy + quiet


def test_gpu_70_30_adds_an_instance_when_busy_and_removes_it_when_quiet() -> None:
    sim = run(policies.gpu_70_30(SHAPE, SCALING), busy_then_quiet())
    moves = [(a.before, a.after) for a in sim.out.actions]
    assert moves[0] == (1, 2)
    assert any(after < before for before, after in moves)  # and back in, once quiet


def test_the_design_policy_reads_a_busy_engine_as_busy_however_few_requests_it_holds() -> None:
    """NVML's utilisation: one sequence at a time keeps the GPU 'busy', so 70/30 scales out
    on a load one instance serves easily; the in-flight target does not."""
    one_at_a_time = [Arrival(i * 2.2, 50, 1000) for i in range(300)]  # ~one running at once
    gpu = run(policies.gpu_70_30(SHAPE, SCALING), one_at_a_time)
    inflight = run(policies.inflight_target(SHAPE, target=8), one_at_a_time)
    assert gpu.out.actions and gpu.out.actions[0].after == 2
    assert not inflight.out.actions


def test_fixed_never_scales() -> None:
    assert not run(policies.fixed(SHAPE), busy_then_quiet()).out.actions


def test_samples_are_published_as_the_agent_names_them() -> None:
    policy = policies.fixed(SHAPE)
    policy.observe([InstanceSample(0, 10.0, 0.5, running=3, waiting=2, kv_usage=0.1,
                                   ttft_p95_s=0.25)])
    average = Statistic.AVERAGE
    assert policy.streams[group_policy.gpu_metric()].statistic(20, 10, average) == 50
    assert policy.streams[group_policy.IN_FLIGHT].statistic(20, 10, average) == 5
    assert policy.streams[group_policy.WAITING].statistic(20, 10, average) == 2
    assert policy.streams[group_policy.TTFT_P95].statistic(20, 10, average) == 0.25


def test_no_ttft_is_published_for_an_interval_without_first_tokens() -> None:
    """The agent drops a None rather than sending it (CloudWatch would refuse a NaN)."""
    policy = policies.fixed(SHAPE)
    policy.observe([InstanceSample(0, 10.0, 0.0, running=0, waiting=0, kv_usage=0.0)])
    assert len(policy.stream(group_policy.TTFT_P95)) == 0


def test_request_count_counts_a_request_in_the_minute_it_was_routed() -> None:
    """Regression: RequestCount was put at the sample's time, so the requests routed in a
    minute's last ten seconds counted in the next minute (the sample at 60 s holds (50, 60])."""
    policy = policies.fixed(SHAPE)
    policy.observe([InstanceSample(0, 60.0, 0.5, 1, 0, 0.1, routed=5),
                    InstanceSample(1, 60.0, 0.5, 1, 0, 0.1, routed=1)])
    policy.observe([InstanceSample(0, 70.0, 0.5, 1, 0, 0.1, routed=2)])
    requests = policy.streams[group_policy.REQUEST_COUNT]
    assert requests.statistic(60.0, 60, Statistic.SUM) == 6  # both instances, one load balancer
    assert requests.statistic(120.0, 60, Statistic.SUM) == 2


def test_the_slo_concurrency_grows_as_the_slo_loosens() -> None:
    svc = service()
    tight = group_policy.slo_concurrency(svc.deployment, svc.eff, 300, 150, Slo(0.5, 0.02))
    loose = group_policy.slo_concurrency(svc.deployment, svc.eff, 300, 150, Slo(5.0, 0.2))
    assert 1 <= tight < loose


def test_simulate_json_names_every_policy_with_the_contracts_fields(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--root", str(REPO), "--shape", "constant", "--duration", "300",
                 "--rate", "2", "--max-size", "2", "--json"])
    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    assert {p["policy"] for p in answer["policies"]} == {
        "gpu-70-30", "inflight-target", "fixed", "queue-guard", "inflight-guard", "slo-sizing",
        "oracle"}
    for entry in answer["policies"]:
        assert {"policy", "slo_attainment", "ttft_p95_s", "tpot_p95_s", "instance_hours",
                "cost_usd", "cost_per_million_output_tokens"} <= entry.keys()
        assert 0 <= entry["slo_attainment"] <= 1
    assert answer["instance_type"] == "g5.xlarge"  # environments/dev.tfvars


@pytest.mark.parametrize(("args", "message"), [
    (["--trace", "/nonexistent/trace.csv"], "trace.csv"),
    (["--model", "no-such-model"], "unknown model"),
    (["--instance-type", "x9.huge"], "unknown instance type"),
    (["--shape", "zigzag"], "zigzag"),
])
def test_simulate_refuses_bad_input_with_one_line(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--root", str(REPO), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_simulate_says_when_the_environment_leaves_nothing_to_scale(
        capsys: pytest.CaptureFixture[str]) -> None:
    """dev's capacity is 1..1: every policy's row is the same, and the run says why."""
    assert main(["simulate", "--root", str(REPO), "--shape", "constant", "--duration", "60",
                 "--rate", "1"]) == 0
    assert "no policy can scale (try --max-size)" in capsys.readouterr().err


# --- queue-guard ---------------------------------------------------------------------

GUARD_SLO = Slo(ttft_s=2.0)  # the guardrail at 1.6 s, calm under 0.8 s
PAIR = group_policy.GroupShape(min_size=1, max_size=3, desired=2, warmup_s=90)
Reading = Callable[[int, float], tuple[int, float | None]]  # instance, at -> waiting, TTFT


def steady_reading(waiting: int, ttft_s: float | None) -> Reading:
    return lambda _instance, _at: (waiting, ttft_s)


def sample(instance: int, at_s: float, reading: Reading) -> InstanceSample:
    waiting, ttft_s = reading(instance, at_s)
    return InstanceSample(instance, at_s, 0.5, 1, waiting, 0.1, ttft_p95_s=ttft_s)


def drive(policy: group_policy.GroupPolicy, reading: Reading, until_s: float,
          launch_s: float = 45.0) -> list[tuple[float, int, int]]:
    """Stand in for the simulation: every 10 s each instance in service publishes
    `reading`, every minute the policy answers, and instances launch (in service `launch_s`
    later) or leave at once to match. The group's activities (at, from, to)."""
    warmup = policy.group.warmup_s
    live = dict.fromkeys(range(policy.group.desired), -warmup)  # instance -> in service
    for instance in live:
        policy.launched(instance, -warmup)
    for step in range(1, int(until_s // 10) + 1):
        now = step * 10.0
        policy.observe([sample(i, now, reading) for i, since in live.items() if since <= now])
        if step % 6:
            continue
        wanted = policy.desired(now)
        while len(live) < wanted:
            instance = max(live, default=-1) + 1
            live[instance] = now + launch_s
            policy.launched(instance, now + launch_s)
        while len(live) > wanted:
            instance = max(live)
            del live[instance]
            policy.leaving(now, instance)
            policy.gone(now, instance)
    return [(a.at_s, a.from_capacity, a.to_capacity) for a in policy.group.activities]


@pytest.mark.parametrize(("waiting", "ttft_s", "expected"), [
    (3, 0.2, [(180.0, 1, 2)]),  # the queue above 1 per instance for 2 of 2 minutes
    (1, 0.2, []),  # at the threshold is not above it
    (0, 1.7, [(180.0, 1, 2)]),  # the worst p95 TTFT above the guardrail, 0.8 x the SLO
    (0, 1.5, []),  # above the calm limit, under the guardrail: neither way
])
def test_queue_guard_adds_one_instance_when_the_queue_or_ttft_stays_high(
        waiting: int, ttft_s: float, expected: list[tuple[float, int, int]]) -> None:
    """Two one-minute periods, visible 10 s after they end: the first alarm at 180 s."""
    policy = serving_policies.queue_guard(SHAPE, GUARD_SLO)
    assert drive(policy, steady_reading(waiting, ttft_s), until_s=230) == expected


def test_queue_guard_reads_ttft_at_the_worst_instance() -> None:
    """TTFTP95's Maximum: one slow instance among fast ones is enough to add one."""
    def one_slow(instance: int, _at: float) -> tuple[int, float | None]:
        return 0, 1.7 if instance == 0 else 0.1

    assert drive(serving_policies.queue_guard(PAIR, GUARD_SLO), one_slow, until_s=230) == [
        (180.0, 2, 3)]


@pytest.mark.parametrize("ttft_s", [None, 0.5])
def test_queue_guard_scales_in_after_fifteen_quiet_minutes(ttft_s: float | None) -> None:
    """No request waiting and TTFT calm (none at all counts as calm) for 15 of 15 periods:
    the periods ending 60 s to 900 s, the last visible at 910 s, seen at 960 s."""
    policy = serving_policies.queue_guard(PAIR, GUARD_SLO)
    assert drive(policy, steady_reading(0, ttft_s), until_s=1000) == [(960.0, 2, 1)]


@pytest.mark.parametrize(("reading", "why"), [
    (lambda instance, _: (1 if instance == 0 else 0, 0.1), "one request waits somewhere"),
    (lambda _instance, _at: (0, 1.0), "TTFT above the calm limit, under the guardrail"),
])
def test_queue_guard_never_scales_in_while_not_quiet(reading: Reading, why: str) -> None:
    """A queue at one instance keeps the group although the group's Average (0.5) is under
    the scale-out threshold: between the two thresholds the group holds still."""
    assert drive(serving_policies.queue_guard(PAIR, GUARD_SLO), reading, until_s=1500) == [], why


def test_a_waiting_request_restarts_the_quiet_window() -> None:
    """One request waits in [300, 360): the 15 quiet periods start again at 360 s, end
    at 1260 s, are visible at 1270 s and seen at 1320 s."""
    def one_busy_minute(instance: int, at: float) -> tuple[int, float | None]:
        return (1 if instance == 0 and 300 <= at < 360 else 0), None

    assert drive(serving_policies.queue_guard(PAIR, GUARD_SLO), one_busy_minute, until_s=1400) == [
        (1320.0, 2, 1)]


@pytest.mark.parametrize(("cooldown_s", "second_s"), [
    (None, 540.0),  # the group's 300 s, from 225 s when the instance is in service
    (60.0, 300.0),  # the policies' own: over at 285 s, the alarm still in ALARM at 300 s
])
def test_queue_guard_waits_out_the_cooldown_before_adding_again(
        cooldown_s: float | None, second_s: float) -> None:
    settings = serving_policies.QueueGuard(cooldown_s=cooldown_s)
    policy = serving_policies.queue_guard(SHAPE, GUARD_SLO, settings)
    assert drive(policy, steady_reading(3, 0.2), until_s=600) == [
        (180.0, 1, 2), (second_s, 2, 3)]


def test_queue_guard_follows_the_module_file() -> None:
    """The guardrail's share of the SLO is queue_guard.json's: at half the SLO, a p95 TTFT
    of 1.2 s (under the file's 0.8 x 2 s) adds an instance."""
    rules = dataclasses.replace(queue_guard_rules(), guardrail_share=0.5)
    policy = serving_policies.queue_guard(SHAPE, GUARD_SLO, rules=rules)
    assert drive(policy, steady_reading(0, 1.2), until_s=230) == [(180.0, 1, 2)]
    assert drive(serving_policies.queue_guard(SHAPE, GUARD_SLO), steady_reading(0, 1.2),
                 until_s=230) == []


def test_queue_guard_refuses_a_metric_the_agents_do_not_publish() -> None:
    rules = queue_guard_rules()
    unknown = dataclasses.replace(rules, queue_high=dataclasses.replace(
        rules.queue_high, metric_name="QueueDepth"))
    with pytest.raises(PolicyFileError, match="reads QueueDepth, which the simulated agents"):
        serving_policies.queue_guard(SHAPE, GUARD_SLO, rules=unknown)


# --- inflight-guard --------------------------------------------------------------------

def test_inflight_guard_tracks_its_target_instead_of_the_queue() -> None:
    """Each instance holds 1 running + 3 waiting = 4. At a target of 2 the tracking policy's
    alarm (3 of 3 periods, the third visible at 190 s) asks for 1 x 4 / 2 = 2 instances;
    at a target of 8, 3 waiting per instance (queue-guard's queue-high would add one at
    180 s) changes nothing."""
    busy = steady_reading(3, 0.2)
    assert drive(serving_policies.inflight_guard(SHAPE, GUARD_SLO, 2.0), busy,
                 until_s=300) == [(240.0, 1, 2)]
    assert drive(serving_policies.inflight_guard(SHAPE, GUARD_SLO, 8.0), busy,
                 until_s=300) == []


def test_inflight_guard_scales_in_only_when_quiet() -> None:
    """Far under its target (1 per instance at a target of 8) the tracking policy would
    scale in after 15 minutes; its scale-in is off, so the group holds while TTFT is not
    calm, and leaves only through queue-guard's quiet alarm (15 quiet minutes, 960 s)."""
    not_calm = steady_reading(0, 1.0)
    assert drive(serving_policies.inflight_guard(PAIR, GUARD_SLO, 8.0), not_calm,
                 until_s=1500) == []
    assert drive(serving_policies.inflight_guard(PAIR, GUARD_SLO, 8.0), steady_reading(0, 0.5),
                 until_s=1000) == [(960.0, 2, 1)]


def test_inflight_guard_keeps_the_ttft_guardrail() -> None:
    assert drive(serving_policies.inflight_guard(SHAPE, GUARD_SLO, 8.0), steady_reading(0, 1.7),
                 until_s=230) == [(180.0, 1, 2)]


# --- slo-sizing ----------------------------------------------------------------------

def requests(per_minute: list[float]) -> MetricStream:
    """RequestCount: each minute's requests over six samples."""
    stream = MetricStream()
    for minute, count in enumerate(per_minute):
        for k in range(6):
            stream.put(minute * 60.0 + k * 10, count / 6)
    return stream


@pytest.mark.parametrize(("per_minute", "capacity_rps", "size"), [
    (150, 1.0, 3),  # 2.5 requests/s: rounded up
    (120, 1.0, 2),  # exactly two instances' capacity: not three
    (121, 1.0, 3),
    (63, 0.35, 3),  # 1.05 / 0.35 is 3.0000000000000004 in floating point
])
def test_slo_sizing_sizes_for_the_rate_over_one_instances_capacity(
        per_minute: float, capacity_rps: float, size: int) -> None:
    sizing = serving_policies.SloSizing(requests([per_minute]), capacity_rps, horizon_s=0.0)
    assert sizing.size(70.0) == size


def test_slo_sizing_sizes_nothing_before_a_minute_is_visible() -> None:
    sizing = serving_policies.SloSizing(requests([150]), 1.0, horizon_s=0.0)
    assert sizing.size(69.0) is None  # [0, 60) is not all published until 70 s
    group = Group(1, 10, 1)
    sizing.evaluate(69.0, group)
    assert group.desired == 1 and not group.activities


def test_slo_sizing_looks_ahead_along_a_rising_trend() -> None:
    """Minutes at 1 to 6 requests/s (at their midpoints 30 s to 330 s): the line is
    0.5 + t / 60, and at 370 s it sizes for 120 s later, 490 s."""
    sizing = serving_policies.SloSizing(requests([60, 120, 180, 240, 300, 360]), 1.0,
                                        horizon_s=120.0)
    assert sizing.forecast(370.0) == pytest.approx(0.5 + 490 / 60)
    assert sizing.size(370.0) == 9


def test_slo_sizing_never_sizes_below_the_newest_minute_on_a_falling_trend() -> None:
    sizing = serving_policies.SloSizing(requests([360, 300, 240, 180, 120, 60]), 1.0,
                                        horizon_s=120.0)
    assert sizing.forecast(370.0) == pytest.approx(1.0)


def test_slo_sizing_grows_the_group_at_once() -> None:
    group = Group(1, 10, 1)
    serving_policies.SloSizing(requests([150]), 1.0, horizon_s=0.0).evaluate(70.0, group)
    assert group.desired == 3 and group.activities[0].at_s == 70.0


@pytest.mark.parametrize(("per_minute", "expected"), [
    # Sizes 3, 4, then 2: below 5 from 70 s, shrunk at 670 s to the most seen since, 4.
    ([180, 240] + [120] * 20, [(670.0, 5, 4)]),
    # Sizes 3, 5, then 2: the 5 at 130 s restarts the hold, shrunk at 790 s to 2.
    ([180, 300] + [120] * 20, [(790.0, 5, 2)]),
])
def test_slo_sizing_shrinks_only_after_the_hold_to_the_largest_size_in_it(
        per_minute: list[float], expected: list[tuple[float, int, int]]) -> None:
    """With a window of one minute each evaluation sizes for the newest minute alone."""
    sizing = serving_policies.SloSizing(requests(per_minute), 1.0, horizon_s=0.0, window=1)
    group = Group(1, 10, 5)
    for now in range(70, 800, 60):
        sizing.evaluate(float(now), group)
    assert [(a.at_s, a.from_capacity, a.to_capacity) for a in group.activities] == expected


@pytest.mark.parametrize(("capacity_rps", "window"), [(0.0, 6), (-1.0, 6), (1.0, 0)])
def test_slo_sizing_refuses_a_capacity_or_window_it_cannot_size_with(
        capacity_rps: float, window: int) -> None:
    with pytest.raises(ValueError, match="capacity_rps"):
        serving_policies.SloSizing(MetricStream(), capacity_rps, 0.0, window=window)


@pytest.mark.parametrize(("utilization", "size"), [(1.0, 2), (0.6, 2), (0.5, 3)])
def test_slo_sizing_reads_the_load_balancers_requests_in_a_simulation(
        utilization: float, size: int) -> None:
    """1.2 requests/s for three minutes on instances of 1 request/s: the first minute's 72
    requests are visible at 70 s and the evaluation at 120 s asks for 1.2 / (1 x the
    utilisation planned), rounded up."""
    sized = group_policy.Sizing(inflight=8, capacity_rps=1.0, slo=Slo(), lead_s=275.0)
    arrivals = [Arrival((i + 0.5) / 1.2, 300, 50) for i in range(216)]
    sim = run(serving_policies.slo_sizing(SHAPE, sized, utilization=utilization), arrivals)
    assert (sim.out.actions[0].at_s, sim.out.actions[0].after) == (120.0, size)


# --- the planner's sizing and the built-in set ---------------------------------------

def test_sizing_takes_the_slo_concurrency_and_what_one_instance_serves_at_it() -> None:
    svc, slo = service(), Slo(2.0, 0.1)
    sized = group_policy.sizing(svc.deployment, svc.eff, (300, 150), slo, lead_s=275.0)
    assert sized.inflight == group_policy.slo_concurrency(svc.deployment, svc.eff, 300, 150, slo)
    assert sized.capacity_rps > 0 and (sized.slo, sized.lead_s) == (slo, 275.0)


def test_sizing_refuses_requests_one_instance_cannot_serve() -> None:
    svc = service()
    with pytest.raises(ValueError, match="context"):  # Qwen2.5-1.5B holds 32768 tokens
        group_policy.sizing(svc.deployment, svc.eff, (40_000, 100), Slo(), lead_s=275.0)


def test_builtin_builds_each_policy_fresh_under_its_own_name() -> None:
    sized = group_policy.Sizing(inflight=8, capacity_rps=1.0, slo=Slo(), lead_s=275.0)
    built = policies.builtin(SHAPE, SCALING, sized, [Arrival(0.0, 300, 150)])
    assert list(built) == ["gpu-70-30", "inflight-target", "fixed", "queue-guard",
                           "inflight-guard", "slo-sizing", "oracle"]
    for name, build in built.items():
        assert build().name == name and build() is not build()
