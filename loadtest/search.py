"""The plan search: start each plan's engine, sweep it, keep going when one fails.

For each plan, in file order and one at a time (two engines on one machine
would measure each other): start vLLM with the plan's launch configuration on
a free port (or use the plan's existing endpoint), wait until it is healthy,
warm it up, then run each concurrency level while sampling the engine's
memory and, on a GPU, energy. A plan that cannot start, or whose engine dies
during the sweep, is recorded with the reason and the search moves on.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from llmfleet.core.engine import EngineProcess
from llmfleet.core.gpu import GpuCollector
from llmfleet.core.net import free_port
from llmfleet.core.process import StartError
from loadtest import sla
from loadtest.plans import Plan, Search
from loadtest.ranking import Level, PlanResult
from loadtest.resources import ResourceSampler
from loadtest.sweep import EndpointError, RequestRow, Target, first_model, run_level


class PlanCrashed(RuntimeError):
    """The engine exited while its plan was being measured."""


@dataclass(frozen=True)
class SearchOptions:
    run_dir: Path  # engine logs go here
    engine_timeout_s: float = 900.0
    seed: int = 0


class Progress:
    """What the search is doing, for a person watching (see `loadtest.bench`)."""

    def plan_started(self, index: int, plan: Plan) -> None: ...
    def waiting(self, seconds: float) -> None: ...
    def warming_up(self, requests: int) -> None: ...
    def level(self, concurrency: int, done: int, total: int) -> None: ...
    def plan_done(self, result: PlanResult) -> None: ...


@dataclass
class SearchRun:
    results: list[PlanResult]
    requests: list[tuple[str, RequestRow]]  # (plan name, row) for every request


def run_search(search: Search, plans: list[Plan], options: SearchOptions,
               progress: Progress | None = None) -> SearchRun:
    progress = progress or Progress()
    gpu = GpuCollector()
    gpu.start()
    run = SearchRun([], [])
    try:
        for index, plan in enumerate(plans):
            progress.plan_started(index, plan)
            rows: list[RequestRow] = []
            try:
                levels = _measure_plan(plan, search, options, gpu, progress, rows)
                result = PlanResult(plan, levels)
            except (EndpointError, PlanCrashed) as exc:
                result = PlanResult(plan, (), error=str(exc))
            run.results.append(result)
            run.requests += [(plan.name, row) for row in rows]
            progress.plan_done(result)
    finally:
        gpu.stop()
    return run


def _measure_plan(plan: Plan, search: Search, options: SearchOptions, gpu: GpuCollector,
                  progress: Progress, rows: list[RequestRow]) -> tuple[Level, ...]:
    if plan.endpoint is not None:
        key = os.environ.get(plan.api_key_env) if plan.api_key_env else None
        target = Target(plan.endpoint, key)
        return _sweep(plan, search, options, target, None, gpu, progress, rows)
    spec = plan.engine_spec(free_port())
    engine = EngineProcess(spec, options.run_dir / f"{_safe(plan.name)}.vllm.log")
    engine.start()
    try:
        try:
            engine.wait_ready(options.engine_timeout_s, progress.waiting)
        except StartError as exc:
            raise PlanCrashed(f"{str(exc).partition(':')[0]} (log: {engine.log_path}): "
                              f"{_last_line(engine.log_tail())}") from exc
        return _sweep(plan, search, options, Target(spec.url), engine, gpu, progress, rows,
                      model=spec.served_name)
    finally:
        engine.stop()


def _sweep(plan: Plan, search: Search, options: SearchOptions, target: Target,
           engine: EngineProcess | None, gpu: GpuCollector, progress: Progress,
           rows: list[RequestRow], model: str | None = None) -> tuple[Level, ...]:
    model = model or asyncio.run(first_model(target))
    if search.warmup_requests:
        progress.warming_up(search.warmup_requests)
        asyncio.run(run_level(target, model, search.workload,
                              min(search.warmup_requests, search.concurrency[0]),
                              search.warmup_requests, seed=options.seed))
    levels = []
    for concurrency in search.concurrency:
        total = search.requests_at(concurrency)

        def report(done: int, c: int = concurrency, t: int = total) -> None:
            progress.level(c, done, t)

        with ResourceSampler(engine.pid if engine else None, gpu) as sampler:
            recorder, level_rows = asyncio.run(run_level(
                target, model, search.workload, concurrency, total, seed=options.seed,
                progress=report))
        if engine is not None and not engine.alive():
            raise PlanCrashed(f"vLLM exited during concurrency {concurrency} (log: "
                              f"{engine.log_path}): {_last_line(engine.log_tail())}")
        summary = recorder.summary()
        assert sampler.usage is not None  # set on leaving the with block
        levels.append(Level(concurrency, summary, sampler.usage,
                            sla.evaluate(search.checks, summary.values())))
        rows += level_rows
    return tuple(levels)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"
