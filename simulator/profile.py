"""The measured-profile service model: a real engine's step times, fitted from the client.

`loadtest.probe` measures an OpenAI-compatible endpoint with requests whose steps it
knows the make-up of (a lone prompt asking for one token is one prefill step; a burst of
equal requests admitted together decodes in lockstep) and hands the simulator
`StepSample`s. `fit` finds the step time model

    step_s = base + per_decode_seq * decode_seqs + per_context_token * decode_seqs * context
             + per_prefill_token * prefill_tokens + per_prefill_pair * prefill_tokens * position

and, beside it, `request_s`: what a lone request's time has beyond its step (the HTTP
request, the API server's hand-over to the engine process, the answer's way back). The
decode samples are differences of two requests' times, so they hold no `request_s`; the
prefill samples are whole requests, so they hold one each. It is latency, not engine
time: the engine steps on while another request makes its way in or out, so the
simulator adds it to each request's times (`Replica.request_s`) and never to a step.
A first fit charged it to every step that prefills, as a step cost; under steady
traffic nearly every step admits a prompt, and the simulated engine came out slower than
the real one by that much a step.

The fit is least squares on relative error (a 5 ms step and a 500 ms step count alike),
with every coefficient kept at or above zero: a term the samples say is negative is
dropped and the rest refitted (a step never gets faster for holding more work). The
terms are the costs a step has: a fixed one (the scheduler, the launch of the forward
pass), one per sequence and one per token of context it attends to, one per prompt token
and one for prompt attention, which grows with the square of the prompt.

`MeasuredService` is that fit as a `simulator.service.ServiceModel`, with the KV-cache
size and scheduler limits the engine was started with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from llmfleet.core.invalid import problems
from llmfleet.core.wire.profile import EngineLimits, EngineProfile, StepFit, StepSample
from planner.calibrate import CalibrationError, least_squares
from simulator.replica import Replica
from simulator.service import StepLoad

TERMS = ("base_s", "request_s", "per_decode_seq_s", "per_context_token_s",
         "per_prefill_token_s", "per_prefill_pair_s")


class ProfileError(ValueError):
    """A profile file that cannot be read, or samples that cannot be fitted."""


def _features(sample: StepSample) -> tuple[float, ...]:
    load = load_of(sample)
    whole_request = 0.0 if load.decode_seqs else 1.0  # a lone request's time, not a difference
    return (1.0, whole_request, float(load.decode_seqs),
            load.decode_seqs * load.decode_context, float(load.prefill_tokens),
            load.prefill_tokens * load.prefill_context)


def load_of(sample: StepSample) -> StepLoad:
    return StepLoad(sample.decode_seqs, sample.decode_context, sample.prefill_tokens,
                    sample.prefill_context)


def fit(samples: Sequence[StepSample]) -> StepFit:
    """The step time model with the smallest relative error, every term >= 0.

    Raises:
        ProfileError: too few samples, or none that prefill or none that decode.
    """
    if len(samples) < len(TERMS):
        raise ProfileError(f"{len(samples)} samples; the fit needs at least {len(TERMS)}")
    if not any(s.prefill_tokens for s in samples) or not any(s.decode_seqs for s in samples):
        raise ProfileError("the samples need both prefill steps and decode steps")
    rows = [_features(s) for s in samples]
    # Relative error: divide each equation by what it measured.
    weighted = [[x / s.seconds for x in row] for row, s in zip(rows, samples, strict=True)]
    ones = [1.0] * len(samples)
    active = list(range(len(TERMS)))
    while True:
        try:
            solved = least_squares([[row[j] for j in active] for row in weighted], ones)
        except CalibrationError as exc:
            raise ProfileError(f"the samples do not determine the step time: {exc}") from None
        worst = min(range(len(active)), key=lambda k: solved[k])
        if solved[worst] >= 0 or len(active) == 1:
            break
        del active[worst]  # a negative cost: drop that term and refit the rest
    coefficients = [0.0] * len(TERMS)
    for j, value in zip(active, solved, strict=True):
        coefficients[j] = max(0.0, value)
    fitted = [sum(c * x for c, x in zip(coefficients, row, strict=True)) for row in rows]
    measured = [s.seconds for s in samples]
    mean = sum(measured) / len(measured)
    total = sum((y - mean) ** 2 for y in measured)
    sse = sum((f - y) ** 2 for f, y in zip(fitted, measured, strict=True))
    relative = math.sqrt(sum(((f - y) / y) ** 2 for f, y in zip(fitted, measured, strict=True))
                         / len(measured))
    return StepFit(**dict(zip(TERMS, coefficients, strict=True)),
                   r2=1 - sse / total if total > 0 else 1.0, relative_rms=relative)


@dataclass(frozen=True)
class MeasuredService:
    """A real engine's fitted step time; a `ServiceModel`."""

    step_fit: StepFit
    limits: EngineLimits

    @classmethod
    def from_profile(cls, profile: EngineProfile) -> MeasuredService:
        return cls(profile.fit, profile.limits)

    @property
    def kv_tokens(self) -> int:
        return self.limits.kv_tokens

    @property
    def request_s(self) -> float:
        """Each request's latency outside the engine's steps."""
        return self.step_fit.request_s

    def replica(self, max_model_len: int | None = None) -> Replica:
        """An engine with the scheduler limits the profiled engine ran with; its context
        length where the profile has none."""
        limits = self.limits
        return Replica(self, limits.max_num_seqs, limits.max_num_batched_tokens,
                       max_model_len=limits.max_model_len or max_model_len,
                       request_s=self.request_s)

    def step_s(self, load: StepLoad) -> float:
        f = self.step_fit
        time = f.base_s + f.per_decode_seq_s * load.decode_seqs
        time += f.per_context_token_s * load.decode_seqs * load.decode_context
        time += f.per_prefill_token_s * load.prefill_tokens
        return time + f.per_prefill_pair_s * load.prefill_tokens * load.prefill_context

    def sample_s(self, sample: StepSample) -> float:
        """What the fit says `sample` measured (a lone request's sample: with `request_s`)."""
        whole_request = 0.0 if sample.decode_seqs else self.request_s
        return self.step_s(load_of(sample)) + whole_request


