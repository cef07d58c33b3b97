"""What the archive costs the router: CPU per request and added latency, off, metadata, full.

    python -m benchmarks.archive_bench [--quick] [--out DIR]          (make bench-archive)

The fake engine (its own process, on the load generator's core) answers; three routers
(each its own process, pinned to the other core, started one after another) differ only in
the archive: off, `metadata`, `full` (spool on this machine's disk, nothing sent: on an
instance the agent sends). Each takes the same non-streamed requests and 64-event streams at
concurrency 32, twice, alternated; the router's CPU (all its threads, the archive's writer
included) is read from /proc around each phase. Reports the median of the rounds' CPU per
request and latency p50/p99 for each, and the bytes a record takes in the spool and gzipped
as S3 gets it. The fake engine's text (" t0 t1 ...") and the bench's repeated prompt compress
far better than traffic does, so the sizes are also measured on records built the router's
way from random ids and prompts and answers of random common words (`synthetic`).

Results go to stdout and <out>/archive.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from benchmarks.router_bench import (
    KEY,
    ROUTER_CORE,
    Phase,
    drive,
    start_fake_engine,
    start_router,
)
from llmfleet.core.archive import Spool
from server.archiving import Archive, ArchiveContent, RecordMeta
from server.metrics import RouterMetrics
from server.protocol import Endpoint

MODES = ("off", "metadata", "full")
ROUNDS = 4


def archive_settings(mode: str, spool: Path) -> dict[str, str]:
    if mode == "off":
        return {}
    return {"archive_dir": str(spool), "archive_content": mode,
            "archive_segment_age_s": "3600"}  # sealed at the end: the bytes are read then


def spool_bytes(spool: Path) -> tuple[int, int, int]:
    """Records, their bytes in the spool, and those bytes gzipped."""
    raw = b"".join(p.read_bytes() for p in sorted(spool.glob("*.jsonl")))
    return raw.count(b"\n"), len(raw), len(gzip.compress(raw))


_COMMON = ("the of and to in is you that it he was for on are as with his they at be this from "
           "have or by one had not but what all were when we there can an your which their "
           "said if do will each about how up out them then she many some so these would "
           "other into has more her two like him see time could no make than first been its "
           "who now people my made over did down only way find use may water long little very "
           "after words called just where most know")
WORDS = _COMMON.split()


def synthetic_sizes(count: int = 2000) -> dict[str, dict[str, float]]:
    """Bytes a record takes, raw and gzipped, for a chat request of ~600 words and an answer
    of ~250, with random ids: closer to traffic than the fake engine's records."""
    rng = random.Random(1)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    lines: dict[str, list[bytes]] = {"metadata": [], "full": []}
    for _ in range(count):
        record = RecordMeta(
            request_id=f"{rng.getrandbits(128):032x}",
            engine_request_id=f"{rng.getrandbits(128):032x}",
            key_id="team-a", model="llama-3.1-8b", endpoint=Endpoint.CHAT, status=200,
            stream=True, prompt_tokens=rng.randint(100, 2000),
            completion_tokens=rng.randint(50, 500), ttft_s=rng.random(),
            latency_s=rng.random() * 10, route=None, retried=False).fields()
        lines["metadata"].append(json.dumps(record).encode() + b"\n")
        record["request"] = {"model": "llama-3.1-8b", "stream": True, "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": words(600)}]}
        record["output"] = [{"index": 0, "text": words(250), "finish_reason": "stop"}]
        lines["full"].append(json.dumps(record).encode() + b"\n")
    sizes = {}
    for content, batch in lines.items():
        raw = b"".join(batch)
        sizes[content] = {"bytes_per_record": len(raw) / count,
                          "gzip_bytes_per_record": len(gzip.compress(raw)) / count}
    return sizes


