"""The figure of simulated runs over time: what each scaling policy did as the traffic moved.

Four panels share the time axis (minutes, or hours for runs over three hours): (a) the
trace's arrival rate, (b) instances serving per policy (solid) and launching (dashed),
(c) the deepest queue the agents saw, (d) the p95 TTFT of the requests that arrived in
each bin, against the SLO. A policy keeps one colour in every panel, and the legend
gives each policy's share of requests that met the SLO. The series are
`simulator.timeline`'s; the bins are 60 s up to five hours of run and wider beyond, so
that a day still reads as a line (about 300 steps) rather than a smear.

matplotlib is not a dependency of the router's install (`pip install 'llmfleet[loadtest]'`
brings it); without it `write_plot` raises `PlotError`, and `available` says so beforehand.
It is imported when a plot is drawn, headless (Agg), so that importing this module costs
nothing.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.report import Run, Slo
from simulator.timeline import Interval, Timeline, timeline
from simulator.traffic import Arrival

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

HOURS_FROM_S = 3 * 3600.0  # longer runs are drawn in hours
BIN_WIDTHS_S = (60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
MAX_BINS = 300
LAUNCHING_ALPHA = 0.55
NUDGE_SPREAD = 0.25  # instances


class PlotError(RuntimeError):
    """The plot cannot be drawn here (matplotlib is not installed)."""


def available() -> bool:
    """Whether matplotlib is installed, without importing it."""
    return importlib.util.find_spec("matplotlib") is not None


def write_plot(path: Path, runs: Sequence[tuple[str, Run]], arrivals: Sequence[Arrival],
               slo: Slo, *, bin_s: float | None = None) -> Path:
    """Draw every (policy, outcome) run of `arrivals` into one PNG at `path`; returns it.
    `bin_s` None picks the bin width from the run's length (`plot_bin_s`).

    Raises:
        PlotError: matplotlib is not installed.
    """
    return write_plot_each(path, [(name, out, arrivals) for name, out in runs], slo,
                           bin_s=bin_s)


def write_plot_each(path: Path, runs: Sequence[tuple[str, Run, Sequence[Arrival]]], slo: Slo,
                    *, bin_s: float | None = None) -> Path:
    """`write_plot` for runs each sent its own requests (a pool's, with what `auto` moved
    to it under that policy).

    Raises:
        PlotError: matplotlib is not installed.
    """
    if bin_s is None:
        horizon = max([0.0, *(max((a.at_s for a in sent), default=0.0) for _, _, sent in runs),
                       *(out.end_s for _, out, _ in runs)])
        bin_s = plot_bin_s(horizon)
    return plot_timelines(path, [timeline(name, out, sent, slo, bin_s)
                                 for name, out, sent in runs], slo)


def plot_bin_s(horizon_s: float) -> float:
    """The narrowest usual bin width that cuts `horizon_s` into at most `MAX_BINS` bins."""
    return next((w for w in BIN_WIDTHS_S if horizon_s / w <= MAX_BINS), BIN_WIDTHS_S[-1])


def plot_timelines(path: Path, timelines: Sequence[Timeline], slo: Slo) -> Path:
    """`write_plot` for timelines already binned (e.g. shared with the CSV); returns `path`.

    Raises:
        PlotError: matplotlib is not installed.
    """
    plt = _pyplot()
    fig = figure(timelines, slo)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def figure(timelines: Sequence[Timeline], slo: Slo) -> Figure:
    """The four panels; the caller saves and closes it.

    Raises:
        PlotError: matplotlib is not installed.
    """
    plt = _pyplot()
    fig: Figure
    fig, (rate, fleet, queue, ttft) = plt.subplots(
        4, 1, sharex=True, figsize=(11, 12), height_ratios=(1, 1.3, 1, 1.3),
        layout="constrained")
    scale, unit = _time_unit(timelines)
    colours = plt.get_cmap("tab10")
    _arrivals(rate, timelines, scale)
    for index, line in enumerate(timelines):
        if not line.intervals:  # a run without requests: nothing to draw but its legend
            continue
        colour = colours(index % 10)
        edges = _edges(line.intervals, scale)
        _fleet(fleet, line, edges, colour, _nudge(index, len(timelines)))
        queue.stairs(_values(line.intervals, "queue"), edges, color=colour, lw=1.5,
                     baseline=None)
        ttft.stairs(_values(line.intervals, "ttft_p95_s"), edges, color=colour, lw=1.5,
                    baseline=None)
    _decorate((rate, fleet, queue, ttft), timelines, slo, unit)
    _legend(fig, timelines, colours)
    return fig


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotError("matplotlib is not installed: pip install 'llmfleet[loadtest]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _time_unit(timelines: Sequence[Timeline]) -> tuple[float, str]:
    """Seconds per unit of the time axis, and its name."""
    end = max((t.intervals[-1].end_s for t in timelines if t.intervals), default=0.0)
    return (3600.0, "hours") if end > HOURS_FROM_S else (60.0, "minutes")


def _edges(intervals: Sequence[Interval], scale: float) -> list[float]:
    return [i.start_s / scale for i in intervals] + [i.end_s / scale for i in intervals[-1:]]


def _values(intervals: Sequence[Interval], key: str) -> list[float]:
    """One series, NaN where a bin has no value (matplotlib leaves a gap)."""
    values = (getattr(i, key) for i in intervals)
    return [math.nan if v is None else float(v) for v in values]


def _arrivals(ax: Axes, timelines: Sequence[Timeline], scale: float) -> None:
    """Every run had the same trace: draw the longest run's binning of it once."""
    longest = max(timelines, key=lambda t: len(t.intervals), default=None)
    if longest is None or not longest.intervals:
        return
    ax.stairs(_values(longest.intervals, "arrival_rate_per_s"),
              _edges(longest.intervals, scale), fill=True, color="#9aa5b1", alpha=0.8)


