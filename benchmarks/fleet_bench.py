"""Does the simulator's fleet behave like a real one? A scaling fleet, both ways.

    python -m benchmarks.fleet_bench   (make bench-fleet; about 28 minutes)

In one run on this machine:

1. start the router (its own process, reading a backends file: `server.targets`) and the
   first engine, the generated test model on vLLM's CPU engine, pinned to core 0 (vLLM
   binds its threads to core 0 by default, so two engines must be pinned apart);
2. warm the engine up and profile it (`loadtest.probe`, `simulator.profile.fit`), as
   `benchmarks.fidelity_bench` does;
3. measure what it serves saturated: `BURST` requests sent at once through the router,
   and the same burst simulated on the profile (the capacity, both ways);
4. replay a step trace set from the measured capacity (`LOW` of it for a fifth of the
   run, `HIGH` for two fifths, `LOW` again) through the router, while the local fleet's
   controller (`llmfleet.localfleet`) runs queue-guard on real engines, at most two,
   with its windows shortened to fit the run (`LOCAL_GUARD`);
5. profile the first engine again (how far it moved during the run), and simulate the
   same trace under the same policy settings on each profile, the launch delay being the
   measured start-up of the engine the controller launched;
6. compare the runs: minute by minute (instances serving, the deepest queue, p95 TTFT),
   the scaling actions and when they came, instance-minutes, SLO attainment.

Writes docs/benchmarks/fleet-fidelity.json and fleet-fidelity.png (the simulator's
timeline figure, measured and simulated as its two lines). Never compare its times with
another run's: this machine's two cores carry both engines, the router and the load
generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import secrets
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from benchmarks.fidelity_bench import TEST_ENGINE_LIMITS, WARMUP, WORKLOAD, timed
from llmfleet.core.engine import EngineProcess, engine_spec_for
from llmfleet.core.net import free_port
from llmfleet.core.process import ChildProcess
from llmfleet.core.wire.profile import EngineProfile
from llmfleet.localfleet import FleetShape, LocalFleet, LocalRun, measured_run
from loadtest.probe import ProbePlan, probe
from loadtest.replay import Replayed, Timed, replay
from loadtest.sweep import Target
from server.targets import write_targets
from simulator import group_policy, traffic
from simulator.fleet import LaunchDelay
from simulator.plot import write_plot
from simulator.profile import MeasuredService, fit
from simulator.queue_guard_file import queue_guard_rules
from simulator.report import Run, Slo, summarise
from simulator.serving_policies import QueueGuard, queue_guard
from simulator.sim import GroupLimits, SimConfig, Simulation
from simulator.timeline import timeline

OUT = Path("docs/benchmarks")
RUN_DIR = Path(".run/bench/fleet")
MODEL = "llmfleet-tiny"
SLO = Slo(ttft_s=2.0, tpot_s=0.1)
# queue-guard as the simulator's comparisons run it, with its windows shortened so that a
# scale-out and a scale-in both fit a quarter of an hour: two minutes of queue to add an
# instance, three quiet minutes to remove one, a minute's cooldown.
LOCAL_GUARD = QueueGuard(out_minutes=2, quiet_minutes=3, cooldown_s=60.0)
SHAPE = FleetShape(min_size=1, max_size=2, sample_s=10.0, evaluate_s=60.0,
                   deregistration_delay_s=30.0)
ROUTER_HEALTH_S = 1.0  # the router's health round: a new engine joins within it
BURST = 160  # requests sent at once to measure the saturated capacity
LOW, HIGH = 0.4, 1.3  # the trace's rates, as shares of one engine's measured capacity
DURATION_S = 900.0
STEP = "step:{up:.0f}={ratio:.4f},{down:.0f}=1"  # LOW, HIGH from 20% to 60% of the run, LOW


def engine(slot: int) -> EngineProcess:
    """The test model's engine for `slot`, its threads on core `slot` (modulo the cores)."""
    limits = TEST_ENGINE_LIMITS
    spec = engine_spec_for("", free_port(), f"--max-num-seqs {limits.max_num_seqs} "
                                            f"--max-num-batched-tokens "
                                            f"{limits.max_num_batched_tokens}")
    core = slot % (os.cpu_count() or 1)  # a slot past the cores: a replacement while one drains
    pinned = replace(spec, env={"VLLM_CPU_OMP_THREADS_BIND": str(core)})
    return EngineProcess(pinned, RUN_DIR / f"vllm-{slot}-{time.strftime('%H%M%S')}.log")


