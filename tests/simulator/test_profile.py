"""The measured-profile service model: fitting step times, and its file."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from llmfleet.core.wire.profile import EngineLimits, EngineProfile, StepFit, StepSample
from simulator.profile import (
    TERMS,
    MeasuredService,
    ProfileError,
    fit,
    load_of,
    read_profile,
    slo_capacity,
    steady,
)
from simulator.service import StepLoad

LIMITS = EngineLimits(max_num_seqs=64, max_num_batched_tokens=2048, kv_tokens=100_000,
                      max_model_len=2048)
TRUE = StepFit(base_s=0.004, request_s=0.002, per_decode_seq_s=0.0005,
               per_context_token_s=2e-7, per_prefill_token_s=5e-5, per_prefill_pair_s=1e-8,
               r2=1.0, relative_rms=0.0)


def samples(model: StepFit, noise: float = 0.0) -> list[StepSample]:
    """Lone requests' prefills of several lengths (the step and the request's latency) and
    decode steps of several batches and contexts, timed by `model`, each off by +-`noise`
    in turn."""
    truth = MeasuredService(model, LIMITS)
    out = []
    sign = itertools.cycle((1.0, -1.0))
    for prompt in (16, 64, 256, 1024, 2048):
        sample = StepSample(decode_seqs=0, decode_context=0, prefill_tokens=prompt,
                            prefill_context=prompt / 2, seconds=1.0, source=f"prefill {prompt}")
        out.append(sample.model_copy(update={
            "seconds": truth.sample_s(sample) * (1 + noise * next(sign))}))
    for seqs, context in itertools.product((1, 4, 16, 64), (40, 1000)):
        load = StepLoad(decode_seqs=seqs, decode_context=context)
        out.append(StepSample(decode_seqs=seqs, decode_context=context, prefill_tokens=0,
                              prefill_context=0,
                              seconds=truth.step_s(load) * (1 + noise * next(sign)),
                              source=f"decode {seqs}x{context}"))
    return out


def test_fit_recovers_the_coefficients_of_exact_step_times() -> None:
    found = fit(samples(TRUE))
    for term in TERMS:
        assert getattr(found, term) == pytest.approx(getattr(TRUE, term), rel=1e-6), term
    assert found.relative_rms == pytest.approx(0.0, abs=1e-9)
    assert found.r2 == pytest.approx(1.0)


def test_fit_reports_the_relative_error_of_noisy_samples() -> None:
    found = fit(samples(TRUE, noise=0.1))
    assert 0.02 < found.relative_rms < 0.15
    service = MeasuredService(found, LIMITS)
    load = StepLoad(decode_seqs=16, decode_context=500)
    assert service.step_s(load) == pytest.approx(MeasuredService(TRUE, LIMITS).step_s(load),
                                                 rel=0.15)


def test_a_term_the_samples_make_negative_is_dropped_not_kept_below_zero() -> None:
    # Decode steps that get cheaper with more context: the context term would fit negative.
    data = [s if not s.decode_seqs else s.model_copy(update={
        "seconds": 0.004 + 0.0005 * s.decode_seqs - 1e-7 * s.decode_seqs * s.decode_context
        + 0.0001 * (s.decode_context > 100)}) for s in samples(TRUE)]
    found = fit(data)
    assert found.per_context_token_s == 0.0
    assert all(getattr(found, t) >= 0 for t in TERMS)


def test_a_steps_time_holds_its_tokens_costs_and_never_the_requests_latency() -> None:
    service = MeasuredService(TRUE, LIMITS)
    decode = StepLoad(decode_seqs=4, decode_context=100)
    mixed = StepLoad(decode_seqs=4, decode_context=100, prefill_tokens=100,
                     prefill_context=50)
    assert service.step_s(decode) == pytest.approx(0.004 + 4 * 0.0005 + 4 * 100 * 2e-7)
    assert service.step_s(mixed) - service.step_s(decode) == pytest.approx(
        100 * 5e-5 + 100 * 50 * 1e-8)
    assert service.request_s == TRUE.request_s


def test_a_per_request_cost_charged_to_every_prefill_step_is_latency_instead() -> None:
    # Regression: the first fit charged what a lone request's time has beyond its step to
    # every step that prefills, so a busy simulated engine ran slower than the real one.
    service = MeasuredService(fit(samples(TRUE)), LIMITS)
    prefill = StepLoad(prefill_tokens=16, prefill_context=8)
    assert service.step_s(prefill) == pytest.approx(0.004 + 16 * 5e-5 + 16 * 8 * 1e-8)
    assert service.request_s == pytest.approx(0.002)


def test_fit_refuses_fewer_samples_than_terms() -> None:
    with pytest.raises(ProfileError, match="5 samples; the fit needs at least 6"):
        fit(samples(TRUE)[:5])


@pytest.mark.parametrize("kind", ["prefill", "decode"])
def test_fit_refuses_samples_of_one_kind_only(kind: str) -> None:
    data = [s for s in samples(TRUE) if s.source.startswith(kind)]
    data = (data * 2)[:max(len(data), len(TERMS))]
    with pytest.raises(ProfileError, match="both prefill steps and decode steps"):
        fit(data)


def test_fit_refuses_samples_that_all_have_the_same_make_up() -> None:
    one = samples(TRUE)
    data = [one[0]] * 6 + [one[-1]] * 6
    with pytest.raises(ProfileError, match="do not determine"):
        fit(data)


def test_a_profile_file_round_trips_and_runs_as_a_service(tmp_path: Path) -> None:
    data = samples(TRUE)
    profile = EngineProfile(model="m", endpoint="http://127.0.0.1:1",
                            measured_at="2026-12-06T00:00:00Z", limits=LIMITS, fit=fit(data),
                            samples=data)
    path = tmp_path / "profile.json"
    path.write_text(profile.model_dump_json())
    read = read_profile(path)
    assert read == profile
    service = MeasuredService.from_profile(read)
    assert service.kv_tokens == LIMITS.kv_tokens
    assert service.sample_s(data[0]) == pytest.approx(data[0].seconds)
    assert service.step_s(load_of(data[0])) < data[0].seconds


@pytest.mark.parametrize(("text", "says"), [
    ("{", "not an engine profile"),
    ('{"model": "m"}', "endpoint"),
])
def test_a_bad_profile_file_names_the_file_and_the_problem(tmp_path: Path, text: str,
                                                           says: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(ProfileError, match=says) as caught:
        read_profile(path)
    assert str(path) in str(caught.value)


def test_a_missing_profile_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read profile"):
        read_profile(tmp_path / "absent.json")


def test_more_requests_in_flight_serve_more_per_second_at_a_slower_pace() -> None:
    service = MeasuredService(TRUE, LIMITS)
    one, many = steady(service, 200, 50, 1), steady(service, 200, 50, 32)
    assert many.tpot_s > one.tpot_s and many.ttft_s > one.ttft_s
    assert many.requests_s > 5 * one.requests_s
    # One request alone: its way in, half a decode step's wait, its prefill step, then 49
    # decode steps.
    decode = service.step_s(StepLoad(1, 225))
    # Its slot is held in the engine only: not while on its way in or out.
    assert one.requests_s == pytest.approx(1 / (one.ttft_s - TRUE.request_s + 49 * one.tpot_s))
    assert decode < one.tpot_s < 2 * decode


def test_slo_capacity_is_the_most_in_flight_within_the_margin_of_both_targets() -> None:
    service = MeasuredService(TRUE, LIMITS)
    found = slo_capacity(service, (200, 50), ttft_s=2.0, tpot_s=0.02)
    assert found.tpot_s <= 0.8 * 0.02
    beyond = steady(service, 200, 50, found.concurrency + 1)
    assert beyond.tpot_s > 0.8 * 0.02 or beyond.ttft_s > 0.8 * 2.0
    loose = slo_capacity(service, (200, 50), ttft_s=100.0, tpot_s=100.0)
    assert loose.concurrency == LIMITS.max_num_seqs  # the scheduler's bound
    small = MeasuredService(TRUE, LIMITS.model_copy(update={"kv_tokens": 2500}))
    assert slo_capacity(small, (200, 50), ttft_s=100.0, tpot_s=100.0).concurrency == 10

