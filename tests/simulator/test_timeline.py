"""A simulated run binned over time: instance phases, queues, latency and SLO share, and the CSV."""

from __future__ import annotations

import csv
import statistics
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from simulator.replica import Finished
from simulator.report import Slo, summarise
from simulator.sim import InstanceSample, Outcome
from simulator.timeline import Interval, Timeline, timeline, write_timeline_csv
from simulator.traffic import Arrival
from tests.helpers.sim import instance, scaled_run

SLO = Slo(ttft_s=2.0, tpot_s=0.1)


def done(at_s: float, ttft_s: float, output_tokens: int = 11, tpot_s: float = 0.05) -> Finished:
    first = at_s + ttft_s
    return Finished(Arrival(at_s, 50, output_tokens), first,
                    first + tpot_s * (output_tokens - 1), preemptions=0)


def column(line: Timeline, key: str) -> list[Any]:
    return [getattr(i, key) for i in line.intervals]


def test_an_instance_launches_from_its_request_until_it_serves() -> None:
    """Asked for at 30 s, serving from 150 s: half of bin 0, all of bin 1, half of bin 2."""
    out = Outcome(instances=[instance(0), instance(1, requested_s=30, ready_s=150)],
                  end_s=240)
    line = timeline("p", out, [], SLO)
    assert column(line, "launching") == pytest.approx([0.5, 1.0, 0.5, 0.0])
    assert column(line, "serving") == pytest.approx([1.0, 1.0, 1.5, 2.0])
    assert column(line, "draining") == pytest.approx([0.0] * 4)


def test_a_deregistered_instance_drains_until_it_terminates() -> None:
    """Deregistered at 90 s (a scale-in or a spot interruption), gone at 150 s."""
    out = Outcome(instances=[instance(0), instance(1, deregistered_s=90, terminated_s=150)],
                  end_s=180)
    line = timeline("p", out, [], SLO)
    assert column(line, "serving") == pytest.approx([2.0, 1.5, 1.0])
    assert column(line, "draining") == pytest.approx([0.0, 0.5, 0.5])


def test_an_instance_removed_while_launching_never_serves() -> None:
    out = Outcome(instances=[instance(0), instance(1, requested_s=30, ready_s=None,
                                                   deregistered_s=90, terminated_s=90)],
                  end_s=120)
    line = timeline("p", out, [], SLO)
    assert column(line, "launching") == pytest.approx([0.5, 0.5])
    assert column(line, "serving") == pytest.approx([1.0, 1.0])
    assert column(line, "draining") == pytest.approx([0.0, 0.0])


def test_the_short_last_bin_averages_instances_over_what_it_covers() -> None:
    arrivals = [Arrival(at, 50, 10) for at in (10, 125, 130, 140)]
    out = Outcome(instances=[instance(0)], end_s=150)
    line = timeline("p", out, arrivals, SLO)
    assert [(i.start_s, i.end_s) for i in line.intervals] == [(0, 60), (60, 120), (120, 150)]
    assert column(line, "serving") == pytest.approx([1.0, 1.0, 1.0])
    assert column(line, "requests") == [1, 0, 3]
    # The rate is over the full width: a sliver of a bin must not spike the plot's axis.
    assert column(line, "arrival_rate_per_s") == pytest.approx([1 / 60, 0, 3 / 60])


def test_the_p95_ttft_is_of_the_completed_requests_by_arrival_bin() -> None:
    """A request that arrived at 50 s and answered at 70 s belongs to bin 0."""
    early = [done(at_s=1 + i, ttft_s=0.1 * (i + 1)) for i in range(20)]
    late = done(at_s=50, ttft_s=20)
    out = Outcome(finished=[*early, late], instances=[instance(0)], end_s=120)
    line = timeline("p", out, [d.arrival for d in out.finished], SLO)
    ttfts = [0.1 * (i + 1) for i in range(20)] + [20]
    expected = statistics.quantiles(ttfts, n=20, method="inclusive")[18]
    assert line.intervals[0].ttft_p95_s == pytest.approx(expected)
    assert line.intervals[1].ttft_p95_s is None


