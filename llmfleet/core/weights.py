"""Model weights in the platform's bucket: staged once, fetched by every instance at boot.

Staging (`llmfleet stage-model`, `make stage-model`) copies a model's files, from the
Hugging Face hub (a gated model's token read from SSM and never printed) or from a local
directory, to `s3://BUCKET/models/<model id>/<revision>/`, then writes `manifest.json`
there, last: every file's path, size and SHA-256. No manifest, no staged model: a staging
that stopped half-way is never fetched. The revision is the hub's commit (so a restaged
`main` is a new prefix, and a fleet pinned to a commit keeps it), or for a local directory
a hash of its files; `refs/<name>` holds the revision a name (`main`) points to, as the
hub's own cache does.

Fetching (`llmfleet fetch-model`, the engine unit's first step on an instance, as root)
reads the manifest, downloads the files in parallel ranged parts (boto3's transfer manager)
through the VPC's S3 gateway endpoint instead of over NAT from the hub, checks each file's
SHA-256 against the manifest and only then moves it into place, readable by all and
writable by root alone: the destination lies outside the engine's own writable directory,
so the engine's user can plant nothing there for root to follow. A file already in place
with the right size and hash is kept (a restart, an instance started again); one the
manifest does not list is removed. A hash that differs fails the fetch: the engine never
loads weights nobody staged. Paths in a manifest are checked before anything is written:
none may leave the destination.

Progress goes to stderr every few seconds (bytes done, rate): a 16 GB model takes minutes.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST = "manifest.json"
# What vLLM loads from a hub repository: weights as safetensors, configs, tokenizers and
# chat templates. Not the pickled checkpoints beside them (`*.bin`, `*.pth`, `original/`),
# which would double the copy and which vLLM does not need when safetensors are there.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
HUB_IGNORE = ["original/*"]
PART_BYTES = 16 * 2**20
PART_THREADS = 16  # per file; FILE_THREADS files at once
FILE_THREADS = 4
HASH_CHUNK = 8 * 2**20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class WeightsError(Exception):
    """Staging or fetching could not be done; the message says what to change."""


class ManifestFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """What a staged revision holds; written last, read first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    revision: str
    staged_at: str
    files: tuple[ManifestFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Location:
    """Where one model's revisions live in the bucket."""

    bucket: str
    model: str

    def __post_init__(self) -> None:
        parts = self.model.split("/")
        if not 1 <= len(parts) <= 2 or not all(_SAFE_NAME.match(p) for p in parts):
            raise WeightsError(f"model id {self.model!r}: expected NAME or ORG/NAME "
                               "(letters, digits, '.', '_', '-')")

    def prefix(self, revision: str) -> str:
        return f"models/{self.model}/{revision}/"

    def ref(self, name: str) -> str:
        return f"models/{self.model}/refs/{name}"


def safe_path(path: str) -> PurePosixPath:
    """A manifest path as a relative path that stays inside the destination.

    Raises:
        WeightsError: absolute, empty, or with a `..`, a backslash or a hidden part.
    """
    pure = PurePosixPath(path)
    if (not path or "\\" in path or pure.is_absolute()
            or any(part in ("", ".", "..") or part.startswith(".") for part in pure.parts)):
        raise WeightsError(f"manifest path {path!r} would leave the model's directory")
    return pure


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Progress:
    """Bytes moved, said on stderr at most every `every_s` (thread-safe: transfer
    callbacks come from boto3's worker threads)."""

    def __init__(self, verb: str, total: int, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 say: Callable[[str], None] | None = None) -> None:
        self._verb, self._total, self._every_s, self._clock = verb, total, every_s, clock
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._lock = threading.Lock()
        self._done = 0
        self._started = self._last = clock()

    def __call__(self, moved: int) -> None:
        with self._lock:
            self._done += moved
            now = self._clock()
            if now - self._last < self._every_s:
                return
            self._last = now
            line = self.line(now)
        self._say(line)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or self._clock()) - self._started, 1e-9)
        return (f"  {self._verb} {self._done / 2**30:.2f} of {self._total / 2**30:.2f} GiB "
                f"({self._done / elapsed / 2**20:.0f} MiB/s)")

    def finish(self) -> str:
        line = self.line()
        self._say(line)
        return line


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES,
                          max_concurrency=PART_THREADS, use_threads=True)


