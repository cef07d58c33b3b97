"""The root module's variables as OpenTofu/Terraform itself resolves them, for comparison.

`console` on a directory holding only a copy of `infrastructure/variables.tf`: no provider,
no init, about 70 ms a call, and exactly the defaults, optional() attributes and type
conversion a plan of the whole stack applies to the same tfvars.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.helpers import tf


def console(var_file: Path, names: Iterable[str],
            workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run `console` printing the named variables as one JSON object (or failing)."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(tf.INFRA / "variables.tf", workdir / "variables.tf")
    expression = "jsonencode({" + ", ".join(f"{n} = var.{n}" for n in names) + "})"
    return subprocess.run([tf.binary(), "console", "-no-color", f"-var-file={var_file}"],
                          input=expression, capture_output=True, text=True, cwd=workdir,
                          env=tf.environment(Path(os.devnull)), timeout=120, check=False)


def values(var_file: Path, names: Iterable[str], workdir: Path) -> dict[str, object]:
    """The named variables' values; the test fails with Terraform's message if it refuses."""
    done = console(var_file, names, workdir)
    assert done.returncode == 0, done.stderr
    resolved: dict[str, object] = json.loads(json.loads(done.stdout.strip().splitlines()[-1]))
    return resolved