def test_the_slo_share_counts_refused_and_cut_off_requests_as_misses() -> None:
    met = [done(5, 0.5), done(10, 1.0)]
    slow_first_token, slow_tokens = done(15, 3.0), done(20, 0.5, tpot_s=0.2)
    refused, cut_off = Arrival(25, 50, 10), Arrival(30, 50, 10)
    arrivals = [*(d.arrival for d in [*met, slow_first_token, slow_tokens]), refused, cut_off]
    out = Outcome(finished=[*met, slow_first_token, slow_tokens], refused=[refused], cut_off=1,
                  instances=[instance(0)], end_s=100)
    line = timeline("p", out, arrivals, SLO)
    assert column(line, "slo_met") == [pytest.approx(2 / 6), None]
    assert line.intervals[0].slo_met == summarise("p", out, SLO, 1.0).slo_attainment


def test_the_queue_is_the_deepest_fleet_wide_sample_in_the_bin() -> None:
    def sample(number: int, at_s: float, waiting: int) -> InstanceSample:
        return InstanceSample(number, at_s, 0.5, running=1, waiting=waiting, kv_usage=0.1)

    samples = [sample(0, 10, 3), sample(1, 10, 4), sample(0, 20, 6), sample(1, 20, 0),
               sample(0, 130, 0)]
    out = Outcome(samples=samples, instances=[instance(0), instance(1)], end_s=150)
    assert column(timeline("p", out, [], SLO), "queue") == [7, None, 0]


def test_a_bin_width_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        timeline("p", Outcome(), [], SLO, bin_s=0)


def test_a_run_with_no_requests_has_no_bins() -> None:
    assert timeline("p", Outcome(), [], SLO).intervals == []


def test_a_simulated_runs_bins_account_for_every_instance_second_and_request() -> None:
    out, arrivals = scaled_run()
    line = timeline("schedule", out, arrivals, SLO, bin_s=30)
    covered = [i.end_s - i.start_s for i in line.intervals]

    def seconds(key: str) -> float:
        return sum(float(v) * c for v, c in zip(column(line, key), covered, strict=True))

    launching = sum(i.ready_s - i.requested_s for i in out.instances if i.ready_s is not None)
    alive = sum((i.terminated_s if i.terminated_s is not None else out.end_s) - i.requested_s
                for i in out.instances)
    assert seconds("launching") == pytest.approx(launching) and launching == pytest.approx(120)
    assert seconds("serving") + seconds("launching") + seconds("draining") == pytest.approx(alive)
    assert line.intervals[2].launching == pytest.approx(2.0)  # both asked for at 60 s
    assert sum(column(line, "requests")) == len(arrivals)


def test_the_csv_has_one_row_per_policy_and_bin_with_empty_cells_for_gaps(
        tmp_path: Path) -> None:
    out, arrivals = scaled_run()
    lines = [timeline(name, out, arrivals, SLO) for name in ("first", "second")]
    path = write_timeline_csv(tmp_path / "series.csv", lines)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    names = [f.name for f in fields(Interval)]
    assert reader.fieldnames == ["policy", *names]
    assert len(rows) == 2 * len(lines[0].intervals)
    assert [r["policy"] for r in rows[:1]] + [r["policy"] for r in rows[-1:]] == ["first",
                                                                                   "second"]
    assert float(rows[0]["serving"]) == pytest.approx(lines[0].intervals[0].serving)
    empty = Outcome(instances=[instance(0)], end_s=120)
    gaps = write_timeline_csv(tmp_path / "gaps.csv", [timeline("p", empty, [], SLO)])
    with gaps.open(newline="") as handle:
        first = next(csv.DictReader(handle))
    assert (first["queue"], first["ttft_p95_s"], first["slo_met"]) == ("", "", "")
