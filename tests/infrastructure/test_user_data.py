"""The cloud-init every GPU instance boots with, rendered offline as each environment gets it.

Rendered by OpenTofu/Terraform itself (`console` on the provider-free `user_data`
module with the environment's tfvars), then checked the way the instance would
use it: cloud-init's own schema validator (Debian's cloud-init package, fetched
from the archive into .cache), `sh -n`/`bash -n` on what runs as shell,
`systemd-analyze verify` on the units inside a scratch root that holds the files
cloud-init writes, and the units' commands against what `make up` starts:
vLLM's own argument parser accepts the engine's command line, and the router
and agent settings load from the environment files the units read.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.settings import AgentSettings
from llmfleet.cli import build_parser
from llmfleet.core.engine import engine_spec_for
from llmfleet.local import UpOptions, local_agent
from server.settings import RouterSettings
from tests.helpers.user_data import (
    ENGINE_PORT,
    REPO,
    ROUTER_PORT,
    VENV_BIN,
    files_of,
    render,
    scratch_root,
    unit,
)
from tests.helpers.vllm_args import vllm_parses

CLOUD_INIT_CACHE = REPO / ".cache" / "cloud-init"
EXTRA_VLLM_ARGS = "--gpu-memory-utilization 0.92 --enable-prefix-caching --max-num-seqs 128"


CASES: dict[str, dict[str, Any]] = {
    "dev": {"var_file": REPO / "environments" / "dev.tfvars"},
    "prod": {"var_file": REPO / "environments" / "prod.tfvars"},
    "extra-args": {"model": json.dumps({"id": "org/Some-Model", "vllm_args": EXTRA_VLLM_ARGS,
                                        "hf_token_parameter": "/llmfleet/test/hf-token"})},
    # A pool among several, with a scored alias policy.
    "pool": {"pool": {"name": "small", "peers": {"small": "http://internal-p.elb.amazonaws.com",
                                                  "large": "http://internal-p.elb.amazonaws.com"}},
             "routing": {"policy": "scored", "score_weights": {"accuracy": 2},
                         "scored_models": [
                             {"model": "small", "quality": 0.5,
                              "runtime_s": {"intercept": 0.02, "per_output_token": 0.008},
                              "energy_j": {"per_input_token": 2e-05, "per_output_token": 0.6}},
                             {"model": "large", "quality": 0.75,
                              "runtime_s": {"per_output_token": 0.03},
                              "energy_j": {"per_output_token": 4.5}}]}},
    # The archive on: the router writes its spool, the agent sends it.
    "archive": {"archive": {"bucket": "llmfleet-dev-archive-x", "prefix": "archive/",
                            "content": "full"}},
}


@pytest.fixture(scope="module", params=sorted(CASES))
def rendered(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param, render(**CASES[request.param])


def env_file(document: dict[str, Any], path: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in files_of(document)[path].splitlines() if line)


def router_settings(document: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                    tmp_path: Path) -> RouterSettings:
    """The router's settings as its unit loads them: router.env, and the TOML file it names
    (written here, where the test can read it)."""
    for key in [k for k in os.environ if k.startswith("LLMFLEET_")]:
        monkeypatch.delenv(key)
    env = env_file(document, "/etc/llmfleet/router.env")
    config = tmp_path / "router.toml"
    config.write_text(files_of(document)[env.pop("LLMFLEET_CONFIG_FILE")])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return RouterSettings.load(config)


# --- cloud-init -------------------------------------------------------------------

@pytest.fixture(scope="session")
def cloud_init_validator() -> Any:
    """cloud-init's own schema validator, from Debian's package (not installed: unpacked)."""
    packages = CLOUD_INIT_CACHE / "usr" / "lib" / "python3" / "dist-packages"
    if not (packages / "cloudinit" / "config" / "schema.py").exists():
        if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
            pytest.skip("cloud-init's validator comes from Debian's archive; no apt-get here")
        CLOUD_INIT_CACHE.mkdir(parents=True, exist_ok=True)
        got = subprocess.run(["apt-get", "download", "-q", "cloud-init"], cwd=CLOUD_INIT_CACHE,
                             capture_output=True, text=True, timeout=300, check=False)
        debs = sorted(CLOUD_INIT_CACHE.glob("cloud-init_*.deb"))
        assert debs, f"apt-get download cloud-init failed: {got.stderr}"
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(CLOUD_INIT_CACHE)], check=True)
    sys.path.insert(0, str(packages))
    try:
        from cloudinit.config import schema
    finally:
        sys.path.remove(str(packages))
    return schema


def cloud_init_validate(schema: Any, document: dict[str, Any]) -> None:
    # Debian's cloud-init 22.4 calls a jsonschema API that newer releases deprecate.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        schema.validate_cloudconfig_schema(document, schema.get_schema(), strict=True)


def test_it_is_cloud_config_that_cloud_inits_own_validator_accepts(
        rendered: tuple[str, str], cloud_init_validator: Any) -> None:
    _, text = rendered
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    cloud_init_validate(cloud_init_validator, document)
    # The archive's group, where the archive is on.
    assert set(document) - {"groups"} == {"users", "package_update", "packages", "write_files",
                                          "runcmd"}


def test_the_validator_catches_a_broken_document(cloud_init_validator: Any) -> None:
    with pytest.raises(cloud_init_validator.SchemaValidationError, match="runcmd"):
        cloud_init_validate(cloud_init_validator, {"runcmd": "not a list"})


def test_shell_parts_parse(rendered: tuple[str, str], tmp_path: Path) -> None:
    _, text = rendered
    document = yaml.safe_load(text)
    # cloud-init runs runcmd's strings as one /bin/sh script, in order.
    script = tmp_path / "runcmd.sh"
    script.write_text("#!/bin/sh\n" + "\n".join(document["runcmd"]) + "\n")
    done = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for path, content in files_of(document).items():
        if content.startswith("#!/bin/bash"):
            done = subprocess.run(["bash", "-n"], input=content, capture_output=True, text=True,
                                  check=False)
            assert done.returncode == 0, (path, done.stderr)
    log_config = json.loads(files_of(document)["/opt/aws/amazon-cloudwatch-agent/etc/"
                                                 "llmfleet-logs.json"])
    collected = log_config["logs"]["logs_collected"]["files"]["collect_list"]
    assert {c["file_path"] for c in collected} == {f"/var/log/llmfleet/{n}.log"
                                                   for n in ("vllm", "router", "agent")}


def test_a_broken_script_is_caught(tmp_path: Path) -> None:
    script = tmp_path / "bad.sh"
    script.write_text("if true; then echo\n")
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True,
                          check=False).returncode != 0


# --- systemd ----------------------------------------------------------------------

UNITS = ("llmfleet-vllm.service", "llmfleet-router.service", "llmfleet-agent.service",
         "llmfleet-logrotate.service", "llmfleet-logrotate.timer")


@pytest.fixture
def analyze() -> Iterator[str]:
    found = shutil.which("systemd-analyze")
    if not found or not Path("/usr/lib/systemd/system/sysinit.target").exists():
        pytest.skip("systemd-analyze and systemd's own units are needed to verify units")
    yield found


def verify(analyze: str, root: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([analyze, "verify", f"--root={root}", f"/etc/systemd/system/{name}"],
                          capture_output=True, text=True, timeout=60, check=False)


def test_systemd_accepts_the_units(rendered: tuple[str, str], tmp_path: Path,
                                   analyze: str) -> None:
    _, text = rendered
    root = scratch_root(yaml.safe_load(text), tmp_path / "root")
    for name in UNITS:
        done = verify(analyze, root, name)
        # Unknown keys and missing commands are warnings on stderr with exit 0: none allowed.
        assert done.returncode == 0 and not done.stderr.strip(), (name, done.stderr)


def test_systemd_verify_catches_a_bad_unit(tmp_path: Path, analyze: str) -> None:
    document = yaml.safe_load(render())
    root = scratch_root(document, tmp_path / "root")
    path = root / "etc/systemd/system/llmfleet-router.service"
    path.write_text(path.read_text().replace("Restart=always", "Restart=always\nRestrat=no"))
    done = verify(analyze, root, "llmfleet-router.service")
    assert "Unknown key" in done.stderr


# --- the same commands as `make up` ----------------------------------------------


def test_vllm_rejects_an_argument_it_does_not_know() -> None:
    with pytest.raises(AssertionError, match="unrecognized arguments: --no-such-flag"):
        vllm_parses(["--model", "org/model", "--no-such-flag"])


def test_the_engine_unit_runs_what_make_up_runs_and_vllm_accepts_it(
        rendered: tuple[str, str]) -> None:
    case, text = rendered
    document = yaml.safe_load(text)
    service = unit(document, "llmfleet-vllm")
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    local = engine_spec_for("org/model", ENGINE_PORT).command()  # what `make up` starts
    assert argv[0] == f"{VENV_BIN}/python"
    assert argv[1:3] == local[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = [a for a in argv if a.startswith("--")]
    assert flags[:4] == [a for a in local if a.startswith("--")][:4]

    args = vllm_parses(argv[3:])
    assert (args["host"], args["port"]) == ("127.0.0.1", ENGINE_PORT)  # loopback: only the router
    models = "/var/lib/llmfleet/models"  # root's: outside the engine's state directory
    expected = {"dev": (f"{models}/Qwen/Qwen2.5-1.5B-Instruct", ["qwen2.5-1.5b"], 8192),
                "prod": (f"{models}/meta-llama/Llama-3.1-8B-Instruct", ["llama-3.1-8b"],
                         16384),
                "extra-args": ("org/Some-Model", ["org/Some-Model"], None),
                "pool": ("org/model", ["org/model"], None),
                "archive": ("org/model", ["org/model"], None)}[case]
    assert (args["model"], args["served_model_name"], args["max_model_len"]) == expected
    if case == "extra-args":
        assert (args["gpu_memory_utilization"], args["enable_prefix_caching"],
                args["max_num_seqs"]) == \
            (0.92, True, 128)
    # The gated model's token: fetched at start from SSM into /run, never in the document;
    # and only where vLLM downloads from the hub (a staged model needs none at boot).
    token_fetch = [v for v in service.get("ExecStartPre", []) if "hf-token" in v]
    assert bool(token_fetch) == (case == "extra-args")
    assert "hf_" not in text and "sk-" not in text

    # dev and prod load what make stage-model put in the artifacts bucket, into the
    # directory vLLM is given, which the engine's user can read but not write.
    fetches = [shlex.split(v.removeprefix("+")) for v in service.get("ExecStartPre", [])
               if "fetch-model" in v]
    if case in ("extra-args", "pool", "archive"):  # from the hub
        assert not fetches
        return
    (fetch,) = fetches
    assert fetch[0] == f"{VENV_BIN}/llmfleet"
    parsed = build_parser().parse_args(fetch[1:])
    assert parsed.command == "fetch-model" and str(parsed.dest) == args["model"]
    assert (parsed.bucket, parsed.revision) == ("llmfleet-dev-artifacts-x", "main")
    assert args["model"].endswith(parsed.model)
    assert not args["model"].startswith("/var/lib/llmfleet/vllm/")  # the engine's own
    assert service["TimeoutStartSec"] == ["infinity"]  # not systemd's 90 s for the fetch


def test_router_and_agent_units_run_the_cli_commands_with_settings_that_load(
        rendered: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, text = rendered
    document = yaml.safe_load(text)
    engine_url = f"http://127.0.0.1:{ENGINE_PORT}"
    for name, subcommand in (("llmfleet-router", "router"), ("llmfleet-agent", "agent")):
        (exec_start,) = unit(document, name)["ExecStart"]
        argv = shlex.split(exec_start)
        assert argv == [f"{VENV_BIN}/llmfleet", subcommand]
        assert build_parser().parse_args(argv[1:]).command == subcommand
    # `make up` starts the agent as the same CLI subcommand (through -m, from the venv).
    options = UpOptions(models=("",), port=ROUTER_PORT, engine_port=ENGINE_PORT, vllm_args="",
                        run_dir=tmp_path)
    assert local_agent(options, [engine_url], "m").command[1:] == ["-m", "llmfleet.cli", "agent"]

    router = router_settings(document, monkeypatch, tmp_path)
    assert (router.host, router.port, router.backends) == ("0.0.0.0", ROUTER_PORT, [engine_url])
    assert router.api_keys_file == Path("/run/llmfleet/api-keys")
    assert router.keepalive_s == 620  # above the load balancer's 600 s idle timeout
    (fetch,) = [c for c in unit(document, "llmfleet-router")["ExecStartPre"] if "fetch-secret" in c]
    assert shlex.split(fetch)[2] == str(router.api_keys_file)  # the file the router reads

    for key, value in env_file(document, "/etc/llmfleet/agent.env").items():
        monkeypatch.setenv(key, value)
    agent = AgentSettings()
    assert agent.router_url == f"http://127.0.0.1:{ROUTER_PORT}"
    assert agent.engine_urls == [engine_url]
    assert agent.namespace == "LLMFleet" and agent.asg_name == "llmfleet-dev-gpu"
    # On its way out the agent drains for as long as the load balancer waits, then
    # completes the group's hook (the compute module's plan tests check both names).
    assert agent.lifecycle_watch and agent.imds
    assert (agent.lifecycle_hook, agent.drain_timeout_s) == ("llmfleet-dev-gpu-drain", 300)
    assert router.agent_url == f"http://127.0.0.1:{agent.port}"  # the console's GPU figures
    assert router.cors_allowed_origins == []  # no page on another origin unless one is named


def test_the_router_writes_the_archive_s_spool_and_the_agent_alone_may_send_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    document = yaml.safe_load(render(**CASES["archive"]))
    router = router_settings(document, monkeypatch, tmp_path)
    spool = Path("/var/lib/llmfleet/archive")
    assert (router.archive_dir, router.archive_content) == (spool, "full")
    assert router.archive_group_readable and router.archive_bucket is None  # it never sends
    for key, value in env_file(document, "/etc/llmfleet/agent.env").items():
        monkeypatch.setenv(key, value)
    agent = AgentSettings()
    assert (agent.archive_dir, agent.archive_bucket, agent.archive_prefix) == (
        spool, "llmfleet-dev-archive-x", "archive/")
    # The directory: the router's, shared with the agent's group alone; both sandboxes may
    # write there and nowhere else new.
    assert document["groups"] == ["llmfleet-archive"]
    members = {u["name"]: u.get("groups") for u in document["users"] if isinstance(u, dict)}
    assert members == {"llmfleet-vllm": None, "llmfleet-router": None,
                       "llmfleet-agent": ["llmfleet-archive"]}
    tmpfiles = "/etc/tmpfiles.d/llmfleet-archive.conf"  # made again at every boot
    assert files_of(document)[tmpfiles].split() == [
        "d", str(spool), "2770", "llmfleet-router", "llmfleet-archive", "-"]
    assert f"systemd-tmpfiles --create {tmpfiles}" in document["runcmd"]
    for name in ("llmfleet-router", "llmfleet-agent"):
        assert unit(document, name)["ReadWritePaths"] == [str(spool)]
    assert "ReadWritePaths" not in unit(document, "llmfleet-vllm")
    # The spool is made before the services start.
    made = document["runcmd"].index(next(c for c in document["runcmd"] if "archive" in str(c)))
    assert made < next(i for i, c in enumerate(document["runcmd"]) if "enable --now" in str(c))


def test_without_the_archive_no_service_writes_outside_its_state(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    document = yaml.safe_load(render())
    assert "groups" not in document
    assert router_settings(document, monkeypatch, tmp_path).archive_dir is None
    assert all("ReadWritePaths" not in unit(document, f"llmfleet-{n}")
               for n in ("vllm", "router", "agent"))


def test_the_demo_sites_origin_reaches_the_router_as_its_cors_setting(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    origins = ["https://d1234.cloudfront.net", "https://console.example.com"]
    document = yaml.safe_load(render(cors_allowed_origins=origins))
    assert router_settings(document, monkeypatch, tmp_path).cors_allowed_origins == origins


def test_a_pools_router_loads_its_peers_and_the_alias_policy(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the compute module renders for a pool among several, read by the router's own
    settings: the peers from name=url pairs, the scored policy from the TOML file."""
    document = yaml.safe_load(render(**CASES["pool"]))
    router = router_settings(document, monkeypatch, tmp_path)
    assert router.pool == "small"
    assert router.peer_pools() == {"large": "http://internal-p.elb.amazonaws.com"}
    assert router.policy.value == "scored"
    assert router.score_weights.accuracy == 2 and router.score_weights.time == 1
    small, large = router.scored_models
    assert (small.model, small.runtime_s.intercept, small.energy_j.per_input_token) == \
        ("small", 0.02, 2e-05)
    assert (large.quality, large.energy_j.per_output_token) == (0.75, 4.5)
    # One pool: the default policy, no rules, no peers.
    single = router_settings(yaml.safe_load(render()), monkeypatch, tmp_path)
    assert (single.pool, single.peers, single.length_rules) == (None, {}, [])




