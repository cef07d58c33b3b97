"""`llmfleet plan` and its subcommands, through the console script's entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from llmfleet.cli import main
from llmfleet.core.wire.scoring import ScoredModel
from llmfleet.core.wire.sizing import SizingAnswer

CONTRACT = {"ttft_ms", "tpot_ms", "e2e_ms", "output_throughput_tok_s", "total_throughput_tok_s",
            "max_concurrency_fits", "kv_offload_fraction"}


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, object]]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_predict_follows_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _json(capsys, ["plan", "predict", "--gpu", "A100-80G", "--num-gpus", "1",
                               "--model", "Llama-3.1-8B", "--dtype", "fp16", "--input-len", "512",
                               "--output-len", "128", "--concurrency", "16"])
    assert code == 0
    assert set(out) >= CONTRACT
    assert all(isinstance(out[k], (int, float)) for k in CONTRACT)
    assert out["ttft_ms"] < out["e2e_ms"]  # type: ignore[operator]


def test_names_match_without_case_and_by_hugging_face_id(
        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["plan", "predict", "--input-len", "128", "--output-len", "64"]
    _, by_name = _json(capsys, [*base, "--gpu", "a100-80g", "--model", "llama-3.1-8b"])
    _, by_id = _json(capsys, [*base, "--gpu", "A100-80G", "--model", "meta-llama/Llama-3.1-8B"])
    assert by_name == by_id


def test_a_huge_concurrency_predicts_offline_maximum_throughput(
        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["plan", "predict", "--gpu", "L40S", "--model", "Llama-2-13B", "--input-len", "1024",
            "--output-len", "512"]
    _, fits = _json(capsys, [*base, "--concurrency", "1"])
    _, flood = _json(capsys, [*base, "--concurrency", "1000000"])
    assert flood["running"] == fits["max_concurrency_fits"]
    assert flood["kv_offload_fraction"] > 0  # type: ignore[operator]
    _, offloaded = _json(capsys, [*base, "--concurrency", "1000000", "--kv-offload"])
    assert offloaded["running"] > flood["running"]  # type: ignore[operator]


def test_unknown_names_and_infeasible_answers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _json(capsys, ["plan", "predict", "--gpu", "B200", "--model", "Llama-3.1-8B",
                               "--input-len", "1", "--output-len", "1"])
    assert code == 2
    assert "unknown GPU 'B200'" in str(out["error"])
    code, out = _json(capsys, ["plan", "predict", "--gpu", "T4", "--model", "Llama-3.1-70B",
                               "--input-len", "1", "--output-len", "1"])
    assert code == 1
    assert out["feasible"] is False and "exceed" in str(out["why_not"])
    assert out["ttft_ms"] is None


def test_plan_prints_a_table_a_recommendation_a_tfvars_snippet_and_a_plot(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "plan.png"
    code = main(["plan", "--model", "Llama-3.1-8B", "--input-len", "512", "--output-len", "256",
                 "--tpot-ms", "50", "--rate", "10", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].startswith("instance")
    assert "Recommended: " in out and "Auto Scaling group: min " in out
    assert 'instance_type = "' in out and "capacity      = { min = " in out
    assert plot.stat().st_size > 10_000


def test_plan_json_ranks_every_candidate(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _json(capsys, ["plan", "--model", "Mistral-7B-v0.1", "--batch-size", "8",
                               "--slo-tps", "20", "--precision", "fp16", "--market", "spot",
                               "--json", "--no-plot"])
    assert code == 0
    candidates = out["candidates"]
    assert isinstance(candidates, list)
    assert {c["concurrency"] for c in candidates if c["feasible"]} == {8}
    costs = [c["cost"] for c in candidates if c["feasible"]]
    assert costs[1:] == sorted(costs[1:]) and costs[0] <= min(costs) * 1.05
    assert out["cost_unit"] == "fleet $/hr for 1 requests/s (no rate given)"
    assert out["recommended"] == candidates[0]
    SizingAnswer.model_validate(out)  # the console's contract: every key, no other


def test_an_impossible_slo_exits_1_and_bad_input_exits_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--model", "Llama-3.1-70B", "--ttft-ms", "0.001", "--no-plot"]) == 1
    assert "No candidate meets the SLO" in capsys.readouterr().out
    assert main(["plan", "--model", "gpt-9"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--model", "Llama-3.1-8B", "--input-len", "0"])
    assert exc.value.code == 2


def test_validate_prints_the_error_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "validate"]) == 0
    out = capsys.readouterr().out
    assert "| all |" in out and "| L40S |" in out


def requests_csv(tmp_path: Path, e2e_s: Callable[[int, int], float]) -> Path:
    """A plan search's requests.csv for plan `p` at concurrency 1: a grid of prompt and
    output lengths, each request taking `e2e_s(prompt, output)` seconds."""
    requests = tmp_path / "requests.csv"
    rows = ["plan,concurrency,prompt_tokens,output_tokens,ttft_s,e2e_s"]
    rows += [f"p,1,{i},{o},0.01,{e2e_s(i, o):.6f}"
             for i in (100, 400, 800, 1600) for o in (16, 64, 128)]
    requests.write_text("\n".join(rows) + "\n")
    return requests


def test_calibrate_fits_a_plan_search_run(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    requests = requests_csv(tmp_path, lambda i, o: 0.05 + 0.0002 * i + 0.03 * o)
    code, out = _json(capsys, ["plan", "calibrate", "--requests", str(requests), "--gpu", "A10G",
                               "--model", "Llama-3.1-8B"])
    assert code == 0
    runtime = out["runtime_s"]["p@1"]  # type: ignore[index]
    assert runtime["per_output_token"] == pytest.approx(0.03)
    assert runtime["r2"] == pytest.approx(1.0)
    assert "bandwidth" in out["corrected"]["p@1"]["efficiency"]  # type: ignore[index]
    entry = out["scored_models"][0]  # type: ignore[index]
    assert entry["runtime_s"]["per_output_token"] == pytest.approx(0.03)
    assert entry["energy_j"]["per_output_token"] == pytest.approx(0.03 * 300)  # A10G TDP bound
    assert ScoredModel(**{**entry, "quality": 0.5}).model == "p"  # what the router takes


def test_calibrate_gives_no_router_entry_for_a_negative_fitted_cost(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Regression: a fit with a negative per-token cost (noise on a short run) was printed
    as a `scored_models` entry that the router then refused to start with."""
    requests = requests_csv(tmp_path, lambda i, o: 1.0 - 0.0001 * i + 0.03 * o)
    code, out = _json(capsys, ["plan", "calibrate", "--requests", str(requests), "--gpu", "A10G",
                               "--model", "Llama-3.1-8B", "--quality", "0.5"])
    assert code == 0
    assert out["runtime_s"]["p@1"]["per_input_token"] < 0  # type: ignore[index]
    assert out["scored_models"] == []
    assert any("negative" in note for note in out["notes"])  # type: ignore[union-attr]


def test_the_console_script_answers_plan_predict() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llmfleet.cli", "plan", "predict", "--gpu", "H100-80G", "--model",
         "Qwen/Qwen2.5-7B-Instruct", "--dtype", "fp8", "--input-len", "100", "--output-len",
         "100"], capture_output=True, text=True, check=True, timeout=60)
    assert set(json.loads(done.stdout)) >= CONTRACT
