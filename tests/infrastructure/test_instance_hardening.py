"""What the instances run as, what they may reach, and what they install (issue 15's findings).

The cloud-init document is rendered as the fleet gets it (`test_user_data.render`), then
its parts are run here the way the instance runs them, against fakes of what only an
instance has: the helper scripts with a fake `aws`, `iptables`, `curl` and `dpkg` on the
PATH, `fetch-secret` in a private mount namespace with its own /run, the package check
with a swapped file, the CloudWatch agent's signature check with a key made here, and
logrotate (Debian's, unpacked into .cache like cloud-init's validator) on a 100 MB log.
The units' sandboxes are scored by `systemd-analyze security --offline`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import tf
from tests.helpers.user_data import (
    LOCK,
    SERVICES,
    files_of,
    makefile_vllm_version,
    render,
    scratch_root,
    unit,
)

CACHE = tf.REPO / ".cache" / "logrotate"
AWS_AGENT_KEY = "937616F3450B7D806CBD9725D58167303B789C72"  # AWS's CloudWatch agent signing key
# Exposure (0 safe - 10 unsafe) per `systemd-analyze security`; as root and unsandboxed
# the units scored 9.6. vLLM keeps the GPU devices and JIT memory, so it scores highest.
MAX_EXPOSURE = {"vllm": 4.0, "router": 2.0, "agent": 2.5}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    text = render(model='{"id": "org/model", "hf_token_parameter": "/llmfleet/test/hf-token"}')
    parsed: dict[str, Any] = yaml.safe_load(text)
    return parsed


def script(document: dict[str, Any], name: str, tmp_path: Path) -> Path:
    """A helper script from the document, written where the test can run it."""
    path = tmp_path / name
    path.write_text(files_of(document)[f"/usr/local/lib/llmfleet/{name}"])
    path.chmod(0o755)
    return path


def fake(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text("#!/bin/bash\n" + body + "\n")
    (bin_dir / name).chmod(0o755)


def run(command: list[str], bin_dir: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          check=False, **kwargs)


# --- 6: each service its own user, in a sandbox ------------------------------------

def test_services_no_longer_run_as_root_without_a_sandbox(document: dict[str, Any],
                                                          tmp_path: Path) -> None:
    users = {u["name"]: u for u in document["users"] if isinstance(u, dict)}
    for name in SERVICES:
        user = users[f"llmfleet-{name}"]
        assert user["system"] and user["shell"] == "/usr/sbin/nologin"
        service = unit(document, f"llmfleet-{name}")
        assert service["User"] == [f"llmfleet-{name}"]
        for directive in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                          "PrivateTmp=yes", "CapabilityBoundingSet=", "RestrictSUIDSGID=yes"):
            key, value = directive.split("=", 1)
            assert service[key] == [value], (name, directive)
    analyze = shutil.which("systemd-analyze")
    if not analyze or not Path("/usr/lib/systemd/system/sysinit.target").exists():
        pytest.skip("systemd-analyze and systemd's own units are needed to score the sandboxes")
    root = scratch_root(document, tmp_path / "root")
    for name, limit in MAX_EXPOSURE.items():
        done = subprocess.run([analyze, "security", "--offline=true", f"--root={root}",
                               "--no-pager", f"/etc/systemd/system/llmfleet-{name}.service"],
                              capture_output=True, text=True, timeout=60, check=False)
        score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
        assert score, done.stdout + done.stderr
        assert float(score.group(1)) <= limit, (name, done.stdout)


def test_the_gpu_units_can_still_open_the_gpus(document: dict[str, Any]) -> None:
    # PrivateDevices, DevicePolicy, DeviceAllow and ProtectClock (which implies a
    # DeviceAllow) all close the device policy and would hide /dev/nvidia*.
    for name in ("vllm", "agent"):
        service = unit(document, f"llmfleet-{name}")
        assert not {"PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock"} & set(service)
    assert "MemoryDenyWriteExecute" not in unit(document, "llmfleet-vllm")  # Triton's JIT
    assert unit(document, "llmfleet-router")["PrivateDevices"] == ["yes"]


def test_only_the_agent_can_reach_the_role_credentials(document: dict[str, Any],
                                                       tmp_path: Path) -> None:
    for name in ("vllm", "router"):
        pre = unit(document, f"llmfleet-{name}")["ExecStartPre"]
        assert f"+/usr/local/lib/llmfleet/deny-imds llmfleet-{name}" in pre
    assert "ExecStartPre" not in unit(document, "llmfleet-agent")  # it needs the metadata
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    fake(bin_dir, "iptables", f'echo "$*" >> {calls}; [ "$2" != -C ] || [ -e {tmp_path}/present ]')
    deny = script(document, "deny-imds", tmp_path)
    assert run([str(deny), "llmfleet-vllm"], bin_dir).returncode == 0
    (tmp_path / "present").touch()
    assert run([str(deny), "llmfleet-vllm"], bin_dir).returncode == 0  # idempotent
    rule = "OUTPUT -d 169.254.169.254/32 -m owner --uid-owner llmfleet-vllm -j REJECT"
    assert calls.read_text().splitlines() == [f"-w -C {rule}", f"-w -I {rule}", f"-w -C {rule}"]


def test_secrets_are_readable_only_by_the_unit_that_needs_them(document: dict[str, Any],
                                                               tmp_path: Path) -> None:
    router = [c for c in unit(document, "llmfleet-router")["ExecStartPre"] if "fetch-secret" in c]
    assert router == ["+/usr/local/lib/llmfleet/fetch-secret /llmfleet/test/api-keys "
                      "/run/llmfleet/api-keys llmfleet-router"]
    vllm = unit(document, "llmfleet-vllm")
    # The token is an environment file, which systemd (root) reads: root alone may open it.
    assert ("+/usr/local/lib/llmfleet/fetch-secret /llmfleet/test/hf-token /run/llmfleet/hf.env "
            "root HF_TOKEN") in vllm["ExecStartPre"]
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("running fetch-secret needs root and a private mount namespace")
    bin_dir = tmp_path / "bin"
    fake(bin_dir, "aws", "echo 'team:sk-test'")
    fetch = script(document, "fetch-secret", tmp_path)
    check = (f"mount -t tmpfs tmpfs /run && {fetch} /p /run/llmfleet/api-keys nobody && "
             "stat -c '%U %a' /run/llmfleet/api-keys /run/llmfleet && cat /run/llmfleet/api-keys")
    done = run(["unshare", "--mount", "--propagation", "private", "bash", "-c", check], bin_dir)
    if "mount:" in done.stderr:
        pytest.skip(f"no private /run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["nobody 400", "root 711", "team:sk-test"]


# --- 7: logs rotated before they fill the disk --------------------------------------

@pytest.fixture(scope="session")
def logrotate() -> Path:
    """Debian's logrotate and its one library, unpacked into .cache (not installed)."""
    binary = CACHE / "usr" / "sbin" / "logrotate"
    if not binary.exists():
        if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
            pytest.skip("logrotate comes from Debian's archive; no apt-get here")
        CACHE.mkdir(parents=True, exist_ok=True)
        got = subprocess.run(["apt-get", "download", "-q", "logrotate", "libpopt0"], cwd=CACHE,
                             capture_output=True, text=True, timeout=300, check=False)
        debs = sorted(CACHE.glob("*.deb"))
        assert len(debs) == 2, f"apt-get download failed: {got.stderr}"
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE)], check=True)
    return binary


