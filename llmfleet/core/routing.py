"""The prompt-length rules of the alias model: which model a prompt of some length goes to.

Shared by the router (`server.routing.PromptLengthPolicy`, on each request), and by whatever
predicts where traffic will land: the sizing of pools (`planner.pools`) splits a traffic
mix with the same rules, so the pools it sizes are the ones the router will feed.

Rules are tried from the smallest bound up; the first whose bound admits the prompt and
whose model is served wins, and a rule without a bound takes the rest. A rule whose model
is down is skipped, so that traffic degrades to the next model rather than failing; past
every bound (no unbounded rule), or with the fitting models down, the largest served
model of the rules takes it. With no rules the first served model (by name) does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field


class LengthRule(BaseModel):
    """Send prompts of at most `max_prompt_tokens` (estimated) to `model`.

    A rule without a bound catches everything longer than the bounded rules.
    """

    model: str
    max_prompt_tokens: int | None = Field(default=None, gt=0)


def ordered(rules: Iterable[LengthRule]) -> list[LengthRule]:
    """The order rules are tried in: bounded ones by their bound, then the unbounded."""
    listed = list(rules)
    bounded = sorted((r for r in listed if r.max_prompt_tokens is not None),
                     key=lambda r: r.max_prompt_tokens or 0)
    return bounded + [r for r in listed if r.max_prompt_tokens is None]


def by_length(tokens: int, rules: Sequence[LengthRule],
              available: frozenset[str]) -> tuple[str, str] | None:
    """The model for a prompt of `tokens` among the `available` ones, and why; None when
    no model the rules name is available. `rules` in the order `ordered` gives."""
    for rule in rules:
        bound = rule.max_prompt_tokens
        if (bound is None or tokens <= bound) and rule.model in available:
            limit = "no bound" if bound is None else f"<= {bound}"
            return rule.model, f"prompt ~{tokens} tokens, rule {limit}"
    if not rules and available:
        return min(available), "no length rules; first served model"
    for rule in reversed(rules):
        if rule.model in available:
            return rule.model, f"prompt ~{tokens} tokens, fallback to served model"
    return None