def router(targets: Path, key: str) -> ChildProcess:
    port = free_port()
    env: dict[str, str | None] = {
        "LLMFLEET_PORT": str(port), "LLMFLEET_BACKENDS_FILE": str(targets),
        "LLMFLEET_API_KEYS": f"bench:{key}", "LLMFLEET_RATE_LIMIT_RPM": "0",
        "LLMFLEET_RATE_LIMIT_TPM": "0", "LLMFLEET_HEALTH_INTERVAL_S": str(ROUTER_HEALTH_S),
        # An ALB sends a target as many requests as arrive: no per-engine cap to queue at.
        "LLMFLEET_MAX_INFLIGHT_PER_BACKEND": "100000", "LLMFLEET_CONSOLE": "false",
        "LLMFLEET_LOG_LEVEL": "INFO", "LLMFLEET_CONFIG_FILE": None}
    return ChildProcess("router", [sys.executable, "-m", "llmfleet.cli", "router"],
                        RUN_DIR / "router.log", f"http://127.0.0.1:{port}/health", env)


def simulate_fleet(arrivals: list[traffic.Arrival], service: MeasuredService,
                   launch_s: float, max_size: int) -> Run:
    """The trace through the simulator's fleet under the same policy settings."""
    config = SimConfig(
        new_replica=service.replica, limits=GroupLimits(SHAPE.min_size, max_size, 1),
        # A process starts at once: no EC2 launch or boot; the model load is the measured
        # start-up, and the router's health round adds half a round on average.
        launch=LaunchDelay(launch_s=0.0, boot_s=0.0, model_load_s=launch_s,
                           health_s=ROUTER_HEALTH_S / 2),
        deregistration_delay_s=SHAPE.deregistration_delay_s, sample_s=SHAPE.sample_s,
        evaluate_s=SHAPE.evaluate_s)
    shape = group_policy.GroupShape(SHAPE.min_size, max_size, 1, warmup_s=SHAPE.evaluate_s)
    return Simulation(config, queue_guard(shape, SLO, LOCAL_GUARD)).run(arrivals)


def burst_capacity(results: list[Replayed]) -> float:
    """Requests/s over a burst: all of them over the time to the last answer."""
    ends = [f for r in results if (f := r.finished_s) is not None]
    return len(ends) / max(ends) if ends else 0.0


def simulated_burst(arrivals: list[traffic.Arrival], service: MeasuredService) -> float:
    out = simulate_fleet(arrivals, service, 0.0, 1)
    return len(out.finished) / max(f.finished_s for f in out.finished)


@dataclass(frozen=True)
class FleetResult:
    report: dict[str, Any]  # what the JSON holds
    measured: LocalRun
    simulated: Run
    arrivals: list[traffic.Arrival]


async def profile_engine(url: str, repeats: int) -> EngineProfile:
    """The engine's profile now (`loadtest.probe`, fitted by `simulator.profile.fit`)."""
    limits = TEST_ENGINE_LIMITS
    samples = await probe(Target(url), MODEL, limits, ProbePlan(repeats=repeats),
                          progress=lambda line: print(f"  {line}", flush=True))
    return EngineProfile(model=MODEL, endpoint=url,
                         measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         limits=limits, fit=fit(samples), samples=samples)