def test_service_logs_are_rotated_before_they_fill_the_disk(document: dict[str, Any],
                                                            logrotate: Path,
                                                            tmp_path: Path) -> None:
    logs = {f"/var/log/llmfleet/{name}.log" for name in SERVICES}
    for name in SERVICES:
        service = unit(document, f"llmfleet-{name}")
        assert {v.removeprefix("append:") for v in service["StandardOutput"]} <= logs
    timer = files_of(document)["/etc/systemd/system/llmfleet-logrotate.timer"]
    assert "OnCalendar=*:0/5" in timer
    assert "llmfleet-logrotate.timer" in document["runcmd"][-1]

    config = files_of(document)["/etc/llmfleet/logrotate.conf"]
    assert re.search(r"^\s*size 100M$", config, re.M) and "copytruncate" in config
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "logrotate.conf"
    conf.write_text(config.replace("/var/log/llmfleet", str(tmp_path / "logs")))
    log = tmp_path / "logs" / "vllm.log"
    with log.open("a") as held:  # as systemd holds it: opened once, O_APPEND
        held.write("x" * 1000 + "\n")
        held.flush()
        os.truncate(log, 101 * 1024 * 1024)  # past the limit (sparse: no real 100 MB written)
        libs = [str(CACHE / d / "x86_64-linux-gnu") for d in ("lib", "usr/lib")]
        env = {**os.environ, "LD_LIBRARY_PATH": ":".join(libs)}
        done = subprocess.run([str(logrotate), "--state", str(tmp_path / "state"), str(conf)],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        held.write("after\n")
    assert (tmp_path / "logs" / "vllm.log.1").stat().st_size == 101 * 1024 * 1024
    assert log.read_text() == "after\n"  # the same file, truncated: the agent reads it anew


# --- 8: only pinned, verified packages ----------------------------------------------

def lock_requirements() -> dict[str, str]:
    """name -> version of every package in the lock, each checked to carry a hash."""
    text = LOCK.read_text()
    hashed = r"^([a-z0-9][a-z0-9._-]*)==([^\s\\]+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)"
    entries = re.findall(hashed, text, re.M | re.I)
    names = re.findall(r"^[a-z0-9][^\s#]*", text, re.M | re.I)
    assert len(entries) == len(names) > 100, "every requirement is pinned with == and hashed"
    return {re.sub(r"[-_.]+", "-", n).lower(): v for n, v, _ in entries}


def test_the_lock_pins_the_vllm_make_install_pins_and_every_dependency() -> None:
    locked = lock_requirements()
    assert locked["vllm"] == makefile_vllm_version()
    project = tomllib.loads((tf.REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~ ;]", requirement)[0]).lower()
        assert name in locked, f"{name} (pyproject.toml) is not in {LOCK.name}: make instance-lock"
    assert {"uvloop", "httptools", "torch"} <= set(locked)  # extras and vLLM's own


@pytest.fixture
def install(document: dict[str, Any], tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """install-packages pointed at a scratch /opt/llmfleet, with a fake aws and python3."""
    opt, bin_dir = tmp_path / "opt", tmp_path / "bin"
    opt.mkdir()
    files = files_of(document)
    for name in ("SHA256SUMS", "llmfleet.txt"):
        (opt / name).write_text(files[f"/opt/llmfleet/{name}"])
    bucket = tmp_path / "bucket"
    (bucket / "packages" / "0123").mkdir(parents=True)
    (bucket / "packages" / "4567").mkdir(parents=True)
    (bucket / "packages/0123/llmfleet-0.0.0-py3-none-any.whl").write_bytes(b"wheel")
    shutil.copy(LOCK, bucket / "packages/4567/requirements.txt")
    fake(bin_dir, "aws", f'src=$4; cp "{bucket}/${{src#s3://*/}}" "$5"')  # s3 cp --quiet SRC DST
    fake(tmp_path, "pip", f'echo "$*" > {tmp_path}/pip-args')
    fake(bin_dir, "python3", f'mkdir -p "$3/bin" && cp {tmp_path}/pip "$3/bin/pip"')
    text = files["/usr/local/lib/llmfleet/install-packages"].replace("/opt/llmfleet", str(opt))
    path = tmp_path / "install-packages"
    path.write_text(text)
    path.chmod(0o755)
    yield path, bin_dir, bucket


def test_a_swapped_lock_or_wheel_is_refused(install: tuple[Path, Path, Path],
                                            tmp_path: Path) -> None:
    path, bin_dir, bucket = install
    wheel = bucket / "packages/0123/llmfleet-0.0.0-py3-none-any.whl"
    sums = tmp_path / "opt" / "SHA256SUMS"
    sums.write_text(sums.read_text().replace("0" * 63 + "1", hashlib.sha256(b"wheel").hexdigest()))
    done = run([str(path)], bin_dir)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pip-args").read_text().split() == [
        "install", "--quiet", "--no-input", "--require-hashes", "--only-binary", ":all:",
        "-r", "requirements.txt", "-r", "llmfleet.txt"]
    (tmp_path / "pip-args").unlink()
    lock = bucket / "packages/4567/requirements.txt"
    lock.write_text(lock.read_text() + "evil==1.0\n")
    assert run([str(path)], bin_dir).returncode != 0
    assert not (tmp_path / "pip-args").exists()
    shutil.copy(LOCK, lock)
    wheel.write_bytes(b"another wheel")
    assert run([str(path)], bin_dir).returncode != 0
    assert not (tmp_path / "pip-args").exists()


def test_the_wheel_itself_is_installed_by_its_hash(document: dict[str, Any]) -> None:
    (line,) = files_of(document)["/opt/llmfleet/llmfleet.txt"].splitlines()
    assert line == ("llmfleet @ file:///opt/llmfleet/llmfleet-0.0.0-py3-none-any.whl "
                    f"--hash=sha256:{'0' * 63}1")


@pytest.fixture
def signer(tmp_path: Path) -> tuple[dict[str, str], str]:
    """A throwaway GPG key (not AWS's) and its fingerprint."""
    if not shutil.which("gpg"):
        pytest.skip("gpg is needed to sign a test package")
    home = tmp_path / "signer"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "test@llmfleet",
                    "ed25519", "sign", "1d"], env=env, capture_output=True, check=True, timeout=60)
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--fingerprint"], env=env,
                             capture_output=True, text=True, check=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                       if line.startswith("fpr"))
    return env, fingerprint


