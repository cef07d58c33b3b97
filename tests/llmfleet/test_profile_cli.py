"""`llmfleet profile` on a real engine, and `llmfleet simulate --profile` on what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmfleet.cli import main
from simulator.profile import read_profile
from tests.helpers.fake_upstream import FakeControl

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "simulator" / "data" / "example-trace.csv"


def test_a_profile_of_the_local_engine_drives_the_simulator(
        vllm_engine: tuple[str, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    url, model = vllm_engine
    path = tmp_path / "profile.json"
    # The engine's scheduler limits are its CPU defaults; the KV size comes from /metrics.
    assert main(["profile", "--url", url, "--max-num-seqs", "128",
                 "--max-num-batched-tokens", "2048", "--max-batch", "2", "--repeats", "3",
                 "--out", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    profile = read_profile(path)
    assert profile.model == model and profile.endpoint == url
    assert profile.limits.kv_tokens > 0 and profile.limits.max_model_len == 2048
    kinds = {s.source.split()[0] for s in profile.samples}
    assert kinds == {"prefill", "decode"}
    assert all(0 < s.seconds < 5 for s in profile.samples)
    # A longer prompt takes longer to prefill on any engine.
    prefills = sorted((s.prefill_tokens, s.seconds) for s in profile.samples
                      if s.prefill_tokens)
    assert prefills[-1][1] > prefills[0][1]

    trace = tmp_path / "short.csv"
    trace.write_text("\n".join(EXAMPLE.read_text().splitlines()[:201]) + "\n")
    assert main(["simulate", "--root", str(REPO), "--trace", str(trace), "--profile",
                 str(path), "--policy", "fixed", "--no-plot", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    (fixed,) = answer["policies"]
    assert fixed["requests"] == 200 and fixed["ttft_p95_s"] > 0


def test_profile_says_what_is_wrong_when_the_endpoint_is_down(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--url", "http://127.0.0.1:9", "--max-num-seqs", "4",
                 "--max-num-batched-tokens", "256", "--out", str(tmp_path / "p.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llmfleet profile: cannot reach") and "Traceback" not in err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("flag", ["--max-num-seqs", "--max-num-batched-tokens", "--kv-tokens",
                                  "--repeats", "--max-batch"])
def test_profile_refuses_a_count_below_one_before_measuring(
        flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = {"--max-num-seqs": "4", "--max-num-batched-tokens": "256", flag: "0"}
    with pytest.raises(SystemExit) as exited:
        main(["profile", "--url", "http://127.0.0.1:9",
              *(x for pair in args.items() for x in pair)])
    assert exited.value.code == 2
    assert "0 is not a positive integer" in capsys.readouterr().err


def test_profile_says_so_when_it_cannot_write_the_file(
        fake: tuple[FakeControl, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    control, url = fake
    control.chunk_delay_s = 0.005  # so that longer answers take longer, as on an engine
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["profile", "--url", url, "--max-num-seqs", "4",
                 "--max-num-batched-tokens", "2048", "--kv-tokens", "100000",
                 "--max-batch", "2", "--repeats", "1", "--out",
                 str(blocker / "profile.json")]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {blocker / 'profile.json'}" in err and "Traceback" not in err
