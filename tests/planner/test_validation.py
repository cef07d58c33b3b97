"""The validation table, the fit/check split, the committed factors and the error they give."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from planner import catalog, efficiency, engines, validation
from planner.timing import Efficiency, EngineCosts


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


def _overall(rows: list[validation.Measurement]) -> validation.Score:
    return next(s for s in validation.scores(rows, efficiency.for_gpu) if s.group == "all")


def test_held_out_error_stays_within_what_benchmarks_md_claims() -> None:
    """BENCHMARKS.md's figures, a little above them: over every checking row, the median
    error on throughput and TPOT (10.6% and 10.8%, against a 10% target); over vLLM's (15%
    target); and the groups it names as the gaps (vLLM V1 rows, mixtures), so they can only
    get better."""
    rows = validation.load()
    overall = _overall(rows)
    assert overall.median["output_tok_s"] <= 11 and overall.median["tpot_ms"] <= 11
    vllm = _overall([r for r in rows if not r.trtllm])
    assert vllm.median["output_tok_s"] <= 15 and vllm.median["tpot_ms"] <= 15
    v1 = _overall([r for r in rows if engines.generation(r.engine) == engines.SERVING])
    assert v1.median["output_tok_s"] <= 55 and v1.median["tpot_ms"] <= 40
    mixtures = _overall([r for r in rows if catalog.model(r.model).num_experts])
    assert mixtures.median["output_tok_s"] <= 90


def test_a_row_the_model_refuses_counts_as_a_full_error() -> None:
    """A refused row was left out of every median, hiding the worst error there is."""
    rows = [r for r in validation.load() if r.id == "gpustack-qwen3-32b-h100-L270"]
    assert rows and not validation.predicted(rows[0], efficiency.for_gpu("H100-80G")).feasible
    errs = validation.errors(rows, efficiency.for_gpu)
    assert errs["refused"] == [1.0]
    assert errs["output_tok_s"] == [100.0] and errs["tpot_ms"] == [100.0]


def test_a_sweep_never_both_fits_and_checks() -> None:
    """Neighbouring points of one sweep (concurrency 18 and 22 of one report and shape) were
    split by a hash of each row: the check interpolated what the fit had seen."""
    sides: dict[str, set[bool]] = {}
    for row in validation.load():
        if row.fits_something:
            sides.setdefault(row.sweep, set()).add(row.for_fitting)
    assert all(len(side) == 1 for side in sides.values())
    assert len(sides) < len([r for r in validation.load() if r.fits_something])


def test_rows_no_fit_can_use_always_check() -> None:
    """Mixtures and tensor-parallel vLLM rows in the hash's share fitted nothing and were
    never checked either."""
    for row in validation.load():
        if not row.trtllm and (row.num_gpus > 1 or catalog.model(row.model).num_experts):
            assert not row.for_fitting, row.id


def test_the_engine_fit_charges_each_row_what_the_report_charges_it() -> None:
    """The fit charged vLLM's own server the per-sequence cost the report then left out."""
    row = next(r for r in validation.load() if r.id == "lambda-llama-3-8b-a100-80g-sharegpt-320")
    eff = efficiency.for_gpu(row.gpu)
    cheap = validation.predicted(row, eff, EngineCosts(per_sequence_s=0.0))
    costly = validation.predicted(row, eff, EngineCosts(per_sequence_s=0.001))
    assert cheap.output_tok_s == costly.output_tok_s  # not a server in the engine's loop
    inside = next(r for r in validation.load() if "+happy_vllm" in r.engine)
    assert validation.predicted(inside, eff, EngineCosts(per_sequence_s=0.001)).tpot_s > \
        validation.predicted(inside, eff, EngineCosts()).tpot_s


def test_a_model_with_no_fitted_factors_does_worse_than_the_fitted_one() -> None:
    rows = [r for r in validation.load() if not r.for_fitting and validation.comparable(r)]
    fitted = validation.errors(rows, efficiency.for_gpu)
    naive = validation.errors(rows, lambda _: Efficiency(
        prefill_mfu=1.0, decode_mfu=1.0, bandwidth=1.0, step_overhead_s=0.0))
    assert statistics.median(fitted["tpot_ms"]) < statistics.median(naive["tpot_ms"])
