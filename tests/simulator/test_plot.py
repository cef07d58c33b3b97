"""The figure of simulated runs over time: its panels, its bin widths, and a PNG on disk."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simulator import plot
from simulator.report import Slo
from simulator.sim import Outcome
from simulator.timeline import timeline
from tests.helpers.sim import instance, scaled_run

SLO = Slo(ttft_s=2.0, tpot_s=0.1)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("horizon_s", "bin_s"), [
    (0, 60), (3600, 60), (5 * 3600, 60), (5 * 3600 + 1, 120), (86_400, 300),
    (400 * 3600, 3600)])
def test_the_bin_width_keeps_a_run_within_about_300_steps(horizon_s: float,
                                                          bin_s: float) -> None:
    assert plot.plot_bin_s(horizon_s) == bin_s


def test_the_figure_has_four_panels_and_a_policy_per_legend_entry() -> None:
    out, arrivals = scaled_run()
    lines = [timeline(name, out, arrivals, SLO) for name in ("first", "second")]
    fig = plot.figure(lines, SLO)
    try:
        assert len(fig.axes) == 4
        labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        assert [label.split(":")[0] for label in labels] == ["first", "second"]
        assert all("SLO met" in label for label in labels)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_every_run_is_drawn_into_one_png(tmp_path: Path) -> None:
    out, arrivals = scaled_run()
    path = plot.write_plot(tmp_path / "timeline.png", [("a", out), ("b", out)], arrivals, SLO)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_a_run_without_requests_still_draws(tmp_path: Path) -> None:
    empty = Outcome(instances=[instance(0)], end_s=0)
    path = plot.write_plot(tmp_path / "empty.png", [("idle", empty)], [], SLO)
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_without_matplotlib_the_plot_raises_its_own_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises
    with pytest.raises(plot.PlotError, match="llmfleet\\[loadtest\\]"):
        plot.write_plot(tmp_path / "none.png", [("idle", Outcome())], [], SLO)
    assert not (tmp_path / "none.png").exists()