def cloudwatch_install(document: dict[str, Any], tmp_path: Path, env: dict[str, str],
                       fingerprint: str | None = None, tamper: bool = False) -> tuple[int, str]:
    """Run install-cloudwatch-agent against a package signed by the test key."""
    served, bin_dir = tmp_path / "served", tmp_path / "bin"
    served.mkdir(parents=True)
    (served / "amazon-cloudwatch-agent.deb").write_bytes(b"package")
    subprocess.run(["gpg", "--batch", "--yes", "--detach-sign", "-o",
                    str(served / "amazon-cloudwatch-agent.deb.sig"),
                    str(served / "amazon-cloudwatch-agent.deb")], env=env, check=True,
                   capture_output=True)
    subprocess.run(["gpg", "--batch", "--yes", "--export", "-o",
                    str(served / "amazon-cloudwatch-agent.gpg")], env=env, check=True)
    if tamper:
        (served / "amazon-cloudwatch-agent.deb").write_bytes(b"another package")
    log = tmp_path / "fetched"
    fake(bin_dir, "curl", 'while [ $# -gt 1 ]; do [ "$1" = -o ] && out=$2; shift; done; '
         f'echo "$1" >> {log}; cp "{served}/$(basename "$1")" "$out"')
    fake(bin_dir, "dpkg", f"touch {tmp_path}/installed")
    path = script(document, "install-cloudwatch-agent", tmp_path)
    if fingerprint:
        path.write_text(path.read_text().replace(AWS_AGENT_KEY, fingerprint))
    clean = {k: v for k, v in env.items() if k != "GNUPGHOME"}
    done = subprocess.run([str(path), "1.300072.0b1766"], capture_output=True, text=True,
                          env={**clean, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, timeout=120,
                          check=False)
    installed = (tmp_path / "installed").exists()
    return done.returncode if not installed else 0, log.read_text() if log.exists() else ""


def test_the_cloudwatch_agent_comes_from_a_versioned_url_signed_by_aws(
        document: dict[str, Any], tmp_path: Path, signer: tuple[dict[str, str], str]) -> None:
    assert "/latest/" not in yaml.safe_dump(document)
    env, fingerprint = signer
    status, fetched = cloudwatch_install(document, tmp_path / "other", env)
    assert status != 0  # signed, but not by AWS's key: refused, dpkg never runs
    status, fetched = cloudwatch_install(document, tmp_path / "good", env, fingerprint)
    assert status == 0
    assert "/ubuntu/amd64/1.300072.0b1766/amazon-cloudwatch-agent.deb" in fetched
    status, _ = cloudwatch_install(document, tmp_path / "tampered", env, fingerprint, tamper=True)
    assert status != 0