async def measure(url: str, target: Target, first: EngineProcess, first_start_s: float,
                  targets: Path, args: argparse.Namespace) -> FleetResult:
    seed, duration_s = args.seed, args.duration
    warm = traffic.synthetic(WARMUP.shape, duration_s=WARMUP.duration_s,
                             rate_per_s=WARMUP.rate_per_s, workload=WORKLOAD, seed=seed + 1)
    print(f"warming up: {len(warm)} requests over {WARMUP.duration_s:.0f} s", flush=True)
    await replay(target, MODEL, timed(warm), seed=seed + 1)
    profile = await profile_engine(url, args.repeats)
    service = MeasuredService(profile.fit, profile.limits)
    burst = [traffic.Arrival(0.0, a.prompt_tokens, a.output_tokens)
             for a in traffic.synthetic("constant", duration_s=BURST, rate_per_s=1.0,
                                        workload=WORKLOAD, seed=seed + 2)][:BURST]
    capacity = burst_capacity(await replay(target, MODEL, timed(burst), seed=seed + 2))
    simulated_capacity = simulated_burst(burst, service)
    print(f"capacity: {capacity:.2f} requests/s measured, {simulated_capacity:.2f} "
          f"simulated", flush=True)
    step = STEP.format(up=0.2 * duration_s, ratio=HIGH / LOW, down=0.6 * duration_s)
    arrivals = traffic.synthetic(step, duration_s=duration_s,
                                 rate_per_s=LOW * capacity, workload=WORKLOAD, seed=seed)
    print(f"the step trace: {len(arrivals)} requests over {duration_s:.0f} s, "
          f"{LOW * capacity:.2f} -> {HIGH * capacity:.2f} -> {LOW * capacity:.2f} "
          f"requests/s", flush=True)
    measured, failures = await run_fleet(arrivals, target, first, first_start_s, targets,
                                         seed)
    print("profiling the first engine again, to see how far it moved during the run",
          flush=True)
    after = await profile_engine(url, args.repeats)
    launches = [i.ready_s - i.requested_s for i in measured.instances[1:]
                if i.ready_s is not None]
    launch_s = launches[0] if launches else first_start_s
    simulated = simulate_fleet(arrivals, service, launch_s, SHAPE.max_size)
    simulated_after = simulate_fleet(arrivals, MeasuredService(after.fit, after.limits),
                                     launch_s, SHAPE.max_size)
    report = {
        "seed": seed, "profile": profile.model_dump(mode="json"),
        "profile_after": after.model_dump(mode="json"),
        "capacity_rps": {"measured": capacity, "simulated": simulated_capacity,
                         "simulated_profile_after": simulated_burst(
                             burst, MeasuredService(after.fit, after.limits))},
        "trace": {"requests": len(arrivals), "duration_s": duration_s,
                  "low_rps": LOW * capacity, "high_rps": HIGH * capacity},
        "launch_s": {"first": first_start_s, "launched": launches, "simulated": launch_s},
        "policy": {"name": "queue-guard", **asdict(LOCAL_GUARD),
                   "guardrail": queue_guard_rules().guardrail_share,
                   "calm": queue_guard_rules().calm_share},
        "fleet": asdict(SHAPE), "slo": asdict(SLO),
        "measured": describe(measured, arrivals),
        "simulated": describe(simulated, arrivals),
        "simulated_profile_after": describe(simulated_after, arrivals),
        "cut_off": [i.cut_off for i in measured.instances],
        "failures": dict(failures)}  # the replay's error kinds
    return FleetResult(report, measured, simulated, arrivals)


def replay_elsewhere(target: Target, trace: list[Timed], seed: int,
                     start: float) -> list[tuple[float | None, float | None, str]]:
    """The replay, in a process of its own (`run_fleet`): each request's TTFT and
    end-to-end seconds, None where it failed, and why it failed."""
    def progress(done: int, total: int) -> None:
        if done % 500 == 0 or done == total:
            print(f"  {time.perf_counter() - start:5.0f} s: {done}/{total} answered",
                  flush=True)

    results = asyncio.run(replay(target, MODEL, trace, seed=seed, progress=progress,
                                 start=start))
    return [(r.ttft_s, r.e2e_s, r.error) for r in results]


async def run_fleet(arrivals: list[traffic.Arrival], target: Target, first: EngineProcess,
                    first_start_s: float, targets: Path,
                    seed: int) -> tuple[LocalRun, Counter[str]]:
    """Replay the trace through the router while the controller scales the engines.

    The replay runs in a process of its own, as the agents and Auto Scaling run apart
    from the clients on AWS: in the controller's event loop, its thousands of requests
    delayed the engines' scrapes past their timeout at the peak (six samples lost in the
    first run). `time.perf_counter` is the system's monotonic clock, the same in both.
    """
    policy = queue_guard(group_policy.GroupShape(SHAPE.min_size, SHAPE.max_size, 1,
                                                 warmup_s=SHAPE.evaluate_s), SLO, LOCAL_GUARD)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        async with httpx.AsyncClient() as client:
            fleet = LocalFleet(policy, SHAPE, targets, engine, target.url, client)
            fleet.adopt(first, -first_start_s)
            start = time.perf_counter() + 5.0  # the replay's process starts meanwhile
            replaying = asyncio.get_running_loop().run_in_executor(
                pool, replay_elsewhere, target, timed(arrivals), seed, start)
            try:
                run = await fleet.control(start, replaying)
                results = await replaying
            finally:
                fleet.shutdown()
    failures = Counter(error.split(":", 1)[0] for *_, error in results if error)
    if failures:
        print(f"failed requests: {dict(failures)}", flush=True)
    return measured_run(run, arrivals, [(ttft, e2e) for ttft, e2e, _ in results]), failures


