"""The built-in scaling policies on a simulated fleet, and `llmfleet simulate`'s contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmfleet.cli import main
from simulator import policies
from simulator.cloudwatch import Statistic
from simulator.policy_config import Scaling
from simulator.replica import Replica
from simulator.report import Slo
from simulator.service import RooflineService
from simulator.sim import GroupLimits, InstanceSample, SimConfig, Simulation
from simulator.traffic import Arrival

REPO = Path(__file__).resolve().parents[2]
SCALING = Scaling(scale_out_pct=70, scale_in_pct=30, evaluation_minutes=3, cooldown_s=300)
SHAPE = policies.GroupShape(min_size=1, max_size=3, desired=1, warmup_s=90)


def service() -> RooflineService:
    return RooflineService.for_names("Qwen2.5-1.5B-Instruct", "A10G")


def run(policy: policies.GroupPolicy, arrivals: list[Arrival]) -> Simulation:
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
    policy.observe([InstanceSample(0, 10.0, 0.5, running=3, waiting=2, kv_usage=0.1)])
    average = Statistic.AVERAGE
    assert policy.streams[policies.GPU_UTILIZATION].statistic(20, 10, average) == 50
    assert policy.streams[policies.IN_FLIGHT].statistic(20, 10, average) == 5


def test_the_slo_concurrency_grows_as_the_slo_loosens() -> None:
    svc = service()
    tight = policies.slo_concurrency(svc.deployment, svc.eff, 300, 150, Slo(0.5, 0.02))
    loose = policies.slo_concurrency(svc.deployment, svc.eff, 300, 150, Slo(5.0, 0.2))
    assert 1 <= tight < loose


def test_simulate_json_names_every_policy_with_the_contracts_fields(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--root", str(REPO), "--shape", "constant", "--duration", "300",
                 "--rate", "2", "--max-size", "2", "--json"])
    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    assert {p["policy"] for p in answer["policies"]} == {"gpu-70-30", "inflight-target", "fixed"}
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