# --- staging ---------------------------------------------------------------------------


def local_files(root: Path) -> list[Path]:
    """Every file under `root` (hidden ones and caches left out), sorted."""
    if not root.is_dir():
        raise WeightsError(f"{root} is not a directory")
    found = [p for p in root.rglob("*") if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if not found:
        raise WeightsError(f"{root} holds no files")
    return sorted(found)


def describe(root: Path, model: str, revision: str | None = None) -> Manifest:
    """The manifest of a directory; without a revision, one made from its files' hashes."""
    files = tuple(ManifestFile(path=p.relative_to(root).as_posix(), size=p.stat().st_size,
                               sha256=sha256_of(p)) for p in local_files(root))
    if revision is None:
        listing = "\n".join(f"{f.path} {f.sha256}" for f in files)
        revision = "sha256-" + hashlib.sha256(listing.encode()).hexdigest()[:16]
    return Manifest(model=model, revision=revision,
                    staged_at=datetime.now(UTC).isoformat(timespec="seconds"), files=files)


def stage(s3: Any, where: Location, root: Path, manifest: Manifest,
          refs: Iterable[str] = ()) -> str:
    """Upload `root`'s files under the manifest's revision, then the manifest, then `refs`.

    Returns the S3 prefix staged.
    """
    prefix = where.prefix(manifest.revision)
    progress = Progress("staged", manifest.total_bytes)
    config = _transfer_config()

    def upload(item: ManifestFile) -> None:
        s3.upload_file(str(root / safe_path(item.path)), where.bucket, prefix + item.path,
                       Config=config, Callback=progress)

    try:
        with ThreadPoolExecutor(FILE_THREADS) as pool:
            list(pool.map(upload, manifest.files))
        s3.put_object(Bucket=where.bucket, Key=prefix + MANIFEST,
                      Body=manifest.model_dump_json(indent=1).encode(),
                      ContentType="application/json")
        for name in refs:
            point(s3, where, name, manifest.revision)
    except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
        raise WeightsError(f"staging to s3://{where.bucket}/{prefix}: {exc}") from exc
    progress.finish()
    return prefix


@dataclass(frozen=True)
class Staged:
    """What `stage_model` did: the revision staged, the ref naming it, whether it copied."""

    revision: str
    ref: str
    copied: bool


def stage_model(s3: Any, where: Location, *, source: Path | None, revision: str,
                token: str | None, say: Callable[[str], None]) -> Staged:
    """Stage `source` (a local directory, under `main`) or the hub's `revision` (under its
    commit, named by `revision`); a revision staged already is not copied again, only its
    ref is moved. `say` hears the progress lines.

    Raises:
        WeightsError: the hub refused, the directory is empty, or S3 failed.
    """
    ref = "main" if source is not None else revision
    with tempfile.TemporaryDirectory(prefix="llmfleet-stage-") as cache:
        local = None if source is None else describe(source, where.model)
        commit = local.revision if local else hub_commit(where.model, revision, token)
        if staged(s3, where, commit):
            point(s3, where, ref, commit)
            return Staged(commit, ref, copied=False)
        if source is not None and local is not None:
            root, manifest = source, local
        else:
            say(f"llmfleet: downloading {where.model}@{commit} from the hub ...")
            root = hub_download(where.model, commit, token, Path(cache))
            manifest = describe(root, where.model, commit)
        say(f"llmfleet: staging {len(manifest.files)} files "
            f"({manifest.total_bytes / 2**30:.2f} GiB) to s3://{where.bucket}/"
            f"{where.prefix(commit)}")
        stage(s3, where, root, manifest, refs=[ref])
    return Staged(commit, ref, copied=True)


def hub_commit(model: str, revision: str, token: str | None) -> str:
    """The commit `revision` (a branch, a tag) of `model` names on the hub.

    Raises:
        WeightsError: huggingface_hub is missing, or the hub refused (gated, unknown).
    """
    api, _ = _hub()
    try:
        commit = api(token=token).model_info(model, revision=revision).sha
    except Exception as exc:  # the hub client's edge: see _hub
        raise _hub_refused(model, revision, exc) from exc
    if commit is None:
        raise WeightsError(f"the hub names no commit for {model}@{revision}")
    return str(commit)


def hub_download(model: str, commit: str, token: str | None, cache_dir: Path) -> Path:
    """The files vLLM loads of `model` at `commit`, downloaded into `cache_dir`.

    Raises:
        WeightsError: the hub refused.
    """
    _, download = _hub()
    try:
        path = download(model, revision=commit, token=token, cache_dir=cache_dir,
                        allow_patterns=HUB_PATTERNS, ignore_patterns=HUB_IGNORE)
    except Exception as exc:  # the hub client's edge: see _hub
        raise _hub_refused(model, commit, exc) from exc
    return Path(path)


def _hub() -> tuple[Any, Any]:
    """huggingface_hub's client and downloader (imported only when staging).

    What they raise depends on the version: its own HTTP errors, OSError, or its HTTP
    client's (huggingface_hub 2.4 raises httpx's ConnectError, an Exception and no
    OSError, for a hub it cannot reach). Staging is a one-shot command at the edge of a
    library it does not own, so every exception from these two calls becomes a WeightsError
    that names what failed (never the token).
    """
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError as exc:
        raise WeightsError("staging from the hub needs huggingface_hub (make up installs "
                           "it with vLLM)") from exc
    return HfApi, snapshot_download


def _hub_refused(model: str, revision: str, exc: Exception) -> WeightsError:
    # The token is never part of what the hub says back; say only what failed.
    first = str(exc).splitlines()[0] if str(exc) else ""
    return WeightsError(f"the hub refused {model}@{revision}: {type(exc).__name__}: {first}")


def staged(s3: Any, where: Location, revision: str) -> bool:
    """Whether the revision's manifest is in the bucket (a complete staging)."""
    try:
        s3.head_object(Bucket=where.bucket, Key=where.prefix(revision) + MANIFEST)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise WeightsError(f"s3://{where.bucket}/: {exc}") from exc
    except BotoCoreError as exc:
        raise WeightsError(f"s3://{where.bucket}/: {exc}") from exc
    return True


def point(s3: Any, where: Location, name: str, revision: str) -> None:
    """Make the ref `name` (main) name `revision`."""
    s3.put_object(Bucket=where.bucket, Key=where.ref(name), Body=revision.encode(),
                  ContentType="text/plain")


def secret_parameter(ssm: Any, name: str) -> str:
    """An SSM SecureString's value (the hub token: never printed, never logged)."""
    try:
        value: str = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except (BotoCoreError, ClientError) as exc:
        raise WeightsError(f"could not read SSM parameter {name}: {exc}") from exc
    return value.strip()


# --- fetching --------------------------------------------------------------------------


def resolve(s3: Any, where: Location, revision: str) -> str:
    """A revision name (`main`) to the revision its ref holds; a staged revision as is.

    Raises:
        WeightsError: no such ref (or none this role may read), or not a revision in it.
    """
    if _is_pinned(revision):
        return revision
    body = _read(s3, where.bucket, where.ref(revision), 1024,
                 f"{where.model}: nothing staged as {revision!r}")
    pinned = body.decode(errors="replace").strip()
    if not _is_pinned(pinned):
        raise WeightsError(f"{where.model}: ref {revision!r} holds {pinned!r}, not a revision")
    return pinned


def _is_pinned(revision: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{40}|sha256-[0-9a-f]{16}", revision))


def _read(s3: Any, bucket: str, key: str, limit: int, missing: str) -> bytes:
    """An object's first `limit` bytes.

    Raises:
        WeightsError: missing, or not readable by this role (S3 answers 403, not 404, to a
            role without s3:ListBucket: the instances have none), or S3 unreachable.
    """
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read(limit)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "AccessDenied", "403"):
            raise WeightsError(f"{missing} in s3://{bucket}/ ({key}: {code}; run make "
                               "stage-model, and check model.id and model.revision)") from exc
        raise WeightsError(f"s3://{bucket}/{key}: {exc}") from exc
    except BotoCoreError as exc:
        raise WeightsError(f"s3://{bucket}/{key}: {exc}") from exc
    return body


def read_manifest(s3: Any, where: Location, revision: str) -> Manifest:
    """Raises: WeightsError: not staged (no manifest), or a manifest that does not parse."""
    key = where.prefix(revision) + MANIFEST
    body = _read(s3, where.bucket, key, 2**22,
                 f"{where.model} is not staged at {revision}")
    try:
        manifest = Manifest.model_validate_json(body)
    except ValidationError as exc:
        raise WeightsError(f"s3://{where.bucket}/{key} is not a manifest") from exc
    for item in manifest.files:
        safe_path(item.path)
    return manifest


def fetch(s3: Any, where: Location, revision: str, dest: Path) -> Manifest:
    """Bring the staged revision into `dest`, verified; returns its manifest.

    `dest` is the fetch's alone (root's on an instance, outside the engine's own writable
    directory, so the engine's user can plant no link in it): files are written 0644 and
    folders 0755 for the engine to read, and files the manifest does not list (an earlier
    revision's shards) are removed, so that vLLM never loads a mix.

    Raises:
        WeightsError: not staged, a path that would leave `dest`, a file whose hash differs
            from the manifest's, or S3 failing.
    """
    manifest = read_manifest(s3, where, resolve(s3, where, revision))
    prefix = where.prefix(manifest.revision)
    _make_dir(dest)
    with ThreadPoolExecutor(FILE_THREADS) as pool:  # hashing what is there takes a while
        present = list(pool.map(lambda f: _in_place(dest / safe_path(f.path), f),
                                manifest.files))
    wanted = [f for f, there in zip(manifest.files, present, strict=True) if not there]
    progress = Progress("fetched", sum(f.size for f in wanted))
    config = _transfer_config()

    def download(item: ManifestFile) -> None:
        target = dest / safe_path(item.path)
        _make_dir(target.parent)
        partial = target.with_name(f".{target.name}.partial")
        try:
            s3.download_file(where.bucket, prefix + item.path, str(partial), Config=config,
                             Callback=progress)
        except (BotoCoreError, ClientError) as exc:
            raise WeightsError(f"s3://{where.bucket}/{prefix}{item.path}: {exc}") from exc
        if partial.stat().st_size != item.size or sha256_of(partial) != item.sha256:
            partial.unlink()
            raise WeightsError(f"{item.path}: what s3://{where.bucket}/{prefix} holds does "
                               "not match its manifest (changed after staging?); refusing it")
        partial.chmod(0o644)
        os.replace(partial, target)

    with ThreadPoolExecutor(FILE_THREADS) as pool:
        list(pool.map(download, wanted))
    _remove_unlisted(dest, {f.path for f in manifest.files})
    progress.finish()
    return manifest


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)  # whatever the umask (systemd's UMask=0077 for the unit's steps)


def _remove_unlisted(dest: Path, listed: set[str]) -> None:
    for path in sorted(dest.rglob("*"), reverse=True):
        relative = path.relative_to(dest).as_posix()
        if path.is_file() and relative not in listed:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _in_place(path: Path, item: ManifestFile) -> bool:
    return path.is_file() and path.stat().st_size == item.size and sha256_of(path) == item.sha256
