"""`llmfleet simulate`'s files and progress: the plot, the per-minute CSV, the lines on stderr."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from llmfleet.cli import main
from simulator import cli, plot

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "simulator" / "data" / "example-trace.csv"


@pytest.fixture
def short_trace(tmp_path: Path) -> Path:
    """The shipped example's first 300 requests: about 70 s of traffic."""
    lines = EXAMPLE.read_text().splitlines()[:301]
    path = tmp_path / "short.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def repo_with(tmp_path: Path, env: str, tfvars: str) -> Path:
    """A repository holding the root variables and `environments/<env>.tfvars`."""
    root = tmp_path / "repo"
    (root / "environments").mkdir(parents=True)
    (root / "infrastructure").mkdir()
    shutil.copy(REPO / "infrastructure" / "variables.tf", root / "infrastructure")
    (root / "environments" / f"{env}.tfvars").write_text(tfvars)
    return root


def simulate(*args: str) -> int:
    return main(["simulate", "--root", str(REPO), "--max-size", "2", *args])


def test_the_plot_and_the_csv_hold_every_compared_policy(
        short_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, series = tmp_path / "out" / "timeline.png", tmp_path / "out" / "series.csv"
    assert simulate("--trace", str(short_trace), "--policy", "fixed", "--policy", "gpu-70-30",
                    "--plot", str(png), "--csv", str(series), "--json") == 0
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert answer["files"] == {"plot": str(png), "csv": str(series)}
    assert [p["policy"] for p in answer["policies"]] == ["gpu-70-30", "fixed"]
    assert f"plot: {png}" in captured.err and f"per-minute series: {series}" in captured.err
    assert png.read_bytes().startswith(b"\x89PNG")
    with series.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["policy"] for r in rows} == {"gpu-70-30", "fixed"}
    assert sum(int(r["requests"]) for r in rows if r["policy"] == "fixed") == 300
    assert {float(r["end_s"]) - float(r["start_s"]) for r in rows[:-1]} >= {60.0}


def test_the_plot_goes_to_the_default_path_and_says_where(
        short_trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    default = tmp_path / "default.png"  # absolute: --root / DEFAULT_PLOT is this path
    monkeypatch.setattr(cli, "DEFAULT_PLOT", default)
    assert simulate("--trace", str(short_trace), "--policy", "fixed") == 0
    captured = capsys.readouterr()
    assert "| fixed |" in captured.out
    assert f"plot: {default}" in captured.err and default.stat().st_size > 0


def test_no_plot_draws_nothing(short_trace: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "DEFAULT_PLOT", tmp_path / "default.png")
    assert simulate("--trace", str(short_trace), "--policy", "fixed", "--no-plot",
                    "--json") == 0
    assert json.loads(capsys.readouterr().out)["files"] == {"plot": None, "csv": None}
    assert not (tmp_path / "default.png").exists()


def test_without_matplotlib_the_default_plot_is_skipped_with_a_note(
        short_trace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plot, "available", lambda: False)
    assert simulate("--trace", str(short_trace), "--policy", "fixed") == 0
    err = capsys.readouterr().err
    assert "no plot: matplotlib is not installed" in err and "Traceback" not in err


def test_without_matplotlib_an_asked_for_plot_is_refused_before_simulating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plot, "available", lambda: False)
    assert simulate("--plot", str(tmp_path / "p.png")) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == ("llmfleet simulate: --plot needs matplotlib: "
                                    "pip install 'llmfleet[loadtest]'")
    assert captured.out == ""


