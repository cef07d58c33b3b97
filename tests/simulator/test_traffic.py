"""Traffic's door: time scaling, writing traces back, and the shipped example trace."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from simulator.traffic import (
    EXAMPLE_TRACE,
    Arrival,
    example,
    main,
    read_trace,
    scaled,
    synthetic,
    write_trace,
)

TRACE = [Arrival(0.0, 10, 1), Arrival(1.0, 20, 2), Arrival(3.0, 30, 3), Arrival(7.0, 40, 4)]


def test_speed_divides_every_time_and_keeps_the_lengths() -> None:
    assert scaled(TRACE, speed=2) == [Arrival(0.0, 10, 1), Arrival(0.5, 20, 2),
                                      Arrival(1.5, 30, 3), Arrival(3.5, 40, 4)]
    assert scaled(TRACE, speed=0.5)[-1] == Arrival(14.0, 40, 4)


def test_no_scaling_is_the_trace_itself_sorted() -> None:
    assert scaled(list(reversed(TRACE))) == TRACE


def test_a_rate_below_one_keeps_an_evenly_spread_subset() -> None:
    assert scaled(TRACE, rate=0.5) == [TRACE[1], TRACE[3]]
    assert len(scaled(TRACE * 25, rate=0.3)) == math.floor(100 * 0.3)


def test_a_rate_above_one_spreads_each_arrivals_copies_over_the_gap_to_the_next() -> None:
    doubled = scaled(TRACE, rate=2)
    assert [a.at_s for a in doubled] == [0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 7.0]
    assert [a.prompt_tokens for a in doubled] == [10, 10, 20, 20, 30, 30, 40, 40]
    assert len(scaled(TRACE, rate=1.5)) == 6


def test_scaling_keeps_a_poisson_trace_at_the_scaled_rate() -> None:
    arrivals = synthetic("constant", duration_s=3600, rate_per_s=4, workload="fixed:1:1")
    faster = scaled(arrivals, speed=2, rate=1.5)
    assert len(faster) == math.floor(len(arrivals) * 1.5)
    assert max(a.at_s for a in faster) <= 1800
    assert len(faster) / 1800 == pytest.approx(4 * 2 * 1.5, rel=0.03)
    assert [a.at_s for a in faster] == sorted(a.at_s for a in faster)


@pytest.mark.parametrize("factor", [0.0, -1.0, math.inf, math.nan])
def test_a_factor_that_is_not_positive_and_finite_is_refused(factor: float) -> None:
    with pytest.raises(ValueError, match="speed must be a positive finite number"):
        scaled(TRACE, speed=factor)
    with pytest.raises(ValueError, match="rate must be a positive finite number"):
        scaled(TRACE, rate=factor)


def test_a_written_trace_reads_back_exactly(tmp_path: Path) -> None:
    arrivals = synthetic("diurnal*bursts:60:10:4", duration_s=300, rate_per_s=3,
                         workload="lognormal:300:150", seed=5)
    path = tmp_path / "trace.csv"
    write_trace(arrivals, path)
    assert path.read_text().startswith("arrival_s,prompt_tokens,output_tokens\n")
    assert read_trace(path) == arrivals


def test_the_example_trace_is_an_hour_of_chat_at_four_or_so_requests_a_second() -> None:
    arrivals = read_trace(EXAMPLE_TRACE)
    assert EXAMPLE_TRACE.stat().st_size < 1_000_000
    assert 15_000 < len(arrivals) < 16_200  # the docstring's "about 15,600"
    assert arrivals[0].at_s >= 0 and arrivals[-1].at_s < 3600
    assert 4.0 < len(arrivals) / 3600 < 4.6
    assert statistics.median(a.prompt_tokens for a in arrivals) == pytest.approx(300, rel=0.05)
    assert statistics.median(a.output_tokens for a in arrivals) == pytest.approx(150, rel=0.05)


def test_the_example_trace_rises_and_falls_with_one_burst() -> None:
    arrivals = read_trace(EXAMPLE_TRACE)
    per_5_min = [sum(300 * i <= a.at_s < 300 * (i + 1) for a in arrivals) for i in range(12)]
    busiest = per_5_min.index(max(per_5_min))
    assert busiest == 6  # minutes 30 to 35: the burst
    assert per_5_min[0] < per_5_min[4] < per_5_min[8] and per_5_min[8] > per_5_min[11]
    assert per_5_min[6] > 1.4 * max(per_5_min[5], per_5_min[7])  # one burst, not a plateau


def test_the_example_trace_is_what_its_documented_command_generates(tmp_path: Path) -> None:
    regenerated = tmp_path / "example-trace.csv"
    assert main(["example", str(regenerated)]) == 0
    assert regenerated.read_bytes() == EXAMPLE_TRACE.read_bytes()
    assert read_trace(EXAMPLE_TRACE) == example()


def test_the_example_command_writes_to_stdout_by_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["example"]) == 0
    assert capsys.readouterr().out == EXAMPLE_TRACE.read_text()
