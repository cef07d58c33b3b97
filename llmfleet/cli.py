"""The `llmfleet` console script: one subcommand per process.

    llmfleet router      the OpenAI-compatible router (settings: LLMFLEET_*)
    llmfleet up          a local platform: one vLLM engine plus the router
    llmfleet testmodel   generate the small offline model used by `up` and tests
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from llmfleet import logs
from llmfleet.testmodel import DEFAULT_TEST_MODEL_DIR


def _router(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.settings import RouterSettings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = RouterSettings.load(args.config, **overrides)
    logs.configure(settings.log_level)
    try:
        app = create_app(settings)
    except ValueError as exc:
        print(f"llmfleet router: {exc}", file=sys.stderr)
        return 2
    # The router's own access log replaces uvicorn's; it uses no client address, so
    # X-Forwarded-* parsing (proxy_headers) would only cost CPU per request.
    uvicorn.run(app, host=settings.host, port=settings.port, loop="uvloop", http="httptools",
                access_log=False, log_config=None, proxy_headers=False,
                timeout_graceful_shutdown=30)
    return 0


def _testmodel(args: argparse.Namespace) -> int:
    from llmfleet.testmodel import ensure_test_model

    logs.configure("INFO")
    print(ensure_test_model(args.out))
    return 0


def _up(args: argparse.Namespace) -> int:
    from llmfleet.local import LocalPlatform, UpOptions

    logs.configure("WARNING")
    options = UpOptions(model=args.model, port=args.port, engine_port=args.engine_port,
                        vllm_args=args.vllm_args, run_dir=args.run_dir)
    return LocalPlatform(options).run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmfleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    router = sub.add_parser("router", help="run the OpenAI-compatible router")
    router.add_argument("--config", type=Path, help="TOML file with router settings")
    router.add_argument("--host")
    router.add_argument("--port", type=int)
    router.set_defaults(func=_router)

    up = sub.add_parser("up", help="run one vLLM engine and the router locally")
    up.add_argument("--model", default="",
                    help="Hugging Face id or local path; empty: the generated test model")
    up.add_argument("--port", type=int, default=8000, help="router port")
    up.add_argument("--engine-port", type=int, default=8001, help="vLLM port")
    up.add_argument("--vllm-args", default="", help="extra vLLM arguments, one string")
    up.add_argument("--run-dir", type=Path, default=Path(".run"), help="logs and state")
    up.set_defaults(func=_up)

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
