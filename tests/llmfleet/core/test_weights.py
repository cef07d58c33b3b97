"""Model weights staged into the platform's bucket and fetched at boot, against moto's S3.

The last test loads what was fetched into a real vLLM engine: the copy is what vLLM serves.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from llmfleet.cli import main
from llmfleet.core import weights
from llmfleet.core.engine import TEST_MODEL_ARGS, EngineProcess, EngineSpec
from llmfleet.core.net import free_port
from llmfleet.core.testmodel import DEFAULT_TEST_MODEL_DIR, ensure_test_model
from llmfleet.core.weights import Location, WeightsError
from tests.helpers.moto import start_moto

BUCKET = "llmfleet-dev-artifacts-x"
MODEL = "org/tiny-model"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    port = free_port()
    server = start_moto(port)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client, endpoint
    server.stop()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model's files: weights larger than one transfer part, configs, a nested file."""
    root = tmp_path / "model"
    (root / "tokenizer").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (root / "model.safetensors").write_bytes(os.urandom(weights.PART_BYTES * 2 + 12345))
    (root / "tokenizer" / "tokenizer.json").write_text("{}")
    (root / ".cache").mkdir()
    (root / ".cache" / "lock").write_text("not part of the model")
    return root


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_staged_model_is_fetched_whole_and_verified(s3: tuple[Any, str], model_dir: Path,
                                                      tmp_path: Path) -> None:
    client, _ = s3
    where = Location(BUCKET, MODEL)
    manifest = weights.describe(model_dir, MODEL)
    assert manifest.revision == weights.describe(model_dir, MODEL).revision  # stable
    assert [f.path for f in manifest.files] == ["config.json", "model.safetensors",
                                                "tokenizer/tokenizer.json"]  # no hidden
    weights.stage(client, where, model_dir, manifest, refs=["main"])

    dest = tmp_path / "fetched"
    fetched = weights.fetch(client, where, "main", dest)
    assert fetched.revision == manifest.revision
    assert tree(dest) == {k: v for k, v in tree(model_dir).items() if not k.startswith(".")}

    # Readable by the engine's user, writable by the fetch's alone, whatever the umask.
    assert {p.stat().st_mode & 0o777 for p in dest.rglob("*") if p.is_file()} == {0o644}
    assert {p.stat().st_mode & 0o777 for p in [dest, *dest.rglob("*")] if p.is_dir()} == \
        {0o755}

    # Fetched again (a restart, a warm pool's start): files in place are kept, not copied;
    # a file the manifest does not list (an earlier revision's shard) is removed.
    inode = (dest / "model.safetensors").stat().st_ino
    (dest / "old").mkdir()
    (dest / "old" / "model-00002.safetensors").write_bytes(b"stale")
    weights.fetch(client, where, manifest.revision, dest)
    assert (dest / "model.safetensors").stat().st_ino == inode
    assert not (dest / "old").exists()


def test_an_object_changed_after_staging_is_refused(s3: tuple[Any, str], model_dir: Path,
                                                    tmp_path: Path) -> None:
    client, _ = s3
    where = Location(BUCKET, MODEL)
    manifest = weights.describe(model_dir, MODEL)
    prefix = weights.stage(client, where, model_dir, manifest)
    client.put_object(Bucket=BUCKET, Key=prefix + "model.safetensors", Body=b"swapped")
    dest = tmp_path / "fetched"
    with pytest.raises(WeightsError, match="does not match its manifest"):
        weights.fetch(client, where, manifest.revision, dest)
    assert not (dest / "model.safetensors").exists()
    assert not list(dest.glob(".*.partial"))


