"""The validation table, the fit/check split, the committed factors and the error they give."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from planner import catalog, efficiency, engines, validation
from planner.timing import Efficiency


def test_every_row_is_sourced_and_names_a_catalogued_gpu_and_model() -> None:
    rows = validation.load()
    assert len(rows) > 3000
    for row in rows:
        assert re.match(r"github\.com/[\w.-]+/[\w.-]+@[0-9a-f]{7} \S", row.source), row.id
        assert catalog.gpu(row.gpu) and catalog.model(row.model)
        assert row.measured["output_tok_s"] > 0
    vllm = [r for r in rows if not r.trtllm]
    assert len(vllm) > 1500 and len({r.source_name for r in vllm}) >= 5
    assert {"A10G", "L4"} <= {r.gpu for r in vllm}


def test_fitting_and_checking_rows_are_apart_and_the_split_is_stable() -> None:
    rows = validation.load()
    fitting = {r.id for r in rows if r.for_fitting}
    share = len(fitting) / len(rows)
    assert 0.25 < share < 0.35
    assert fitting == {r.id for r in validation.load() if r.for_fitting}
    checked = {r.id for r in rows if not r.for_fitting}
    assert not fitting & checked


def test_the_committed_factors_and_engine_costs_are_what_the_fit_gives(tmp_path: Path) -> None:
    """Nobody tuned the tables by hand: refitting reproduces them."""
    out = tmp_path / "efficiency.csv"
    rows = validation.load()
    efficiency.write(validation.fit_table(rows), out)
    assert out.read_text() == efficiency.resources_path().read_text()
    costs = tmp_path / "engines.csv"
    engines.write(validation.fit_engines(rows, efficiency.loader(out)), costs)
    assert costs.read_text() == engines.resources_path().read_text()


def test_only_tensorrt_llm_rows_fit_the_gpu_factors() -> None:
    rows = validation.load()
    fitted = validation.fit_table([r for r in rows if r.trtllm])
    assert fitted == validation.fit_table(rows)  # the vLLM rows change nothing in them


def test_held_out_error_stays_within_the_target() -> None:
    """The claims in BENCHMARKS.md: median error 10% or less on throughput and TPOT over
    every checking row, 15% or less over vLLM's."""
    rows = validation.load()
    overall = next(s for s in validation.scores(rows, efficiency.for_gpu) if s.group == "all")
    assert overall.median["output_tok_s"] <= 10
    assert overall.median["tpot_ms"] <= 10
    vllm = next(s for s in validation.scores([r for r in rows if not r.trtllm],
                                             efficiency.for_gpu) if s.group == "all")
    assert vllm.median["output_tok_s"] <= 15
    assert vllm.median["tpot_ms"] <= 15


def test_a_model_with_no_fitted_factors_does_worse_than_the_fitted_one() -> None:
    rows = [r for r in validation.load() if not r.for_fitting and validation.comparable(r)]
    fitted = validation.errors(rows, efficiency.for_gpu)
    naive = validation.errors(rows, lambda _: Efficiency(
        prefill_mfu=1.0, decode_mfu=1.0, bandwidth=1.0, step_overhead_s=0.0))
    assert statistics.median(fitted["tpot_ms"]) < statistics.median(naive["tpot_ms"])
