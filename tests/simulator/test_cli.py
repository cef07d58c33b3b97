"""`llmfleet simulate`'s files and progress: the plot, the per-minute CSV, the lines on stderr."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

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
    root = tmp_path / "repo"
    (root / "environments").mkdir(parents=True)
    (root / "infrastructure").mkdir()
    shutil.copy(REPO / "infrastructure" / "variables.tf", root / "infrastructure")
    (root / "environments" / "pooled.tfvars").write_text(
        (REPO / "environments" / "dev.tfvars").read_text() + "warm_pool = { min_size = 1 }\n")
    assert simulate("--root", str(root), "--env", "pooled", "--trace", str(short_trace),
                    "--policy", "fixed", "--no-plot") == 0
    assert "warm pool is not simulated" in capsys.readouterr().err
    assert simulate("--trace", str(short_trace), "--policy", "fixed", "--no-plot") == 0
    assert "warm pool" not in capsys.readouterr().err  # dev has none


def test_each_pool_is_simulated_on_its_share_of_the_traffic(
        short_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """dev-pools: the small pool gets the prompts the routing's rules send it, the large one
    the rest; together, the whole trace."""
    assert simulate("--env", "dev-pools", "--trace", str(short_trace), "--no-plot") == 2
    assert "deploys the pools large, small: simulate one with --pool" in \
        capsys.readouterr().err
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
    root = tmp_path / "repo"
    (root / "environments").mkdir(parents=True)
    (root / "infrastructure").mkdir()
    shutil.copy(REPO / "infrastructure" / "variables.tf", root / "infrastructure")
    text = (REPO / "environments" / "dev-pools.tfvars").read_text()
    start = text.index("routing = {")
    end = text.index("\n}\n", start) + 3
    scored = ('routing = { policy = "scored", scored_models = [{ model = "qwen2.5-1.5b", '
              'quality = 0.5, runtime_s = { per_output_token = 0.01 }, energy_j = '
              '{ per_output_token = 1 } }] }\n')
    (root / "environments" / "scored.tfvars").write_text(text[:start] + scored + text[end:])
    assert simulate("--root", str(root), "--env", "scored", "--pool", "small", "--trace",
                    str(short_trace), "--no-plot") == 2
    assert "routes by the scored policy" in capsys.readouterr().err
