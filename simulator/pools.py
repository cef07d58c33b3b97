"""Several pools together: each pool's group on the requests the routing sends it, and
what `auto` moves from a pool with no serving instance to another pool's model.

The router chooses a model by the alias's length rules among the models served
(`llmfleet.core.routing`, the same code). When the chosen pool cannot serve before any
byte is answered (its load balancer has no healthy target: a pool scaled to zero, or
whose only instances are still launching or were interrupted), the router chooses once
more without that model (`server.service.CompletionService.reroute`) and sends the
request there; if that one fails too, the client gets the 503. That is what is simulated:
a request a pool refuses for want of a serving instance (`Outcome.unavailable`) is sent,
at the same instant, to the model the rules choose without the pool's own; a request so
moved is not moved again.

A pool's run depends on what the others move to it, and what it refuses can depend on
what it is sent (more load, other scaling). Each policy's runs are therefore repeated,
from every pool on its own share, until the requests moved between pools stop changing,
at most `MAX_ROUNDS` times; a run that does not settle says so. The deployment's figures
are the pools' together: a request moved and served counts once, where it was served.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

from llmfleet.core.routing import LengthRule, by_length
from simulator.compare import Prepared, ProgressFactory, Run, chosen, oracle_goal, run_policy
from simulator.report import Slo, Summary, summarise, summarise_parts
from simulator.traffic import Arrival

MAX_ROUNDS = 4


@dataclass(frozen=True)
class Pool:
    """One pool ready to run: its name, the model clients ask for, its group and engine."""

    name: str
    model: str
    prep: Prepared


@dataclass(frozen=True)
class PoolRun:
    """One pool's run under one policy, as the deployment saw it: `run` counts as refused
    only what no pool served (those it moved out were served, or refused, elsewhere)."""

    pool: str
    run: Run
    arrivals: list[Arrival]  # its share less what it moved out, and what was moved to it
    moved_in: int
    moved_out: int


@dataclass(frozen=True)
class DeploymentRun:
    """One policy over every pool."""

    policy: str
    pools: list[PoolRun]
    summary: Summary
    rounds: int
    settled: bool


def split(arrivals: Sequence[Arrival], rules: Sequence[LengthRule],
          models: dict[str, str]) -> dict[str, list[Arrival]]:
    """Each pool's share of `arrivals` (`models`: each pool's served model, by pool): the
    model the rules choose, every pool serving.

    Raises:
        ValueError: the rules choose no pool's model (rules naming none served).
    """
    shares: dict[str, list[Arrival]] = {name: [] for name in models}
    for arrival in arrivals:
        name = _route(arrival, rules, models)
        if name is None:
            raise ValueError("the routing's length rules name none of the pools' models")
        shares[name].append(arrival)
    return shares


def _route(arrival: Arrival, rules: Sequence[LengthRule], models: dict[str, str],
           down: str | None = None) -> str | None:
    """The pool whose model the rules choose for `arrival` among the pools' `models` (by
    pool), pool `down` left out; None when they choose none."""
    served = frozenset(model for name, model in models.items() if name != down)
    found = by_length(arrival.prompt_tokens, rules, served)
    return None if found is None else next(n for n, m in models.items() if m == found[0])


def simulate(pools: Sequence[Pool], shares: dict[str, list[Arrival]],
             rules: Sequence[LengthRule], slo: Slo, only: list[str] | None,
             oracle_target: float, progress: ProgressFactory | None = None
             ) -> list[DeploymentRun]:
    """Every chosen policy over every pool, with `auto`'s moves between pools (see the
    module's docstring); the oracle of each pool aims at the best its other policies
    reached."""
    names = chosen(pools[0].prep, only)
    done: dict[str, list[Run]] = {p.name: [] for p in pools}  # each pool's, for the oracle
    runs = []
    for policy in names:
        found = _policy(policy, pools, shares, rules, slo, oracle_target, done, progress)
        for pool_run in found.pools:
            done[pool_run.pool].append(pool_run.run)
        runs.append(found)
    return runs


def _policy(policy: str, pools: Sequence[Pool], shares: dict[str, list[Arrival]],
            rules: Sequence[LengthRule], slo: Slo, oracle_target: float,
            done: dict[str, list[Run]], progress: ProgressFactory | None) -> DeploymentRun:
    moved: dict[str, list[Arrival]] = {p.name: [] for p in pools}
    sent: dict[str, list[Arrival]] = {}
    runs: dict[str, Run] = {}
    rounds, settled = 0, False
    while rounds < MAX_ROUNDS and not settled:
        rounds += 1
        used = moved  # what this round's runs are sent
        for pool in pools:
            batch = sorted(shares[pool.name] + moved[pool.name], key=lambda a: a.at_s)
            if pool.name in runs and _same(batch, sent[pool.name]):
                continue  # nothing new moved to it: its run stands
            print(f"  pool {pool.name}" + (f", round {rounds}" if rounds > 1 else "") + ":",
                  file=sys.stderr)
            sent[pool.name] = batch
            target = oracle_goal(done[pool.name], oracle_target)
            runs[pool.name] = run_policy(pool.prep, policy, batch, slo, target, progress)
        moved = _moves(pools, runs, shares, rules)
        settled = all(_same(moved[p.name], used[p.name]) for p in pools)
    if not settled:
        print(f"  {policy}: the requests moved between pools still changed after {rounds} "
              "rounds; the last round is reported", file=sys.stderr)
    return _deployment(policy, pools, runs, shares, used, slo, rounds, settled)


def _moves(pools: Sequence[Pool], runs: dict[str, Run], shares: dict[str, list[Arrival]],
           rules: Sequence[LengthRule]) -> dict[str, list[Arrival]]:
    """Where `auto` sends each pool's own requests that it refused for want of an instance:
    the rules' choice among the other pools' models (a moved request is not moved again)."""
    models = {p.name: p.model for p in pools}
    moved: dict[str, list[Arrival]] = {p.name: [] for p in pools}
    for pool in pools:
        for arrival in _stranded(pool.name, runs, shares):
            to = _route(arrival, rules, models, down=pool.name)
            if to is not None:
                moved[to].append(arrival)
    return moved


def _stranded(pool: str, runs: dict[str, Run],
              shares: dict[str, list[Arrival]]) -> list[Arrival]:
    """The requests of `pool`'s own share that its run refused for want of an instance."""
    own = {id(a) for a in shares[pool]}
    return [a for a in runs[pool].outcome.unavailable if id(a) in own]


