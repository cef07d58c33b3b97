"""vLLM's own server argument parser, run in a subprocess, for tests of engine command lines.

Importing vLLM inside the test process would trip the suite's warnings-as-errors
on its import-time chatter, and costs seconds; a subprocess does neither.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

VLLM_PARSE = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser
args = make_arg_parser(FlexibleArgumentParser()).parse_args(sys.argv[1:])
validate_parsed_serve_args(args)
print(json.dumps(vars(args), default=str))
"""


def vllm_parses(argv: list[str]) -> dict[str, Any]:
    """The engine's arguments as the installed vLLM's own server parser reads them."""
    done = subprocess.run([sys.executable, "-c", VLLM_PARSE, *argv], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    parsed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed
