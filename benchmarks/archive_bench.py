"""What the archive costs the router: CPU per request and added latency, off, metadata, full.

    python -m benchmarks.archive_bench [--quick] [--out DIR]          (make bench-archive)

The fake engine (its own process, on the load generator's core) answers; three routers
(each its own process, pinned to the other core, started one after another) differ only in
the archive: off, `metadata`, `full` (spool on this machine's disk, nothing sent: on an
instance the agent sends). Each takes the same non-streamed requests and 64-event streams at
concurrency 32, twice, alternated; the router's CPU (all its threads, the archive's writer
included) is read from /proc around each phase. Reports the median of the rounds' CPU per
request and latency p50/p99 for each, and the bytes a record takes in the spool and gzipped
as S3 gets it (the fake engine's text, " t0 t1 ...", compresses better than real text).

Results go to stdout and <out>/archive.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.router_bench import (
    KEY,
    ROUTER_CORE,
    Phase,
    drive,
    start_fake_engine,
    start_router,
)

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
    (args.out / "archive.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({m: {k: v for k, v in results[m].items()} for m in MODES}, indent=2,
                     default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
