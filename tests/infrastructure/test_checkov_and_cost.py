"""The security scan's skips carry reasons, and Infracost's files point at real things.

checkov runs in its own virtualenv (`make security-check` builds it); here its
JSON report is read to check that every skipped check has a written reason and
that no skip comment is stale (one for a check that no longer fires is silently
ignored by checkov and would hide nothing but mislead readers). Infracost cannot
price anything offline, so its configuration is checked for what breaks quietly:
paths that do not exist and usage entries for resources that were renamed.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import tf

CHECKOV = tf.REPO / ".venv-checkov" / "bin" / "checkov"
SKIP = re.compile(r"#checkov:skip=(CKV2?_[A-Z]+_\d+):(.*)$")


def skip_comments() -> list[tuple[Path, str, str]]:
    found = []
    for path in sorted(tf.INFRA.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                match = SKIP.search(line)
                assert match, f"{path}: malformed skip: {line.strip()}"
                found.append((path, match.group(1), match.group(2).strip()))
    return found


def test_every_skip_says_why() -> None:
    skips = skip_comments()
    assert len(skips) >= 25  # the scan found them (one bucket module holds three copies' skips)
    for path, check, reason in skips:
        assert len(reason.split()) >= 8, f"{path.name} {check}: the reason is too thin: {reason!r}"


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.skip("checkov's virtualenv is made by `make security-check` (part of make test)")
    done = subprocess.run([str(CHECKOV), "--directory", str(tf.INFRA), "--framework", "terraform",
                           "--skip-download", "--output", "json"],
                          capture_output=True, text=True, timeout=300, check=False)
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_no_failed_checks_and_no_stale_skips(checkov_report: dict[str, Any]) -> None:
    results = checkov_report["results"]
    assert results["failed_checks"] == []
    skipped = results["skipped_checks"]
    assert all(s["check_result"]["suppress_comment"].strip() for s in skipped)
    # One report entry per resource instance a comment covers; every comment covers one or more.
    used = {(s["repo_file_path"].lstrip("/"), s["check_id"]) for s in skipped}
    written = {(str(path.relative_to(tf.REPO)), check) for path, check, _ in skip_comments()}
    assert written == used, f"stale skips: {written - used}"


# --- Infracost ----------------------------------------------------------------------

def declared_resources() -> dict[str, set[str]]:
    """`NAME` (or `NAME.CHILD` for a module it calls) -> the `type.name` of every resource."""
    root = (tf.INFRA / "main.tf").read_text()
    modules = dict(re.findall(r'module "(\w+)" \{.*?source\s*=\s*"\./modules/(\w+)"', root, re.S))
    declared = {}
    for name, source in modules.items():
        text = "\n".join(p.read_text() for p in (tf.INFRA / "modules" / source).glob("*.tf"))
        declared[name] = set(resources_in(text))
        for child, child_source in re.findall(
                r'module "(\w+)" \{\s*source\s*=\s*"\.\./(\w+)"', text):
            child_dir = tf.INFRA / "modules" / child_source
            declared[f"{name}.{child}"] = set(resources_in(
                "\n".join(p.read_text() for p in child_dir.glob("*.tf"))))
    return declared


def resources_in(text: str) -> list[str]:
    return [f"{t}.{n}" for t, n in re.findall(r'^resource "(\w+)" "(\w+)"', text, re.M)]


def test_infracost_projects_and_usage_name_real_files_and_resources() -> None:
    config = yaml.safe_load((tf.REPO / "infracost.yml").read_text())
    assert config["version"] == 0.1
    names = [p["name"] for p in config["projects"]]
    assert names == ["llmfleet-dev", "llmfleet-prod"]
    resources = declared_resources()
    for project in config["projects"]:
        path = tf.REPO / project["path"]
        assert (path / "main.tf").exists()
        for var_file in project["terraform_var_files"]:
            assert (path / var_file).resolve().is_file(), var_file
        assert (path / project["terraform_vars"]["package_path"]).is_file()
        usage = yaml.safe_load((tf.REPO / project["usage_file"]).read_text())
        assert usage["version"] == 0.1
        for address, values in usage["resource_usage"].items():
            match = re.fullmatch(
                r'module\.(\w+)(?:\[0\])?\.(?:module\.(\w+)\.)?(\w+\.\w+)(?:\[.*\])?', address)
            assert match, f"{project['usage_file']}: unexpected address {address}"
            module, child, resource = match.groups()
            if child:
                module = f"{module}.{child}"
            assert resource in resources.get(module, set()), \
                f"{project['usage_file']}: {address} names no resource in the configuration"
            assert values and all(isinstance(v, (int, float, str, dict)) for v in values.values())
