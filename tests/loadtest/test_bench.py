"""`llmfleet bench` end to end: real vLLM engines per plan on this machine's CPU."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from llmfleet.cli import main
from llmfleet.core.net import free_port
from tests.helpers.fake_upstream import FakeControl, Mode

PLANS = """
[search]
workload = "fixed:16:16"
concurrency = [1, 4]
requests_per_level = 8
warmup_requests = 2
sla = "error_rate<=0"

# Timings of the tiny model on a shared 2-core CPU wander too much to predict a latency
# ranking (see docs/loadtest.md), so the plan the test can predict differs in what it can serve:
# a 24-token context cannot hold 16 prompt tokens plus 16 new ones, so every request is
# refused and the SLA (no errors) is missed.
[[plan]]
name = "roomy"
max_num_seqs = 16
cpu_threads = 1

[[plan]]
name = "short-context"
max_model_len = 24
cpu_threads = 1

[[plan]]
name = "broken"
extra_args = ["--dtype", "nonsense"]

[[plan]]
name = "gone"
endpoint = "http://127.0.0.1:{port}"
"""


@pytest.mark.engine
def test_the_search_picks_the_plan_that_can_serve_the_workload(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text(PLANS.format(port=free_port()))
    out = tmp_path / "out"
    assert main(["bench", str(plans), "--out", str(out), "--engine-timeout", "600"]) == 0
    printed = capsys.readouterr()

    result = json.loads((out / "result.json").read_text())
    assert result["chosen"] == "roomy"
    assert [p["plan"] for p in result["plans"]] == ["roomy", "short-context", "broken", "gone"]
    assert result["plans"][1]["reason"] == ("at concurrency 4: SLA missed: error_rate<=0 "
                                            "(measured 1)")
    assert result["plans"][2]["reason"].startswith("vLLM exited during start-up (log: ")
    assert "nonsense" in result["plans"][2]["reason"]
    assert "cannot reach http://127.0.0.1:" in result["plans"][3]["reason"]

    with (out / "profiles.csv").open() as handle:
        profiles = list(csv.DictReader(handle))
    assert [(p["plan"], p["concurrency"]) for p in profiles] == [
        ("roomy", "1"), ("roomy", "4"), ("short-context", "1"), ("short-context", "4")]
    for row in profiles[:2]:
        assert (row["requests"], row["failures"], row["mean_output_tokens"]) == ("8", "0", "16.0")
        assert float(row["ttft_p95_ms"]) <= float(row["e2e_p95_ms"])
        assert row["meets_sla"] == "True"
    for row in profiles[2:]:
        assert (row["requests"], row["failures"], row["meets_sla"]) == ("0", "8", "False")
    for row in profiles:
        assert int(row["peak_rss_bytes"]) > 200 * 2**20  # a real engine's memory
        assert row["energy_j"] == ""  # no GPU here: not measured, not guessed
    with (out / "requests.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2 * 8  # the finished ones
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "logs" / "broken.vllm.log").exists()

    table = (out / "ranking.txt").read_text()
    assert " 1  roomy " in table and "CHOSEN, meets SLA" in table
    assert "ranked by p50 latency at concurrency 4" in table
    assert table in printed.out
    assert "plan 4/4 gone: failed: cannot reach" in printed.err  # the progress lines


def test_no_plan_meeting_the_sla_exits_1(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text(f'[[plan]]\nname = "gone"\nendpoint = "http://127.0.0.1:{free_port()}"\n')
    assert main(["bench", str(plans), "--out", str(tmp_path / "out")]) == 1
    assert " 1  gone " in capsys.readouterr().out


def test_a_bad_plans_file_exits_2_before_starting_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text('[[plan]]\nname = "a"\nmax_num_seqs = -1\n')
    assert main(["bench", str(plans), "--out", str(tmp_path / "out")]) == 2
    assert "plan 'a': max_num_seqs must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_endpoint_dying_mid_stream_counts_as_failures_not_a_crash(
        fake: tuple[FakeControl, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A fault the real engine cannot produce on demand: every stream breaks half-way."""
    control, url = fake
    control.mode = Mode.DIE_MIDSTREAM
    plans = tmp_path / "plans.toml"
    plans.write_text('[search]\nconcurrency = [2]\nrequests_per_level = 4\nwarmup_requests = 0\n'
                     'sla = "error_rate<=0"\nworkload = "fixed:8:8"\n'
                     f'[[plan]]\nname = "flaky"\nendpoint = "{url}"\n')
    out = tmp_path / "out"
    assert main(["bench", str(plans), "--out", str(out)]) == 1
    with (out / "profiles.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["requests"], row["failures"], row["error_rate"]) == ("0", "4", "1.0")
    assert row["peak_rss_bytes"] == ""  # a remote endpoint: no process of ours to measure
    assert "SLA missed: error_rate<=0 (measured 1)" in capsys.readouterr().out
    assert control.streams_started == 4