def _answers(tokens: int) -> tuple[bytes, list[bytes]]:
    """A chat answer of `tokens` words whole, and as a stream of one event a word (vLLM's
    shape), for the writer's cost."""
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
            "model": "llama-3.1-8b"}
    events = [b"data: " + json.dumps({**head, "choices": [
        {"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}]}).encode()
              + b"\n\n" for i in range(tokens)]
    whole = json.dumps({**head, "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant",
                                 "content": " ".join(f"w{i}" for i in range(tokens))},
         "finish_reason": "length"}]}).encode()
    return whole, [b"".join(events)]


def writer_cost(count: int = 2000) -> dict[str, dict[str, float]]:
    """CPU per record in this process, without the network: queueing it as a request ends
    (`Archive.record`, on the event loop) and turning it into a line on disk (the writer
    thread), for a metadata record and full records of a 64-token answer, whole and streamed.
    Far steadier than the end-to-end rounds, whose spread on two shared cores is wider than
    the archive's cost."""
    whole, streamed = _answers(64)
    body = json.dumps({"model": "llama-3.1-8b", "messages": [
        {"role": "user", "content": "hello " * 200}]}).encode()
    cases = (("metadata", ArchiveContent.METADATA, False, None),
             ("full, answer", ArchiveContent.FULL, False, [whole]),
             ("full, 64-event stream", ArchiveContent.FULL, True, streamed))
    found = {}
    with tempfile.TemporaryDirectory() as scratch:
        for i, (name, content, stream, answer) in enumerate(cases):
            archive = Archive(Spool(Path(scratch) / str(i)), content,
                              RouterMetrics(CollectorRegistry()).archive,
                              draining=lambda: False, max_pending_bytes=1 << 34)
            meta = RecordMeta(request_id="r", engine_request_id="e", key_id="k",
                              model="llama-3.1-8b", endpoint=Endpoint.CHAT, status=200,
                              stream=stream, prompt_tokens=300, completion_tokens=64,
                              ttft_s=0.1, latency_s=1.0, route=None, retried=False)
            started = time.process_time()
            for _ in range(count):
                archive.record(meta, body, None if answer is None else list(answer))
            queued = time.process_time()
            asyncio.run(archive.flush())
            done = time.process_time()
            assert archive.spool.stats.written == count
            found[name] = {"record_us": (queued - started) / count * 1e6,
                           "write_us": (done - queued) / count * 1e6}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument("--out", type=Path, default=Path(".run/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    n_plain, n_stream = (500, 100) if args.quick else (4000, 600)
    auth = {"authorization": f"Bearer {KEY}"}
    plain = {"model": "fake-model", "prompt": "hello " * 200, "max_tokens": 16}
    stream = {"model": "fake-model", "prompt": "hello " * 200, "max_tokens": 64,
              "stream": True}
    # First, while nothing else runs: the in-process parts.
    print("the writer's cost per record, in this process", flush=True)
    writer, synthetic = writer_cost(), synthetic_sizes()
    fake, upstream = start_fake_engine()
    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        m: {"non_streaming": [], "streaming_64_events": []} for m in MODES}
    sizes: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for round_ in range(ROUNDS):
                for mode in MODES if round_ % 2 == 0 else reversed(MODES):
                    spool = Path(scratch) / f"{mode}-{round_}"
                    router, url = start_router([upstream], args.out, ROUTER_CORE,
                                               log_level="WARNING",
                                               **archive_settings(mode, spool))
                    try:
                        asyncio.run(drive(Phase("warm-up", "-"), url + "/v1/completions",
                                          plain, 200, 32, auth, None))
                        for label, body, total in (("non_streaming", plain, n_plain),
                                                   ("streaming_64_events", stream, n_stream)):
                            print(f"round {round_ + 1}, archive {mode}: {label}, {total} "
                                  "requests at concurrency 32", flush=True)
                            phase = asyncio.run(drive(Phase(label, mode), url + "/v1/completions",
                                                      body, total, 32, auth, router.pid))
                            assert phase.errors == 0, phase.error_reasons
                            stats = phase.stats()
                            samples[mode][label].append({
                                "cpu_us_per_request": (phase.router_cpu_s or 0)
                                / max(1, phase.requests) * 1e6,
                                "p50_ms": stats.p50_ms, "p99_ms": stats.p99_ms})
                    finally:
                        router.terminate()  # the router writes what waits as it stops
                        router.wait(30)
                    if mode != "off" and round_ == 0:
                        records, raw, packed = spool_bytes(spool)
                        sizes[mode] = {"records": records, "bytes_per_record": raw / records,
                                       "gzip_bytes_per_record": packed / records}
    finally:
        fake.terminate()
        fake.wait(10)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version},
                               "rounds": ROUNDS, "requests": {"non_streaming": n_plain,
                                                              "streaming_64_events": n_stream}}
    for mode in MODES:
        results[mode] = {label: {k: statistics.median(s[k] for s in rounds)
                                 for k in rounds[0]} | {"rounds": rounds}
                         for label, rounds in samples[mode].items()}
    for mode in ("metadata", "full"):
        for label in ("non_streaming", "streaming_64_events"):
            base = results["off"][label]["cpu_us_per_request"]
            results[mode][label]["added_cpu_us_per_request"] = (
                results[mode][label]["cpu_us_per_request"] - base)
        results[mode]["spool"] = sizes[mode]
    results["synthetic"], results["writer"] = synthetic, writer
    (args.out / "archive.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2,
                     default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