def read_profile(path: Path) -> EngineProfile:
    """An engine profile from its JSON file.

    Raises:
        ProfileError: unreadable, not JSON, or not a profile (the message says where).
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror}") from None
    try:
        return EngineProfile.model_validate_json(text)
    except ValidationError as exc:
        found = "; ".join(problems(exc, "file")[:5])
        raise ProfileError(f"{path} is not an engine profile: {found}") from None


@dataclass(frozen=True)
class Steady:
    """One engine holding `concurrency` requests of fixed lengths, in steady state."""

    concurrency: int
    ttft_s: float
    tpot_s: float
    requests_s: float


def steady(service: MeasuredService, prompt_tokens: int, output_tokens: int,
           concurrency: int) -> Steady:
    """What the fitted step time predicts for `concurrency` requests always in flight.

    Every step decodes all of them; a request's prompt is computed once in its life of
    `output_tokens` steps, so the prompts of `concurrency / output_tokens` new requests
    join each step on average (every step, once that is 1 or more). A new request makes
    its way in (`request_s`), waits half a step, then its prompt's steps (chunks of the
    step budget) run beside the others' decodes.
    """
    c, p, o = concurrency, prompt_tokens, output_tokens
    context = p + o / 2
    budget = service.limits.max_num_batched_tokens
    share = min(1.0, c / o)  # of steps that carry some prefill
    per_step = min(max(1, round(c * p / o / share)), max(1, budget - c))  # within the budget
    prefill = StepLoad(c, context, per_step, p / 2)
    tpot = (share * service.step_s(prefill)
            + (1 - share) * service.step_s(StepLoad(c, context)))
    chunks = math.ceil(p / budget)
    in_engine = tpot / 2 + chunks * service.step_s(StepLoad(c - 1, context, min(p, budget),
                                                            p / 2))
    # A slot is held while the request is in the engine, not on its way in or out.
    return Steady(c, service.request_s + in_engine, tpot, c / (in_engine + (o - 1) * tpot))


def slo_capacity(service: MeasuredService, lengths: tuple[int, int], ttft_s: float,
                 tpot_s: float, margin: float = 0.8) -> Steady:
    """The most requests one engine holds with TTFT and TPOT within `margin` of the
    targets, as `group_policy.slo_concurrency` asks of the roofline (at least 1), and the
    requests/s it serves so. Bounded by `max_num_seqs` and by the KV cache."""
    prompt, output = lengths
    limits = service.limits
    most = min(limits.max_num_seqs, max(1, limits.kv_tokens // (prompt + output)))
    best = steady(service, prompt, output, 1)
    for concurrency in range(2, most + 1):
        guess = steady(service, prompt, output, concurrency)
        if guess.ttft_s > margin * ttft_s or guess.tpot_s > margin * tpot_s:
            break
        best = guess
    return best