def test_an_unwritable_csv_still_prints_the_table(
        short_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert simulate("--trace", str(short_trace), "--policy", "fixed", "--no-plot",
                    "--csv", str(blocker / "series.csv")) == 1
    captured = capsys.readouterr()
    assert "| fixed |" in captured.out and "llmfleet simulate:" in captured.err


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_progress_speaks_every_two_seconds_and_ten_percent_of_the_trace() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = cli.Progress("gpu-70-30", stream=stream, clock=clock)
    for at_s, wall_s in [(60, 1.0), (600, 1.5), (900, 2.5), (1000, 9.0), (1200, 9.5),
                         (2460, 12.0), (3000, 13.0), (3600, 14.5), (3700, 20.0)]:
        clock.now_s = wall_s
        progress(at_s, 3600)
    assert stream.getvalue().splitlines() == [
        "  gpu-70-30: 25% of the trace (15 of 60 min)",
        "  gpu-70-30: 68% of the trace (41 of 60 min)",
        "  gpu-70-30: 100% of the trace (60 of 60 min)"]


def test_a_run_that_ends_quickly_says_nothing() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = cli.Progress("fixed", stream=stream, clock=clock)
    for at_s in range(10, 3600, 10):
        clock.now_s = at_s / 3600  # one second of wall time for the whole trace
        progress(at_s, 3600)
    progress(10, 0)  # an empty trace
    assert stream.getvalue() == ""


def test_long_traces_are_reported_in_hours() -> None:
    assert cli.progress_line("oracle", 0.5, 86_400) == "  oracle: 50% of the trace (12.0 of " \
                                                      "24.0 h)"


def test_spot_interruptions_are_simulated_and_counted(
        short_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--trace", str(short_trace), "--policy", "fixed", "--no-plot", "--json",
            "--market", "spot")
    assert simulate(*args) == 0
    calm = json.loads(capsys.readouterr().out)["policies"][0]
    assert simulate(*args, "--spot-interruptions", "120") == 0
    (stormy,) = json.loads(capsys.readouterr().out)["policies"]
    assert calm["spot_interruptions"] == 0 and stormy["spot_interruptions"] > 0
    assert stormy["slo_attainment"] < calm["slo_attainment"]  # each notice costs requests


def test_a_negative_interruption_rate_is_refused(
        short_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate("--trace", str(short_trace), "--spot-interruptions", "-1",
                    "--no-plot") == 2
    assert "spot interruptions need a rate" in capsys.readouterr().err


def test_a_warm_pool_is_said_to_be_left_out(short_trace: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = repo_with(tmp_path, "pooled", (REPO / "environments" / "dev.tfvars").read_text()
                     + "warm_pool = { min_size = 1 }\n")
    assert simulate("--root", str(root), "--env", "pooled", "--trace", str(short_trace),
                    "--policy", "fixed", "--no-plot") == 0
    assert "warm pool is not simulated" in capsys.readouterr().err
    assert simulate("--trace", str(short_trace), "--policy", "fixed", "--no-plot") == 0
    assert "warm pool" not in capsys.readouterr().err  # dev has none


def test_each_pool_is_simulated_on_its_share_of_the_traffic(
        short_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """dev-pools: the small pool gets the prompts the routing's rules send it, the large one
    the rest; together, the whole trace."""
    served = {}
    for pool in ("small", "large"):
        assert simulate("--env", "dev-pools", "--pool", pool, "--trace", str(short_trace),
                        "--policy", "fixed", "--no-plot", "--json") == 0
        answer = json.loads(capsys.readouterr().out)
        served[pool] = (answer["instance_type"], answer["requests"])
    total = len(short_trace.read_text().splitlines()) - 1
    assert served["small"][0] == "g5.xlarge" and served["large"][0] == "g6e.xlarge"
    assert served["small"][1] + served["large"][1] == total
    assert served["small"][1] > 0 and served["large"][1] > 0
    assert simulate("--env", "dev", "--pool", "small", "--trace", str(short_trace),
                    "--no-plot") == 2
    assert "--pool is for an environment of several" in capsys.readouterr().err


def test_pools_routed_by_scores_are_refused_not_split_wrongly(
        short_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO / "environments" / "dev-pools.tfvars").read_text()
    start = text.index("routing = {")
    end = text.index("\n}\n", start) + 3
    scored = ('routing = { policy = "scored", scored_models = [{ model = "qwen2.5-1.5b", '
              'quality = 0.5, runtime_s = { per_output_token = 0.01 }, energy_j = '
              '{ per_output_token = 1 } }] }\n')
    root = repo_with(tmp_path, "scored", text[:start] + scored + text[end:])
    assert simulate("--root", str(root), "--env", "scored", "--pool", "small", "--trace",
                    str(short_trace), "--no-plot") == 2
    assert "routes by the scored policy" in capsys.readouterr().err


def pooled_root(tmp_path: Path, large_capacity: str) -> Path:
    """A repository whose `zero` environment is dev-pools with the large pool's capacity
    `large_capacity` (an HCL object)."""
    text = (REPO / "environments" / "dev-pools.tfvars").read_text()
    large = text.index("large = {")
    one = "capacity      = { min = 1, max = 1, desired = 1 }"
    return repo_with(tmp_path, "zero", text[:large]
                     + text[large:].replace(one, f"capacity      = {large_capacity}", 1))


def pools_answer(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["simulate", "--no-plot", "--json", *args]) == 0
    answer: dict[str, Any] = json.loads(capsys.readouterr().out)
    return answer


def test_every_pool_runs_together_and_the_deployment_adds_them_up(
        short_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --pool: each pool on its share, the deployment's table over all of them."""
    answer = pools_answer(capsys, "--root", str(REPO), "--env", "dev-pools", "--trace",
                          str(short_trace), "--policy", "fixed", "--policy", "gpu-70-30")
    total = len(short_trace.read_text().splitlines()) - 1
    small, large = answer["pools"]["small"], answer["pools"]["large"]
    assert (small["instance_type"], large["instance_type"]) == ("g5.xlarge", "g6e.xlarge")
    assert small["requests"] + large["requests"] == total == answer["requests"]
    assert small["requests"] > 0 and large["requests"] > 0
    for i, policy in enumerate(answer["deployment"]["policies"]):
        parts = [small["policies"][i], large["policies"][i]]
        assert policy["requests"] == total
        assert policy["cost_usd"] == pytest.approx(sum(p["cost_usd"] for p in parts), abs=1e-5)
        assert policy["output_tokens"] == sum(p["output_tokens"] for p in parts)
        assert policy["settled"] and policy["rounds"] == 1  # both pools serve throughout
        assert all(p["moved_in"] == p["moved_out"] == 0 for p in parts)


def test_a_pool_scaled_to_zero_sends_auto_to_the_other_pool_not_to_an_error(
        short_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The router's reroute: the large pool has no instance, its long prompts go to the
    small model and are served there; the deployment refuses none and pays for no large
    instance."""
    root = pooled_root(tmp_path, "{ min = 0, max = 1, desired = 0 }")
    answer = pools_answer(capsys, "--root", str(root), "--env", "zero", "--trace",
                          str(short_trace), "--policy", "fixed")
    small, large = answer["pools"]["small"], answer["pools"]["large"]
    share = large["requests"]
    assert share > 0
    assert large["policies"][0]["moved_out"] == share == small["policies"][0]["moved_in"]
    assert large["policies"][0]["requests"] == 0 and large["policies"][0]["cost_usd"] == 0
    assert small["policies"][0]["requests"] == answer["requests"]
    deployment = answer["deployment"]["policies"][0]
    assert deployment["refused"] == 0 and deployment["completed"] == answer["requests"]
    assert deployment["rounds"] == 2 and deployment["settled"]


def test_a_request_both_pools_refuse_is_refused_once_not_moved_back(
        short_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = pooled_root(tmp_path, "{ min = 0, max = 1, desired = 0 }")
    answer = pools_answer(capsys, "--root", str(root), "--env", "zero", "--trace",
                          str(short_trace), "--policy", "fixed", "--min-size", "0",
                          "--desired", "0", "--max-size", "1")
    deployment = answer["deployment"]["policies"][0]
    assert deployment["requests"] == deployment["refused"] == answer["requests"]
    moved = {n: p["policies"][0] for n, p in answer["pools"].items()}
    # Each pool's own requests went to the other, which refused them too.
    assert moved["small"]["moved_out"] == answer["pools"]["small"]["requests"]
    assert moved["large"]["moved_in"] == answer["pools"]["small"]["requests"]
    assert sum(p["requests"] for p in moved.values()) == answer["requests"]


def test_spot_outages_move_requests_between_pools_and_lose_none(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Single instances interrupted often: every request is counted once, in the pool that
    last took it."""
    answer = pools_answer(capsys, "--root", str(REPO), "--env", "dev-pools", "--policy",
                          "fixed", "--spot-interruptions", "20", "--seed", "3",
                          "--duration", "900", "--shape", "constant", "--rate", "4")
    deployment = answer["deployment"]["policies"][0]
    pools = [p["policies"][0] for p in answer["pools"].values()]
    assert sum(p["moved_in"] for p in pools) == sum(p["moved_out"] for p in pools) > 0
    assert sum(p["requests"] for p in pools) == deployment["requests"] == answer["requests"]
    assert deployment["completed"] + deployment["refused"] + deployment["cut_off"] \
        == answer["requests"]


def test_one_pools_instance_model_or_profile_needs_pool(
        short_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate("--env", "dev-pools", "--trace", str(short_trace), "--instance-type",
                    "g5.2xlarge", "--no-plot") == 2
    assert "--instance-type change one pool: add --pool NAME (large, small)" in \
        capsys.readouterr().err


def test_every_pool_gets_its_own_plot_and_series(
        short_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, series = tmp_path / "timeline.png", tmp_path / "series.csv"
    if not plot.available():
        pytest.skip("matplotlib is not installed")
    assert simulate("--env", "dev-pools", "--trace", str(short_trace), "--policy", "fixed",
                    "--plot", str(png), "--csv", str(series), "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    for pool in ("small", "large"):
        assert answer["pools"][pool]["files"] == {
            "plot": str(tmp_path / f"timeline-{pool}.png"),
            "csv": str(tmp_path / f"series-{pool}.csv")}
        assert (tmp_path / f"timeline-{pool}.png").stat().st_size > 0
        with (tmp_path / f"series-{pool}.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert sum(int(r["requests"]) for r in rows) == answer["pools"][pool]["requests"]


def test_a_pool_that_is_not_there_is_named_with_those_that_are(
        short_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate("--env", "dev-pools", "--pool", "medium", "--trace", str(short_trace),
                    "--no-plot") == 2
    assert "deploys the pools large, small: not 'medium'" in capsys.readouterr().err
