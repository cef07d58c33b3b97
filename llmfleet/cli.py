"""The `llmfleet` console script: one subcommand per process.

    llmfleet router      the OpenAI-compatible router (settings: LLMFLEET_*)
    llmfleet up          a local platform: one vLLM engine plus the router
    llmfleet agent       the metrics sidecar (settings: LLMFLEET_AGENT_*)
    llmfleet metrics     what CloudWatch holds for the fleet, newest value per series
    llmfleet testmodel   generate the small offline model used by `up` and tests
    llmfleet bench       the plan search: measure execution plans, pick the best under an SLA
    llmfleet plan        sizing from the performance model: the cheapest instance for an SLO
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmfleet.core import logs
from llmfleet.core.args import positive_int
from llmfleet.core.env import split_csv
from llmfleet.core.testmodel import DEFAULT_TEST_MODEL_DIR

if TYPE_CHECKING:
    from pydantic import ValidationError

    from agent.settings import AgentSettings
    from llmfleet.core.gpu import GpuCollector


def _problems(exc: ValidationError) -> str:
    """One line per bad setting, without the values given (these lines reach the process
    log and CloudWatch, and the input holds the keys)."""
    from llmfleet.core.invalid import problems

    return "\n".join(f"  {line}" for line in problems(exc, "settings"))


def _router(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from server.app import create_app
    from server.edge import uvicorn_options
    from server.settings import ConfigFileError, RouterSettings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = RouterSettings.load(args.config, **overrides)
    except ConfigFileError as exc:
        print(f"llmfleet router: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"llmfleet router: invalid settings (LLMFLEET_*, config file):\n{_problems(exc)}",
              file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        app = create_app(settings)
    except ValueError as exc:
        print(f"llmfleet router: {exc}", file=sys.stderr)
        return 2
    # The router's own access log replaces uvicorn's; it uses no client address, so
    # X-Forwarded-* parsing (proxy_headers) would only cost CPU per request.
    uvicorn.run(app, host=settings.host, port=settings.port, loop="uvloop",
                access_log=False, log_config=None, proxy_headers=False,
                timeout_graceful_shutdown=30, **uvicorn_options(settings.edge()))
    return 0


def _agent(args: argparse.Namespace) -> int:
    import asyncio

    from pydantic import ValidationError

    from agent.settings import AgentSettings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port),
                                   ("interval_s", args.interval)) if v is not None}
    if args.once and not args.publish:
        overrides["publish"] = False  # a look at the numbers, not a publisher
    try:
        settings = AgentSettings(**overrides)
    except ValidationError as exc:
        print(f"llmfleet agent: invalid settings (LLMFLEET_AGENT_*):\n{_problems(exc)}",
              file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    if args.once:
        return asyncio.run(_agent_once(settings, args.print))
    return _agent_serve(settings)


def _agent_serve(settings: AgentSettings) -> int:
    import asyncio

    from botocore.exceptions import NoRegionError

    from agent.app import serve
    from agent.runner import Agent, resolve_identity

    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"llmfleet agent: cannot use state_dir {settings.state_dir}: {exc}",
              file=sys.stderr)
        return 2

    async def main() -> None:
        agent = Agent(settings, await resolve_identity(settings), gpu=_gpu(settings))
        await serve(agent, settings.host, settings.port)

    try:
        asyncio.run(main())
    except NoRegionError:
        print("llmfleet agent: no AWS region: set LLMFLEET_AGENT_REGION (off EC2; on EC2 it "
              "comes from instance metadata)", file=sys.stderr)
        return 2
    return 0


async def _agent_once(settings: AgentSettings, as_table: bool) -> int:
    """Scrape twice one interval apart and show (or print as JSON) what would be published."""
    import asyncio
    import json

    from agent.report import render
    from agent.runner import Agent, resolve_identity

    agent = Agent(settings, await resolve_identity(settings), gpu=_gpu(settings))
    await agent.start()
    try:
        await agent.collect()  # the first scrape only primes the counters
        await asyncio.sleep(settings.interval_s)
        result = await agent.run_round()
    finally:
        await agent.close()
    if as_table:
        print(render(result))
    else:
        for point in result.points:
            print(json.dumps({"name": point.name, "value": point.value, "unit": point.unit,
                              "timestamp": point.timestamp,
                              "dimensions": dict(point.dimensions)}))
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from agent.readback import latest, render, start_times

    client = _aws("cloudwatch", args)
    try:
        if args.starts:
            starts = start_times(client, args.namespace, args.starts, days=args.days)
            print(starts.render() if starts else f"{args.starts}: no start measured in the "
                  f"last {args.days:g} days")
            return 0
        rows = latest(client, args.namespace, minutes=args.minutes)
    except (BotoCoreError, ClientError) as exc:
        print(f"llmfleet metrics: {exc}", file=sys.stderr)
        return 1
    print(render(rows))
    return 0


def _gpu(settings: AgentSettings) -> GpuCollector | None:
    from llmfleet.core.gpu import GpuCollector

    return GpuCollector() if settings.gpu else None


def _testmodel(args: argparse.Namespace) -> int:
    from llmfleet.core.testmodel import ensure_test_model

    logs.configure("INFO")
    print(ensure_test_model(args.out))
    return 0


def _aws(service: str, args: argparse.Namespace) -> Any:
    import boto3

    return boto3.client(service, region_name=args.region, endpoint_url=args.endpoint_url)


def _stage_model(args: argparse.Namespace) -> int:
    from llmfleet.core import weights

    try:
        where = weights.Location(args.bucket, args.model)
        token = None
        if args.source is None and args.hf_token_parameter is not None:
            token = weights.secret_parameter(_aws("ssm", args), args.hf_token_parameter)
        done = weights.stage_model(_aws("s3", args), where, source=args.source,
                                   revision=args.revision, token=token,
                                   say=lambda line: print(line, file=sys.stderr, flush=True))
    except weights.WeightsError as exc:
        print(f"llmfleet stage-model: {exc}", file=sys.stderr)
        return 1
    if not done.copied:
        print(f"{args.model} is staged at {done.revision} already")
        return 0
    print(f"staged {args.model} at revision {done.revision} (as {done.ref!r}); instances "
          f"with model.source = \"s3\" fetch it at boot")
    return 0


def _fetch_model(args: argparse.Namespace) -> int:
    from llmfleet.core import weights

    try:
        where = weights.Location(args.bucket, args.model)
        manifest = weights.fetch(_aws("s3", args), where, args.revision, args.dest)
    except weights.WeightsError as exc:
        print(f"llmfleet fetch-model: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dest}: {args.model} at {manifest.revision}, {len(manifest.files)} files "
          "verified", file=sys.stderr)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from loadtest.bench import main as bench_main

    logs.configure("WARNING")
    return bench_main(args.plans, args.out, seed=args.seed,
                      engine_timeout_s=args.engine_timeout)


def _profile(args: argparse.Namespace) -> int:
    import asyncio
    import time
    from dataclasses import replace

    from llmfleet.core.wire.profile import EngineProfile
    from loadtest.probe import ProbePlan, engine_limits, probe
    from loadtest.sweep import EndpointError, Target, first_model
    from simulator.profile import ProfileError, fit

    logs.configure("WARNING")
    target = Target(args.url.rstrip("/"), args.api_key)

    async def measure() -> EngineProfile:
        model = args.model or await first_model(target)
        limits = await engine_limits(target, args.max_num_seqs, args.max_num_batched_tokens,
                                     kv_tokens=args.kv_tokens)
        plan = ProbePlan()
        plan = replace(plan, repeats=args.repeats or plan.repeats,
                       batches=tuple(b for b in plan.batches if b <= args.max_batch))
        print(f"probing {target.url} ({model}): {plan.size(limits)} requests; the engine "
              "must have no other traffic", file=sys.stderr)
        samples = await probe(target, model, limits, plan,
                              progress=lambda line: print(f"  {line}", file=sys.stderr))
        return EngineProfile(model=model, endpoint=target.url,
                             measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             limits=limits, fit=fit(samples), samples=samples)

    try:
        profile = asyncio.run(measure())
    except (EndpointError, ProfileError) as exc:
        print(f"llmfleet profile: {exc}", file=sys.stderr)
        return 1
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(profile.model_dump_json(indent=1) + "\n")
    except OSError as exc:
        print(f"llmfleet profile: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    f = profile.fit
    print(f"wrote {args.out}: {len(profile.samples)} samples, fit r2 {f.r2:.3f}, relative rms "
          f"{f.relative_rms:.1%}; use it with: llmfleet simulate --profile {args.out}")
    return 0


def _up(args: argparse.Namespace) -> int:
    from llmfleet.local import DEFAULT_MODELS, LocalPlatform, UpOptions

    logs.configure("WARNING")
    if args.model is not None:
        models: tuple[str, ...] = (args.model,)
    elif args.models is not None:
        models = tuple(split_csv(args.models))
    else:
        models = DEFAULT_MODELS
    options = UpOptions(models=models, port=args.port, engine_port=args.engine_port,
                        vllm_args=args.vllm_args, run_dir=args.run_dir,
                        agent_port=args.agent_port, cloudwatch_port=args.cloudwatch_port,
                        instance_type=args.instance_type, agent_interval_s=args.agent_interval,
                        drain_timeout_s=args.drain_timeout)
    return LocalPlatform(options).run()


def _add_profile(sub: Any) -> None:
    profile = sub.add_parser(
        "profile", help="measure an idle engine's step times for the simulator "
                        "(llmfleet simulate --profile)")
    profile.add_argument("--url", default="http://127.0.0.1:8001",
                         help="the engine's (or router's) base URL (default: %(default)s)")
    profile.add_argument("--model", default="", help="default: the first model it lists")
    profile.add_argument("--api-key", default=None, help="for a router that wants one")
    profile.add_argument("--max-num-seqs", type=positive_int, required=True,
                         help="the engine's --max-num-seqs (a client cannot see it)")
    profile.add_argument("--max-num-batched-tokens", type=positive_int, required=True,
                         help="the engine's --max-num-batched-tokens")
    profile.add_argument("--kv-tokens", type=positive_int, default=None,
                         help="KV cache size in tokens (default: read from vLLM's /metrics)")
    profile.add_argument("--repeats", type=positive_int, default=None,
                         help="measurements per configuration, median kept (default: 3)")
    profile.add_argument("--max-batch", type=positive_int, default=1 << 30,
                         help="measure decode batches up to this many sequences (default: up "
                              "to --max-num-seqs)")
    profile.add_argument("--out", type=Path, default=Path(".run/profile.json"))
    profile.set_defaults(func=_profile)


def _add_model_commands(sub: Any) -> None:
    """`stage-model` and `fetch-model`: weights through the platform's bucket."""
    for name, help_text in (("stage-model", "copy a model's weights into the platform's "
                                            "bucket, once (make stage-model)"),
                            ("fetch-model", "bring a staged model onto this machine, "
                                            "verified (the engine unit's first step)")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--bucket", required=True, help="the artifacts bucket")
        cmd.add_argument("--model", required=True, help="the model id (ORG/NAME)")
        cmd.add_argument("--revision", default="main",
                         help="a hub revision (staged under its commit), or a staged one")
        cmd.add_argument("--region", default=None)
        cmd.add_argument("--endpoint-url", help="an S3-compatible endpoint (moto)")
    stage_model, fetch_model = sub.choices["stage-model"], sub.choices["fetch-model"]
    stage_model.add_argument("--from", dest="source", type=Path,
                             help="stage this local directory instead of the hub's files")
    stage_model.add_argument("--hf-token-parameter",
                             help="SSM SecureString with a hub token, for gated models")
    stage_model.set_defaults(func=_stage_model)
    fetch_model.add_argument("--dest", type=Path, required=True, help="where vLLM loads it")
    fetch_model.set_defaults(func=_fetch_model)


def _add_up(sub: Any) -> None:
    up = sub.add_parser("up", help="run vLLM engines, the router and the agent locally")
    served = up.add_mutually_exclusive_group()
    served.add_argument("--models", default=None,
                        help="comma-separated, smallest first: Hugging Face ids, local paths "
                             "or generated models (llmfleet-tiny, llmfleet-wide); default: "
                             "llmfleet-tiny,llmfleet-wide")
    served.add_argument("--model", default=None,
                        help="one model only (empty: the generated llmfleet-tiny)")
    up.add_argument("--port", type=int, default=8000, help="router port")
    up.add_argument("--engine-port", type=int, default=8001,
                    help="the first vLLM engine's port (the others take free ports)")
    up.add_argument("--vllm-args", default="", help="extra vLLM arguments, one string")
    up.add_argument("--agent-port", type=int, default=8002, help="the agent's /health")
    up.add_argument("--cloudwatch-port", type=int, default=8003,
                    help="the local CloudWatch (moto) the agent publishes to")
    up.add_argument("--agent-interval", type=float, default=10.0,
                    help="seconds between the agent's rounds")
    up.add_argument("--instance-type", default="g5.xlarge",
                    help="the EC2 instance type local figures are priced as")
    up.add_argument("--drain-timeout", type=float, default=60.0,
                    help="seconds Ctrl-C waits for requests in flight before stopping")
    up.add_argument("--run-dir", type=Path, default=Path(".run"), help="logs and state")
    up.set_defaults(func=_up)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmfleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    router = sub.add_parser("router", help="run the OpenAI-compatible router")
    router.add_argument("--config", type=Path, help="TOML file with router settings")
    router.add_argument("--host")
    router.add_argument("--port", type=int)
    router.set_defaults(func=_router)

    _add_up(sub)

    agent = sub.add_parser("agent", help="run the metrics sidecar (GPU, serving, cost)")
    agent.add_argument("--once", action="store_true",
                       help="measure one interval, show it and exit (publishes only with "
                            "--publish)")
    agent.add_argument("--print", action="store_true", help="with --once: a table, not JSON")
    agent.add_argument("--publish", action="store_true", help="with --once: also publish")
    agent.add_argument("--interval", type=float, help="seconds between rounds")
    agent.add_argument("--host")
    agent.add_argument("--port", type=int)
    agent.set_defaults(func=_agent)

    metrics = sub.add_parser("metrics", help="show what CloudWatch holds for the fleet")
    metrics.add_argument("--namespace", default="LLMFleet")
    metrics.add_argument("--endpoint-url", help="a CloudWatch-compatible endpoint (moto)")
    metrics.add_argument("--region", default=None)
    metrics.add_argument("--minutes", type=float, default=15, help="how far back to look")
    metrics.add_argument("--starts", metavar="GROUP",
                         help="summarise the group's measured starts (TimeToServingSeconds) "
                              "and the grace they call for")
    metrics.add_argument("--days", type=float, default=7, help="how far back --starts looks")
    metrics.set_defaults(func=_metrics)

    bench = sub.add_parser("bench", help="measure execution plans and pick the best under "
                                         "an SLA (plans file: see loadtest/plans.py)")
    bench.add_argument("plans", type=Path, help="TOML plans file")
    bench.add_argument("--out", type=Path, default=Path(".run/bench"),
                       help="where the profiles, ranking and plot go")
    bench.add_argument("--seed", type=int, default=0, help="workload sampling seed")
    bench.add_argument("--engine-timeout", type=float, default=900.0,
                       help="seconds an engine may take to become healthy")
    bench.set_defaults(func=_bench)

    _add_profile(sub)

    from planner.cli import add_parser as add_plan
    from simulator.cli import add_parser as add_simulate

    add_plan(sub)
    add_simulate(sub)

    _add_model_commands(sub)
    testmodel = sub.add_parser("testmodel", help="generate the small offline test model")
    testmodel.add_argument("--out", type=Path, default=DEFAULT_TEST_MODEL_DIR)
    testmodel.set_defaults(func=_testmodel)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