def test_a_manifest_path_that_leaves_the_directory_writes_nothing(
        s3: tuple[Any, str], tmp_path: Path) -> None:
    client, _ = s3
    where = Location(BUCKET, MODEL)
    revision = "sha256-" + "0" * 16
    evil = {"model": MODEL, "revision": revision, "staged_at": "2026-12-06T00:00:00+00:00",
            "files": [{"path": "../../etc/cron.d/x", "size": 1, "sha256": "0" * 64}]}
    client.put_object(Bucket=BUCKET, Key=where.prefix(revision) + weights.MANIFEST,
                      Body=json.dumps(evil).encode())
    with pytest.raises(WeightsError, match="would leave"):
        weights.fetch(client, where, revision, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    for bad in ("/abs", "a/../b", ".hidden", "a\\b", ""):
        with pytest.raises(WeightsError):
            weights.safe_path(bad)


def test_nothing_staged_says_what_to_run(s3: tuple[Any, str], tmp_path: Path) -> None:
    """S3 answers a role without s3:ListBucket (the instances') 403 for a missing key, and
    404 otherwise: both say what to run, neither is a traceback."""
    client, _ = s3
    with pytest.raises(WeightsError, match="make stage-model"):
        weights.fetch(client, Location(BUCKET, MODEL), "main", tmp_path / "d")
    with pytest.raises(WeightsError, match="make stage-model"):
        weights.fetch(client, Location(BUCKET, MODEL), "a" * 40, tmp_path / "d")
    with pytest.raises(WeightsError, match="model id"):
        Location(BUCKET, "../../etc")


@pytest.mark.engine
def test_vllm_serves_the_model_fetched_from_the_bucket(
        s3: tuple[Any, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The generated test model through the commands an operator and an instance run:
    staged from its directory, fetched to another, served from there by vLLM."""
    _, endpoint = s3
    source = ensure_test_model(DEFAULT_TEST_MODEL_DIR)
    common = ["--bucket", BUCKET, "--model", "llmfleet/tiny", "--endpoint-url", endpoint,
              "--region", "us-east-1"]
    assert main(["stage-model", *common, "--from", str(source)]) == 0
    assert "staged llmfleet/tiny at revision sha256-" in capsys.readouterr().out
    dest = tmp_path / "models" / "tiny"
    assert main(["fetch-model", *common, "--dest", str(dest)]) == 0
    assert "files verified" in capsys.readouterr().err

    spec = EngineSpec(str(dest), "llmfleet-tiny", free_port(), max_model_len=2048,
                      extra_args=TEST_MODEL_ARGS)
    engine = EngineProcess(spec, tmp_path / "vllm.log")
    engine.start()
    try:
        engine.wait_ready(timeout_s=600)
        answer = httpx.post(f"{spec.url}/v1/completions", timeout=60, json={
            "model": "llmfleet-tiny", "prompt": "hello", "max_tokens": 4}).json()
        assert answer["choices"][0]["finish_reason"] == "length"
    finally:
        engine.stop()


def test_staging_again_copies_nothing_and_moves_the_ref(
        s3: tuple[Any, str], model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client, endpoint = s3
    common = ["--bucket", BUCKET, "--model", MODEL, "--endpoint-url", endpoint,
              "--region", "us-east-1"]
    assert main(["stage-model", *common, "--from", str(model_dir)]) == 0
    first = capsys.readouterr()
    assert "staging 3 files" in first.err
    assert main(["stage-model", *common, "--from", str(model_dir)]) == 0
    assert "staged at sha256-" in capsys.readouterr().out
    revision = weights.describe(model_dir, MODEL).revision
    ref = client.get_object(Bucket=BUCKET, Key=Location(BUCKET, MODEL).ref("main"))
    assert ref["Body"].read().decode() == revision


def test_a_hub_that_cannot_be_reached_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub 2.4 raises its HTTP client's ConnectError, which is no OSError, for a
    hub it cannot reach: it came through as a traceback (caught only in the full suite,
    where the hub library was imported before the test could set it offline). The hub here
    is a closed port on the loopback: refused at once, whatever the network."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(WeightsError, match="the hub refused org/tiny-model@main") as error:
        weights.hub_commit(MODEL, "main", "hf_secret-token-value")
    assert "hf_secret" not in str(error.value)


def test_a_refused_read_says_what_to_check(tmp_path: Path) -> None:
    """What a role without s3:ListBucket gets for a key that is not there: AccessDenied."""
    from botocore.exceptions import ClientError

    class Refusing:
        def get_object(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}},
                              "GetObject")

    with pytest.raises(WeightsError, match="AccessDenied; run make stage-model"):
        weights.fetch(Refusing(), Location(BUCKET, MODEL), "main", tmp_path / "d")