def _nudge(index: int, count: int) -> float:
    """How far to lift policy `index`'s instance counts so equal counts do not hide each
    other: policies spread over a quarter of an instance."""
    return 0.0 if count < 2 else (index / (count - 1) - 0.5) * NUDGE_SPREAD


def _fleet(ax: Axes, line: Timeline, edges: list[float], colour: Any, nudge: float) -> None:
    """Serving solid; serving plus launching dashed, only while an instance launches, so
    the gap between the two is the launch delay the policy waited out."""
    serving = [v + nudge for v in _values(line.intervals, "serving")]
    ax.stairs(serving, edges, color=colour, lw=2, baseline=None)
    asked = [s + i.launching if i.launching > 0 else math.nan
             for s, i in zip(serving, line.intervals, strict=True)]
    ax.stairs(asked, edges, color=colour, lw=1.5, ls="--", alpha=LAUNCHING_ALPHA, baseline=None)


def _decorate(axes: Sequence[Axes], timelines: Sequence[Timeline], slo: Slo,
              unit: str) -> None:
    from matplotlib.ticker import MaxNLocator

    rate, fleet, queue, ttft = axes
    bin_s = timelines[0].bin_s if timelines else 60.0
    _label(rate, "(a) traffic", "arrivals (requests/s)")
    _label(fleet, "(b) instances serving (solid), and with those launching (dashed); "
                  "policies nudged apart by up to 1/8 instance", "instances")
    _label(queue, "(c) requests waiting fleet-wide, deepest sample in the bin",
           "queued requests")
    _label(ttft, "(d) p95 time to first token of the requests arriving in the bin",
           "TTFT p95 (s)")
    rate.set_ylim(bottom=0)
    rate.set_xlim(left=0)
    fleet.set_ylim(bottom=0)
    fleet.yaxis.set_major_locator(MaxNLocator(integer=True))
    queue.set_yscale("symlog", linthresh=10)
    queue.set_ylim(bottom=0)
    ttft.set_yscale("log")
    ttft.axhline(slo.ttft_s, color="#c0392b", ls=":", lw=1.5, label=f"SLO {slo.ttft_s:g} s")
    ttft.legend(loc="upper right", fontsize=9)
    ttft.set_xlabel(f"{unit} since the trace started ({bin_s:g} s bins)")
    if not any(t.intervals for t in timelines):
        for ax in axes:
            ax.text(0.5, 0.5, "no requests", ha="center", va="center", transform=ax.transAxes)


def _label(ax: Axes, title: str, ylabel: str) -> None:
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _legend(fig: Figure, timelines: Sequence[Timeline], colours: Any) -> None:
    """One legend for the whole figure: a colour per policy, with its SLO attainment."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours(i % 10), lw=2.5) for i in range(len(timelines))]
    labels = [f"{t.policy}: SLO met {_attainment(t)}" for t in timelines]
    if handles:
        fig.legend(handles, labels, loc="outside upper center", ncols=min(len(handles), 3),
                   fontsize=10, frameon=False)


def _attainment(line: Timeline) -> str:
    requests = sum(i.requests for i in line.intervals)
    met = sum(i.slo_met * i.requests for i in line.intervals if i.slo_met is not None)
    return f"{met / requests:.1%}" if requests else "-"
