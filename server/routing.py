"""Adaptive model selection: resolve the alias model (`auto`) to a served model.

A policy sees the parsed request and the models currently served by healthy
backends, and returns a `Decision`: the model and a short human reason, which
the router returns in response headers. Policies are one class each, chosen
by `PolicyName`; a cost/energy/quality-scored policy plugs in beside
`PromptLengthPolicy` without touching the proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from server.errors import NoHealthyBackend
from server.protocol import ParsedRequest
from server.settings import LengthRule, PolicyName


@dataclass(frozen=True, slots=True)
class Decision:
    model: str
    reason: str


class RoutingPolicy(Protocol):
    name: PolicyName

    def choose(self, request: ParsedRequest, available: frozenset[str]) -> Decision: ...


class PromptLengthPolicy:
    """Short prompts to the small model, long ones to the large.

    Rules are tried in order of their bound; the first whose
    `max_prompt_tokens` admits the prompt and whose model is served wins, and
    an unbounded rule catches the rest. A rule whose model is down is skipped
    so that traffic degrades to the next model rather than failing. With no
    rules at all the alias goes to the first served model (alphabetically),
    which is what a single-model deployment wants.
    """

    name = PolicyName.PROMPT_LENGTH

    def __init__(self, rules: list[LengthRule]) -> None:
        bounded = sorted((r for r in rules if r.max_prompt_tokens is not None),
                         key=lambda r: r.max_prompt_tokens or 0)
        self._rules = bounded + [r for r in rules if r.max_prompt_tokens is None]

    @property
    def targets(self) -> list[str]:
        return [r.model for r in self._rules]

    def choose(self, request: ParsedRequest, available: frozenset[str]) -> Decision:
        """Raises NoHealthyBackend when no candidate model is served."""
        tokens = request.prompt_tokens_estimate
        for rule in self._rules:
            bound = rule.max_prompt_tokens
            fits = bound is None or tokens <= bound
            if fits and rule.model in available:
                limit = "no bound" if bound is None else f"<= {bound}"
                return Decision(rule.model, f"prompt ~{tokens} tokens, rule {limit}")
        if not self._rules and available:
            model = min(available)
            return Decision(model, "no length rules; first served model")
        # Past every bound, or the fitting models are down: use the largest served.
        for rule in reversed(self._rules):
            if rule.model in available:
                return Decision(rule.model, f"prompt ~{tokens} tokens, fallback to served model")
        raise NoHealthyBackend("no healthy backend serves a model the routing policy can choose")


def build_policy(name: PolicyName, rules: list[LengthRule]) -> RoutingPolicy:
    if name is PolicyName.PROMPT_LENGTH:
        return PromptLengthPolicy(rules)
    raise ValueError(f"unknown routing policy {name!r}")  # pragma: no cover - enum is closed
