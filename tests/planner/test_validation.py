"""The validation table, the fit/check split, the committed factors and the error they give."""

from __future__ import annotations

import statistics
from pathlib import Path

from planner import catalog, efficiency, validation
from planner.timing import Efficiency


def test_every_row_is_sourced_and_names_a_catalogued_gpu_and_model() -> None:
    rows = validation.load()
    assert len(rows) > 1000
    for row in rows:
        assert row.source.startswith("github.com/wbing520/ai-performance-engineering@")
        assert catalog.gpu(row.gpu) and catalog.model(row.model)
        assert row.measured["output_tok_s"] > 0


def test_fitting_and_checking_rows_are_apart_and_the_split_is_stable() -> None:
    rows = validation.load()
    fitting = {r.id for r in rows if r.for_fitting}
    share = len(fitting) / len(rows)
    assert 0.25 < share < 0.35
    assert fitting == {r.id for r in validation.load() if r.for_fitting}
    checked = {r.id for r in rows if not r.for_fitting}
    assert not fitting & checked


def test_the_committed_factors_are_what_the_fit_gives(tmp_path: Path) -> None:
    """Nobody tuned the table by hand: refitting reproduces it."""
    out = tmp_path / "efficiency.csv"
    efficiency.write(validation.fit_table(validation.load()), out)
    assert out.read_text() == efficiency.resources_path().read_text()


def test_held_out_error_stays_within_the_target() -> None:
    """The claim in BENCHMARKS.md: median error 15% or less on throughput and TPOT."""
    overall = next(s for s in validation.scores(validation.load(), efficiency.for_gpu)
                   if s.gpu == "all")
    assert overall.median["output_tok_s"] <= 15
    assert overall.median["tpot_ms"] <= 15


def test_a_model_with_no_fitted_factors_does_worse_than_the_fitted_one() -> None:
    rows = [r for r in validation.load() if not r.for_fitting and validation.comparable(r)]
    fitted = validation.errors(rows, efficiency.for_gpu)
    naive = validation.errors(rows, lambda _: Efficiency(
        prefill_mfu=1.0, decode_mfu=1.0, bandwidth=1.0, step_overhead_s=0.0))
    assert statistics.median(fitted["tpot_ms"]) < statistics.median(naive["tpot_ms"])
