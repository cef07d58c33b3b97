"""Adaptive model selection: resolve the alias model (`auto`) to a served model.

A policy sees the parsed request and the models currently served by healthy
backends, and returns a `Decision`: the model and a short human reason, which
the router returns in the `x-llmfleet-route` response header and the access log.
Policies are one class each, chosen by `PolicyName`: `PromptLengthPolicy` by
prompt length, `ScoredPolicy` by predicted runtime, energy and quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from llmfleet.core.routing import LengthRule, by_length, ordered
from llmfleet.core.wire.scoring import ScoredModel
from server.errors import NoHealthyBackend
from server.protocol import ParsedRequest, RouteWeights
from server.settings import PolicyName, RouterSettings


@dataclass(frozen=True, slots=True)
class Decision:
    model: str
    reason: str


class RoutingPolicy(Protocol):
    name: PolicyName

    def choose(self, request: ParsedRequest, available: frozenset[str]) -> Decision: ...


class PromptLengthPolicy:
    """Short prompts to the small model, long ones to the large (`llmfleet.core.routing`
    says how the rules are tried). With no rules at all the alias goes to the first served
    model (alphabetically), which is what a single-model deployment wants.
    """

    name = PolicyName.PROMPT_LENGTH

    def __init__(self, rules: list[LengthRule]) -> None:
        self._rules = ordered(rules)

    @property
    def targets(self) -> list[str]:
        return [r.model for r in self._rules]

    def choose(self, request: ParsedRequest, available: frozenset[str]) -> Decision:
        """Raises NoHealthyBackend when no candidate model is served."""
        chosen = by_length(request.prompt_tokens_estimate, self._rules, available)
        if chosen is None:
            raise NoHealthyBackend("no healthy backend serves a model the routing policy "
                                   "can choose")
        return Decision(*chosen)


@dataclass(frozen=True, slots=True)
class Score:
    model: str
    runtime_s: float
    energy_j: float
    quality: float
    score: float = 0.0


class ScoredPolicy:
    """The served model with the lowest weighted score; deterministic and explained.

    For the request's prompt tokens and `max_tokens` (the default when it sets none),
    each candidate's runtime and energy come from its fitted linear costs, and its
    quality from configuration. Each criterion is normalised across the candidates to
    0 (best) .. 1 (worst), so that seconds, joules and quality weigh alike; the score
    is the weighted mean, the request's weights (`x-llmfleet-weights`) over the
    operator's. Ties go to the model name that sorts first.
    """

    name = PolicyName.SCORED

    def __init__(self, models: list[ScoredModel], weights: RouteWeights,
                 default_max_tokens: int) -> None:
        self._models = sorted(models, key=lambda m: m.model)
        self._weights = weights
        self._default_max_tokens = default_max_tokens

    def scores(self, request: ParsedRequest, available: frozenset[str]) -> list[Score]:
        """Every served candidate's score, lowest (best) first."""
        tokens_in = request.prompt_tokens_estimate
        tokens_out = request.max_tokens or self._default_max_tokens
        raw = [Score(m.model, m.runtime_s(tokens_in, tokens_out), m.energy_j(tokens_in, tokens_out),
                     m.quality) for m in self._models if m.model in available]
        w = request.weights or self._weights
        time = _normalised([s.runtime_s for s in raw])
        energy = _normalised([s.energy_j for s in raw])
        error = _normalised([-s.quality for s in raw])
        total = w.accuracy + w.energy + w.time
        scored = [Score(s.model, s.runtime_s, s.energy_j, s.quality,
                        (w.accuracy * a + w.energy * e + w.time * t) / total)
                  for s, a, e, t in zip(raw, error, energy, time, strict=True)]
        return sorted(scored, key=lambda s: (s.score, s.model))

    def choose(self, request: ParsedRequest, available: frozenset[str]) -> Decision:
        """Raises NoHealthyBackend when no scored model is served."""
        ranked = self.scores(request, available)
        if not ranked:
            raise NoHealthyBackend("no healthy backend serves a model the scored policy knows")
        listed = " ".join(f"{s.model}={s.score:.3f}" for s in ranked)
        source = "request" if request.weights else "operator"
        tokens_out = request.max_tokens or self._default_max_tokens
        return Decision(ranked[0].model,
                        f"scores {listed} (lower wins); {source} weights "
                        f"{request.weights or self._weights}; ~{request.prompt_tokens_estimate}"
                        f" prompt + {tokens_out} output tokens")


def _normalised(values: list[float]) -> list[float]:
    low, high = min(values, default=0.0), max(values, default=0.0)
    if high - low <= 1e-12 * max(abs(high), 1.0):
        return [0.0] * len(values)
    return [(v - low) / (high - low) for v in values]


def build_policy(settings: RouterSettings) -> RoutingPolicy:
    if settings.policy is PolicyName.PROMPT_LENGTH:
        return PromptLengthPolicy(settings.length_rules)
    if settings.policy is PolicyName.SCORED:
        w = settings.score_weights
        return ScoredPolicy(settings.scored_models, RouteWeights(w.accuracy, w.energy, w.time),
                            settings.default_max_tokens)
    raise ValueError(f"unknown routing policy {settings.policy!r}")  # pragma: no cover