# --- the model's disk and the warm pool ---------------------------------------------

EBS = "/dev/nvme0n1 Amazon Elastic Block Store"
STORE = "/dev/nvme1n1 Amazon EC2 NVMe Instance Storage"
MODEL_DIR = "/var/lib/llmfleet/models/Qwen/Qwen2.5-1.5B-Instruct"


@pytest.fixture(scope="module")
def dev_document() -> dict[str, Any]:
    return yaml.safe_load(render(var_file=REPO / "environments" / "dev.tfvars"))


def run_model_disk(script: str, tmp_path: Path, *, lsblk: str, fstype: str = "",
                   label: str = "", pttype: str = "", probe: int | None = None,
                   mounted: tuple[str, ...] = (), in_use: str = "") -> list[list[str]]:
    """Run `model-disk` with the commands that touch devices replaced by stand-ins that
    answer as this instance's would and record what they were asked (no NVMe device can be
    made here); everything else in it runs for real. Returns the recorded commands."""
    found = probe if probe is not None else 0 if (fstype or pttype) else 2
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir(exist_ok=True)
    calls.write_text("")
    record = f'printf "%s\\n" "$(basename "$0") $*" >> {calls}'
    stubs = {
        "mountpoint": f'{record}\nfor m in {" ".join(mounted) or "-"}; do '
                      '[ "$m" = "$2" ] && exit 0; done; exit 1',
        "lsblk": f'{record}\ncase "$*" in *MOUNTPOINTS*) printf "%s\\n" "{in_use}" ;; '
                 f'*) printf "%s\\n" "{lsblk}" ;; esac',
        # blkid -p DEVICE: status 0 when it finds something, 2 when nothing, `probe` if set;
        # blkid -p -o value -s FIELD DEVICE ($5: FIELD): the field's value, or status 2.
        "blkid": f'{record}\nif [ "$#" = 2 ]; then exit {found}; fi\n'
                 f'case "$5" in TYPE) v="{fstype}" ;; LABEL) v="{label}" ;; '
                 f'PTTYPE) v="{pttype}" ;; esac\n[ -n "$v" ] && echo "$v"; [ -n "$v" ] || exit 2',
        **{name: record for name in ("mkfs.ext4", "mount", "install", "chmod")},
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    done = subprocess.run(["bash", "-c", script, "model-disk", MODEL_DIR], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return [line.split() for line in calls.read_text().splitlines()
            if not line.startswith(("mountpoint", "lsblk", "blkid"))]


def test_the_model_goes_to_the_instance_store_where_there_is_one(
        dev_document: dict[str, Any], tmp_path: Path) -> None:
    script = files_of(dev_document)["/usr/local/lib/llmfleet/model-disk"]
    pre = unit(dev_document, "llmfleet-vllm")["ExecStartPre"]
    disk = [i for i, c in enumerate(pre) if "model-disk" in c]
    fetch = [i for i, c in enumerate(pre) if "fetch-model" in c]
    assert disk and fetch and disk[0] < fetch[0]  # the disk first, then the copy onto it
    assert shlex.split(pre[disk[0]].removeprefix("+"))[1] == MODEL_DIR

    made = ["install", "-d", "-m", "0755", MODEL_DIR]
    # A blank store (a new instance, or after a stop): a file system, mounted on the directory.
    assert run_model_disk(script, tmp_path, lsblk=f"{EBS}\n{STORE}") == [
        made, ["mkfs.ext4", "-q", "-F", "-L", "llmfleet-models", "-E", "nodiscard",
               "/dev/nvme1n1"],
        ["mount", "-o", "noatime,nodev,nosuid", "/dev/nvme1n1", MODEL_DIR],
        ["chmod", "0755", MODEL_DIR]]
    # After a reboot the store keeps the file system made here and the copy: mounted again.
    assert run_model_disk(script, tmp_path, lsblk=f"{EBS}\n{STORE}", fstype="ext4",
                          label="llmfleet-models") == [
        made, ["mount", "-o", "noatime,nodev,nosuid", "/dev/nvme1n1", MODEL_DIR],
        ["chmod", "0755", MODEL_DIR]]
    # The Deep Learning AMI mounted the store itself: a directory there, bound in place.
    assert run_model_disk(script, tmp_path, lsblk=f"{EBS}\n{STORE}",
                          mounted=("/opt/dlami/nvme",)) == [
        made, ["install", "-d", "-m", "0755", "/opt/dlami/nvme/llmfleet-models"],
        ["mount", "--bind", "/opt/dlami/nvme/llmfleet-models", MODEL_DIR]]
    # Left on the root volume, never formatted nor mounted where the fetch would remove
    # another's files: no store; one in use elsewhere; one with partitions; another file
    # system; an ext4 not made here (the AMI's own, before the AMI has mounted it); and
    # nothing twice when the engine restarts.
    store = f"{EBS}\n{STORE}"
    assert run_model_disk(script, tmp_path, lsblk=EBS) == [made]
    assert run_model_disk(script, tmp_path, lsblk=store, in_use="/data") == [made]
    assert run_model_disk(script, tmp_path, lsblk=store, pttype="gpt") == [made]
    assert run_model_disk(script, tmp_path, lsblk=store, fstype="xfs") == [made]
    assert run_model_disk(script, tmp_path, lsblk=store, fstype="ext4", label="dlami") == [made]
    assert run_model_disk(script, tmp_path, lsblk=store, probe=8) == [made]  # ambivalent
    assert run_model_disk(script, tmp_path, lsblk=f"{EBS}\n{STORE}", mounted=(MODEL_DIR,)) == []


def test_with_a_warm_pool_the_agent_completes_the_launch_and_the_copy_stays_on_the_root_volume(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop blanks an instance store: a pooled instance's copy must outlive it."""
    document = yaml.safe_load(render(var_file=REPO / "environments" / "dev.tfvars",
                                     launch_hook_name="llmfleet-dev-gpu-launch",
                                     model_on_instance_store="false"))
    pre = unit(document, "llmfleet-vllm")["ExecStartPre"]
    assert not [c for c in pre if "model-disk" in c] and [c for c in pre if "fetch-model" in c]
    for key in [k for k in os.environ if k.startswith("LLMFLEET_")]:
        monkeypatch.delenv(key)
    for key, value in env_file(document, "/etc/llmfleet/agent.env").items():
        monkeypatch.setenv(key, value)
    assert AgentSettings().launch_hook == "llmfleet-dev-gpu-launch"
