"""Running OpenTofu (or Terraform where tofu is absent) from the tests, as the Makefile does."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infrastructure"
# Machines without registry access carry a filesystem mirror of the providers here.
MIRROR = Path(os.environ.get("TF_MIRROR", "/opt/tf-plugins"))


def binary() -> str:
    found = shutil.which("tofu") or shutil.which("terraform")
    if not found:
        pytest.fail("neither tofu nor terraform is on PATH (make infra-check needs one too)")
    return found


def cli_config(directory: Path) -> Path:
    """The CLI configuration `make` writes to .run/tf, by the same script."""
    path = directory / "cli.tfrc"
    subprocess.run([str(INFRA / "scripts" / "cli-config"), str(MIRROR), str(path)], check=True)
    return path


def environment(config: Path, **extra: str) -> dict[str, str]:
    """The process environment for a run: no AWS identity from the developer's shell."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "TF_VAR_")) and k != "TF_CLI_ARGS"}
    env.update(TF_CLI_CONFIG_FILE=str(config), TF_IN_AUTOMATION="1", **extra)
    return env
