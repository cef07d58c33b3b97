"""OLS fits of runtime and energy, and the correction of the efficiency factors."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from planner import calibrate, catalog
from planner.calibrate import CalibrationError, ols
from planner.memory import Precision
from planner.timing import Deployment, Efficiency, Workload, predict


def _synthetic(a: tuple[float, float, float], noise: float, n: int = 400,
               seed: int = 7) -> list[tuple[float, float, float]]:
    rng = random.Random(seed)
    out: list[tuple[float, float, float]] = []
    for _ in range(n):
        tokens_in, tokens_out = rng.randint(16, 4096), rng.randint(1, 1024)
        y = a[0] + a[1] * tokens_in + a[2] * tokens_out + rng.gauss(0, noise)
        out.append((tokens_in, tokens_out, y))
    return out


def test_ols_recovers_known_coefficients_through_noise() -> None:
    fit = ols(_synthetic((0.05, 2e-4, 0.02), noise=0.05))
    assert fit.intercept == pytest.approx(0.05, abs=0.02)
    assert fit.per_input == pytest.approx(2e-4, rel=0.05)
    assert fit.per_output == pytest.approx(0.02, rel=0.01)
    assert fit.r2 > 0.99
    assert fit.residual_rms == pytest.approx(0.05, rel=0.15)  # the noise we added
    assert fit(1000, 100) == pytest.approx(0.05 + 0.2 + 2.0, rel=0.01)


def test_noise_lowers_r_squared() -> None:
    clean, noisy = ols(_synthetic((1, 1e-3, 1e-2), 0.01)), ols(_synthetic((1, 1e-3, 1e-2), 5))
    assert noisy.r2 < clean.r2


def test_a_fit_needs_token_counts_that_vary() -> None:
    with pytest.raises(CalibrationError, match="do not vary independently"):
        ols([(128, 64, 1.0), (128, 64, 1.1), (128, 64, 0.9), (128, 64, 1.05)])
    with pytest.raises(CalibrationError, match="3 samples; a fit needs at least 4"):
        ols([(1, 2, 3), (2, 3, 4), (3, 5, 6)])


def test_the_plan_search_files_are_read_per_plan_and_concurrency(tmp_path: Path) -> None:
    requests = tmp_path / "requests.csv"
    lines = ["plan,concurrency,prompt_tokens,output_tokens,ttft_s,e2e_s"]
    lines += [f"a,4,{i},{o},0.1,{y}" for i, o, y in _synthetic((0.1, 1e-4, 0.03), 0.001, 50)]
    lines += ["b,1,10,10,0.1,0.5"]
    requests.write_text("\n".join(lines) + "\n")
    groups = calibrate.runtime_samples(requests)
    assert set(groups) == {("a", 4), ("b", 1)}
    assert ols(groups[("a", 4)]).per_output == pytest.approx(0.03, rel=0.01)
    profiles = tmp_path / "profiles.csv"
    profiles.write_text("plan,requests,mean_input_tokens,mean_output_tokens,energy_j\n"
                        "a,10,100,50,1000\na,10,200,50,\n")
    assert calibrate.energy_samples(profiles) == {"a": [(100.0, 50.0, 100.0)]}


def test_fits_correct_the_factor_that_bounds_decode() -> None:
    """Measurements made by a GPU that streams at half the assumed bandwidth."""
    dep = Deployment(catalog.model("Llama-3.1-8B"), catalog.gpu("A10G"), Precision.FP16)
    assumed = Efficiency()
    truth = replace(assumed, bandwidth=assumed.bandwidth / 2, prefill_mfu=0.2)
    samples = []
    for tokens_in in (128, 512, 1024, 2048):
        for tokens_out in (32, 128, 256):
            p = predict(dep, Workload(tokens_in, tokens_out, 1), truth)
            samples.append((tokens_in, tokens_out, p.e2e_s))
    fit = ols(samples)
    fixed = calibrate.correct(dep, assumed, fit, samples, concurrency=1)
    assert fixed.efficiency.bandwidth == pytest.approx(truth.bandwidth, rel=0.02)
    assert fixed.efficiency.prefill_mfu == pytest.approx(truth.prefill_mfu, rel=0.02)
    assert fixed.model_fit.per_output == pytest.approx(fit.per_output, rel=0.01)