def _deployment(policy: str, pools: Sequence[Pool], runs: dict[str, Run],
                shares: dict[str, list[Arrival]], moved: dict[str, list[Arrival]], slo: Slo,
                rounds: int, settled: bool) -> DeploymentRun:
    """Each pool's run as the deployment saw it, and the deployment's: a request moved and
    refused at home counts where it was moved to. Unsettled, the last round's runs may
    disagree with the moves they were sent: a request moved whose home pool served it this
    time counts at home only, and one its home refused but was not moved stays refused there."""
    stranded = {id(a) for pool in pools for a in _stranded(pool.name, runs, shares)}
    real = {id(a) for batch in moved.values() for a in batch} & stranded
    pool_runs, parts = [], []
    for pool in pools:
        out = runs[pool.name].outcome
        arrived = {id(a) for a in moved[pool.name]}
        phantom = arrived - real  # moved here, yet served at home in this round
        own = {id(a) for a in shares[pool.name]}
        left = own & real  # moved out, counted where they went

        def keep(arrival: Arrival, drop: set[int] = phantom | left) -> bool:
            return id(arrival) not in drop

        kept = replace(out, finished=[d for d in out.finished if keep(d.arrival)],
                       refused=[a for a in out.refused if keep(a)],
                       unavailable=[a for a in out.unavailable if keep(a)])
        price = pool.prep.fleet.usd_per_hour
        sent = sorted([a for a in shares[pool.name] if id(a) not in left]
                      + [a for a in moved[pool.name] if id(a) in real], key=lambda a: a.at_s)
        pool_runs.append(PoolRun(pool.name, Run(policy, kept, summarise(policy, kept, slo, price)),
                                 sent, len(arrived & real), len(left)))
        parts.append((kept, price))
    return DeploymentRun(policy, pool_runs, summarise_parts(policy, parts, slo), rounds, settled)


def _same(one: Sequence[Arrival], other: Sequence[Arrival]) -> bool:
    """The same requests (the trace's own objects), in the same order."""
    return len(one) == len(other) and all(a is b for a, b in zip(one, other, strict=True))