def describe(run: Run, arrivals: list[traffic.Arrival]) -> dict[str, Any]:
    """The run's summary, scaling actions and minutes, for the JSON."""
    summary = summarise("queue-guard", run, SLO, 1.0)  # priced at $1/h: cost = hours
    completed = [0] * (int(run.end_s // 60) + 1)
    for done in run.finished:  # what the fleet got through, minute by minute
        completed[min(int(done.finished_s // 60), len(completed) - 1)] += 1
    return {"summary": summary.as_json(),
            "completed_per_minute": completed,
            "actions": [asdict(a) for a in run.actions],
            "instances": [{"requested_s": i.requested_s, "ready_s": i.ready_s,
                           "deregistered_s": i.deregistered_s,
                           "terminated_s": i.terminated_s} for i in run.instances],
            "minutes": [asdict(m) for m in
                        timeline("queue-guard", run, arrivals, SLO).intervals]}


def table(results: dict[str, Any]) -> str:
    rows = ["| minute | arrivals/s | serving (measured / simulated) | deepest queue | "
            "p95 TTFT s |", "|---|---|---|---|---|"]
    for real, sim in zip(results["measured"]["minutes"], results["simulated"]["minutes"],
                         strict=False):
        rows.append(f"| {real['start_s'] / 60:.0f} | {real['arrival_rate_per_s']:.2f} | "
                    f"{real['serving']:.2f} / {sim['serving']:.2f} | "
                    f"{_num(real['queue'])} / {_num(sim['queue'])} | "
                    f"{_num(real['ttft_p95_s'], 2)} / {_num(sim['ttft_p95_s'], 2)} |")
    for side in ("measured", "simulated", "simulated_profile_after"):
        if side not in results:
            continue
        s = results[side]["summary"]
        actions = ", ".join(f"{a['at_s']:.0f} s: {a['before']}->{a['after']}"
                            for a in results[side]["actions"])
        rows.append(f"\n{side}: SLO met {s['slo_attainment']:.1%}, TTFT p95 "
                    f"{_num(s['ttft_p95_s'], 2)} s, instance-hours "
                    f"{s['instance_hours']:.3f}, actions {actions or 'none'}")
    return "\n".join(rows)


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--duration", type=float, default=DURATION_S,
                        help="the step trace's seconds (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=ProbePlan().repeats,
                        help="the probe's repeats per configuration (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("llmfleet.localfleet").setLevel(logging.INFO)  # its scaling, as it goes
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    key = f"sk-bench-{secrets.token_urlsafe(16)}"
    first = engine(0)
    targets = RUN_DIR / "backends"
    write_targets(targets, [])
    proxy = router(targets, key)
    print("starting the first engine and the router...", flush=True)
    started = time.monotonic()
    first.start()
    proxy.start()
    try:
        first_start_s = first.wait_ready(timeout_s=600)
        print(f"engine ready after {time.monotonic() - started:.0f} s", flush=True)
        proxy.wait_ready(timeout_s=60, poll_s=0.2)
        write_targets(targets, [first.spec.url])
        router_url = proxy.health_url.removesuffix("/health")
        time.sleep(2 * ROUTER_HEALTH_S)  # its next health round takes the engine in
        result = asyncio.run(measure(first.spec.url, Target(router_url, key), first,
                                      first_start_s, targets, args))
    finally:
        proxy.stop()
        first.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fleet-fidelity.json").write_text(json.dumps(result.report, indent=1) + "\n")
    print(table(result.report))
    path = write_plot(args.out / "fleet-fidelity.png",
                      [("measured", result.measured), ("simulated", result.simulated)],
                      result.arrivals, SLO, bin_s=60.0)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
