"""Sizing a deployment of several pools: the traffic split as the router will split it.

A traffic mix (a length distribution, `llmfleet.core.lengths`, and a request rate) goes
through the alias's length rules (`llmfleet.core.routing`, the router's own code) request
by request over a seeded sample; each pool gets its share of the rate and the mean prompt
and output lengths of the requests routed to it, and is sized for them by the ordinary
search (`planner.sizing`): on the instance type the pool names, else the cheapest that
meets the SLO. Sizing a pool for its mean request is the planner's usual approximation (one
length pair per question); a split by length narrows each pool's spread, which is what
makes the mean closer to its requests than the whole mix's mean is to all of them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from llmfleet.core.lengths import LengthModel
from llmfleet.core.routing import LengthRule, by_length, ordered
from planner.catalog import ModelArch
from planner.sizing import Candidate, Question, by_cost, candidates, preferred

SAMPLES = 20_000  # requests drawn to split the mix: shares within ~0.5 points
INFLIGHT_SHARE = 0.75  # inflight-guard's target: this share of what one instance holds


class PoolPlanError(ValueError):
    """Pools and rules that cannot be sized together."""


@dataclass(frozen=True)
class PoolSpec:
    name: str
    arch: ModelArch
    model_id: str
    instance_type: str | None = None  # None: the cheapest that meets the SLO


@dataclass(frozen=True)
class PoolShare:
    pool: PoolSpec
    share: float  # of the requests
    input_len: int  # mean prompt tokens of its requests
    output_len: int
    max_len: int  # its longest drawn request, prompt and output

    @property
    def max_model_len(self) -> int:
        """The engine's max_model_len: twice its longest drawn request, in whole 1,024s (the
        router estimates prompt tokens from characters, and a tokenizer may count more),
        within the model's context."""
        doubled = math.ceil(2 * self.max_len / 1024) * 1024
        return min(doubled, self.pool.arch.max_position_embeddings)


@dataclass(frozen=True)
class PoolSizing:
    share: PoolShare
    question: Question
    best: Candidate | None
    why_not: str = ""

    @property
    def inflight_target(self) -> int | None:
        """inflight-guard's inflight_per_instance for this pool: three quarters of the
        requests one instance holds within the SLO."""
        if self.best is None:
            return None
        held = self.best.concurrency * self.best.replicas_per_instance
        return max(1, math.floor(held * INFLIGHT_SHARE))


def split(pools: Sequence[PoolSpec], rules: Sequence[LengthRule], lengths: LengthModel,
          samples: int = SAMPLES, seed: int = 0) -> list[PoolShare]:
    """Each pool's share of the requests and their mean lengths, routed by `rules` (rules
    name pools) with every pool serving.

    Raises:
        PoolPlanError: a rule names no pool, or a pool gets no request.
    """
    names = {p.name for p in pools}
    if unknown := sorted({r.model for r in rules} - names):
        raise PoolPlanError(f"rules name pools that are not given: {', '.join(unknown)}")
    tried = ordered(rules)
    rng = random.Random(seed)
    # requests, prompt tokens, output tokens, the longest request
    totals = {name: [0, 0, 0, 0] for name in names}
    for _ in range(samples):
        drawn = lengths.draw(rng)
        chosen = by_length(drawn.prompt_tokens, tried, frozenset(names))
        assert chosen is not None  # every pool serves, and there is one at least
        count = totals[chosen[0]]
        count[0] += 1
        count[1] += drawn.prompt_tokens
        count[2] += drawn.output_tokens
        count[3] = max(count[3], drawn.prompt_tokens + drawn.output_tokens)
    if idle := sorted(name for name, (n, *_) in totals.items() if n == 0):
        raise PoolPlanError(f"no request of this mix reaches pool(s) {', '.join(idle)}: "
                            "change the rules' bounds or the lengths")
    return [PoolShare(p, n / samples, math.ceil(prompt / n), math.ceil(output / n), longest)
            for p in pools for n, prompt, output, longest in [totals[p.name]]]


def size(shares: Sequence[PoolShare], base: Question) -> list[PoolSizing]:
    """Each pool sized for its share of `base.request_rate` and its mean lengths, with
    `base`'s SLO, market and settings."""
    assert base.request_rate is not None
    out = []
    for share in shares:
        q = replace(base, arch=share.pool.arch, input_len=share.input_len,
                    output_len=share.output_len, request_rate=base.request_rate * share.share)
        ranked = by_cost(c for c in candidates(q)
                         if share.pool.instance_type in (None, c.instance.name))
        best = preferred(ranked)
        why = "" if best else (ranked[0].why_not if ranked else
                               f"no instance type {share.pool.instance_type} in the catalogue")
        out.append(PoolSizing(share, q, best, why))
    return out
