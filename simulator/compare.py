"""The comparison `llmfleet simulate` runs: one fleet (the environment, the engine, the price),
every chosen policy, the same trace; a `Run` per policy."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from simulator import group_policy, oracle, policies, traffic
from simulator.fleet import LaunchDelay, SpotInterruptions
from simulator.policy_config import Environment
from simulator.profile import MeasuredService, slo_capacity
from simulator.replica import Replica
from simulator.report import Slo, Summary, summarise
from simulator.service import RooflineService
from simulator.sim import GroupLimits, Outcome, SimConfig, Simulation

ProgressFactory = Callable[[str], Callable[[float, float], None]]


@dataclass(frozen=True)
class Run:
    """One policy's run: the outcome (for the plot and the CSV) and its summary."""

    policy: str
    outcome: Outcome
    summary: Summary


@dataclass(frozen=True)
class Fleet:
    """What every policy's run shares: the environment, the engine, the price."""

    env: Environment
    service: RooflineService | MeasuredService
    usd_per_hour: float
    model_load_s: float
    spot: SpotInterruptions | None = None

    def sizing(self, lengths: tuple[int, int], slo: Slo, lead_s: float) -> group_policy.Sizing:
        """The sizing policies' view of one instance: the roofline's, or the measured
        profile's (`simulator.profile.slo_capacity`).

        Raises:
            group_policy.SizingError: the roofline predicts one instance cannot serve such
                requests.
        """
        service = self.service
        if isinstance(service, RooflineService):
            return group_policy.sizing(service.deployment, service.eff, lengths, slo, lead_s)
        found = slo_capacity(service, lengths, slo.ttft_s, slo.tpot_s)
        return group_policy.Sizing(found.concurrency, found.requests_s, slo, lead_s)

    def new_replica(self) -> Replica:
        """An engine with the scheduler limits it runs with (vLLM's defaults for the GPU,
        or those the profiled engine was started with)."""
        service, max_model_len = self.service, self.env.model.max_model_len
        if isinstance(service, RooflineService):
            engine = service.deployment
            return Replica(service, engine.max_num_seqs, engine.max_num_batched_tokens,
                           max_model_len=max_model_len)
        return service.replica(max_model_len)


def simulation_config(fleet: Fleet, shape: group_policy.GroupShape,
                      launch: LaunchDelay) -> SimConfig:
    """The simulated group: the environment's size and drain bound (a leaving instance's
    requests run until `drain_timeout_s`, the load balancer's deregistration delay and the
    agent's bound on AWS), `launch` to serve."""
    return SimConfig(new_replica=fleet.new_replica,
                     limits=GroupLimits(shape.min_size, shape.max_size, shape.desired),
                     launch=launch, spot=fleet.spot,
                     deregistration_delay_s=fleet.env.drain_timeout_s)


@dataclass(frozen=True)
class Prepared:
    """One fleet made ready for its policies' runs: the group, its sizing, the policies."""

    fleet: Fleet
    config: SimConfig
    sized: group_policy.Sizing
    builds: dict[str, policies.PolicyFactory]


def prepare(fleet: Fleet, arrivals: list[traffic.Arrival], slo: Slo,
            lengths: tuple[int, int]) -> Prepared:
    """The group the environment describes, sized by the planner for `lengths` within the
    SLO (said on stderr), and every built-in policy for it.

    Raises:
        group_policy.SizingError: one instance cannot serve such requests.
    """
    env = fleet.env
    shape = group_policy.GroupShape(env.capacity.min, env.capacity.max,
                                    env.capacity.desired, env.model.model_load_seconds)
    launch = replace(LaunchDelay(), model_load_s=fleet.model_load_s)
    sized = fleet.sizing(lengths, slo, launch.total_s)
    target = env.scaling.inflight_per_instance or policies.inflight_target_for(sized)
    source = ("scaling.inflight_per_instance" if env.scaling.inflight_per_instance
              else "its default share of that")
    print(f"  planner: one instance holds {sized.inflight} requests within the SLO; "
          f"inflight-guard's target {target:g} per instance ({source})", file=sys.stderr)
    return Prepared(fleet, simulation_config(fleet, shape, launch), sized,
                    policies.builtin(shape, env.scaling, sized, arrivals))


def run_policy(prep: Prepared, name: str, arrivals: list[traffic.Arrival], slo: Slo,
               oracle_target: float, progress: ProgressFactory | None = None) -> Run:
    """One policy's run on `arrivals`, timed on stderr (the oracle: the cheapest schedule
    that reaches `oracle_target`)."""
    started, note = time.perf_counter(), ""
    if name == "oracle":
        found = oracle.cheapest(prep.config, arrivals, slo, prep.sized.capacity_rps,
                                oracle_target)
        out, note = found.outcome, (f" (capacity factor {found.factor:.3g} for "
                                    f"{oracle_target:.1%}, {found.runs} runs)")
    else:
        out = Simulation(prep.config, prep.builds[name]()).run(
            arrivals, progress=progress and progress(name))
    print(f"  {name}: {len(arrivals)} requests in {time.perf_counter() - started:.1f} s"
          f"{note}", file=sys.stderr)
    return Run(name, out, summarise(name, out, slo, prep.fleet.usd_per_hour))


def chosen(prep: Prepared, only: list[str] | None) -> list[str]:
    """The policies to run, in the built-in order (the oracle last)."""
    return [name for name in prep.builds if not only or name in only]


def oracle_goal(runs: list[Run], oracle_target: float) -> float:
    """The oracle's target: `oracle_target`, lowered to the best attainment of the runs
    before it."""
    return min(oracle_target, max((r.summary.slo_attainment for r in runs),
                                  default=oracle_target))


def compare(fleet: Fleet, arrivals: list[traffic.Arrival], slo: Slo, lengths: tuple[int, int],
            only: list[str] | None = None, oracle_target: float = oracle.DEFAULT_TARGET,
            progress: ProgressFactory | None = None) -> list[Run]:
    """Run every chosen policy on the same trace and fleet, each with `progress(policy)` as
    its progress callback, and say on stderr how long each took. The oracle runs last: its
    target is `oracle_target` lowered to the best attainment before it."""
    prep = prepare(fleet, arrivals, slo, lengths)
    runs: list[Run] = []
    for name in chosen(prep, only):
        runs.append(run_policy(prep, name, arrivals, slo, oracle_goal(runs, oracle_target),
                               progress))
    return runs
