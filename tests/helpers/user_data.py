"""The instances' cloud-init rendered offline by OpenTofu/Terraform, and readers for it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import tf

LOCK = tf.INFRA / "modules" / "compute" / "requirements" / "instance.txt"


SERVICES = ("vllm", "router", "agent")


def render(var_file: Path | None = None, **variables: Any) -> str:
    """The cloud-init document the compute module would put in the launch template."""
    base: dict[str, Any] = {
        "router_port": ROUTER_PORT, "metrics_namespace": "LLMFleet", "asg_name": "llmfleet-dev-gpu",
        "artifact_bucket": "llmfleet-dev-artifacts-x",
        "artifact_key": "packages/0123/llmfleet-0.0.0-py3-none-any.whl",
        "artifact_sha256": WHEEL_SHA256, "requirements_key": "packages/4567/requirements.txt",
        "requirements_sha256": hashlib.sha256(LOCK.read_bytes()).hexdigest(),
        "log_group_names": {"vllm": "/llmfleet/dev/vllm", "router": "/llmfleet/dev/router",
                            "agent": "/llmfleet/dev/agent"},
        "drain_hook_name": "llmfleet-dev-gpu-drain", "drain_timeout_s": 300,
    }
    if var_file is None:
        base["api_keys_parameter"] = "/llmfleet/test/api-keys"
        base["model"] = json.dumps({"id": "org/model"})
    base.update(variables)
    args = [tf.binary(), "console", "-no-color"]
    if var_file is not None:
        args.append(f"-var-file={var_file}")
    for name, value in base.items():
        args.append(f"-var={name}={value if isinstance(value, (str, int)) else json.dumps(value)}")
    # The environment files set the root module's other variables too; a module with
    # no provider renders them with a warning per unknown variable, which is expected.
    env = tf.environment(Path(os.devnull))  # no provider to install: no CLI configuration
    done = subprocess.run(args, input="jsonencode(local.cloud_init)", capture_output=True,
                          text=True, cwd=MODULE, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    # Warnings (one per variable the module does not declare) come first on stdout; a
    # variable left unset makes the result unknown rather than an error.
    assert "(known after apply)" not in done.stdout, done.stdout
    document: str = json.loads(json.loads(done.stdout.strip().splitlines()[-1]))
    return document


def makefile_vllm_version() -> str:
    match = re.search(r"^VLLM_VERSION \?= (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert match, "Makefile has no VLLM_VERSION"
    return match.group(1)


def files_of(document: dict[str, Any]) -> dict[str, str]:
    return {f["path"]: f["content"] for f in document["write_files"]}


def unit(document: dict[str, Any], name: str) -> dict[str, list[str]]:
    """A systemd unit's [Service] keys, each with every value it is given, drop-ins included."""
    files = files_of(document)
    dropins = sorted(p for p in files if p.startswith(f"/etc/systemd/system/{name}.service.d/"))
    section, keys = "", dict[str, list[str]]()
    for path in [f"/etc/systemd/system/{name}.service", *dropins]:
        for line in files[path].splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif "=" in line and section == "Service" and not line.startswith("#"):
                key, value = line.split("=", 1)
                keys.setdefault(key, []).append(value)
    return keys


def scratch_root(document: dict[str, Any], root: Path) -> Path:
    """What the instance holds after cloud-init: its files, the venv's commands, systemd's units."""
    for path, content in files_of(document).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(0o755 if content.startswith("#!") else 0o644)
    # What runcmd's pip install creates, and what the AMI and cloud-init's packages bring.
    for command in (f"{VENV_BIN}/python", f"{VENV_BIN}/llmfleet", "/usr/bin/nvidia-modprobe",
                    "/usr/sbin/logrotate"):
        target = root / command.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("#!/bin/sh\n")
        target.chmod(0o755)
    system = Path("/usr/lib/systemd/system")
    shutil.copytree(system, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    return root


REPO = tf.REPO


MODULE = tf.INFRA / "modules" / "compute" / "user_data"


VENV_BIN = "/opt/llmfleet/venv/bin"


ROUTER_PORT, ENGINE_PORT = 8000, 8001


WHEEL_SHA256 = "0" * 63 + "1"
