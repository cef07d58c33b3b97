"""The cheapest instance type, precision, tensor-parallel size and concurrency for an SLO.

Every catalogued instance is tried with every precision and every tensor-parallel size
its GPUs allow; an instance with more GPUs than the tensor-parallel group runs one
replica per group (vLLM's data parallelism). For each, the concurrency per replica
rises through powers of two (or is the one the user fixed) and the highest that still
meets the SLO is kept. The replicas and instances a request rate needs follow, and
candidates are ranked by what that fleet costs an hour, cheapest first, infeasible ones
last with the reason. Without a rate the fleet is sized for `DEFAULT_RATE` and the answer
says so: ranking by cost per token alone would recommend an 8-GPU instance whose tokens
are a few per cent cheaper to a user who needs one GPU's worth of them.

The recommendation is the cheapest fleet, except that costs within `CLOSE_COST` of it
count as a tie, which the smaller instance wins (a lower floor, finer scaling steps),
then the precision that needs no specially quantised checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from llmfleet.core.instances import Instance, Market, instances
from llmfleet.core.wire.sizing import AsgCapacity
from planner import catalog, efficiency, engines
from planner.catalog import ModelArch
from planner.memory import GIB, Precision, Settings
from planner.timing import Deployment, Prediction, Workload, predict

SEARCHED_PRECISIONS = (Precision.FP16, Precision.FP8, Precision.INT8, Precision.INT4)
HEADROOM = 2.0  # the Auto Scaling group may grow to this multiple of the steady-state count
DEFAULT_RATE = 1.0  # requests/s a question without a rate is sized for
CLOSE_COST = 0.05  # fleets within 5% of the cheapest tie; the smaller instance wins
# Ties between precisions: 16-bit serves any checkpoint, vLLM quantises to fp8 as it loads,
# int8 and int4 need a checkpoint quantised to them.
PRECISION_PREFERENCE = {Precision.FP32: 0, Precision.FP16: 0, Precision.BF16: 0,
                        Precision.FP8: 1, Precision.INT8: 2, Precision.INT4: 3}


@dataclass(frozen=True)
class Slo:
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    tokens_per_s: float | None = None  # per request, while it streams: 1000 / TPOT

    def misses(self, p: Prediction) -> str:
        """What this prediction misses, empty when it meets every target."""
        out = []
        if self.ttft_ms is not None and p.ttft_s * 1000 > self.ttft_ms:
            out.append(f"TTFT {p.ttft_s * 1000:.0f} ms > {self.ttft_ms:g} ms")
        if self.tpot_ms is not None and p.tpot_s * 1000 > self.tpot_ms:
            out.append(f"TPOT {p.tpot_s * 1000:.1f} ms > {self.tpot_ms:g} ms")
        if self.tokens_per_s is not None and 1 / p.tpot_s < self.tokens_per_s:
            out.append(f"{1 / p.tpot_s:.1f} tokens/s per request < {self.tokens_per_s:g}")
        return ", ".join(out)


@dataclass(frozen=True)
class Question:
    arch: ModelArch
    input_len: int
    output_len: int
    slo: Slo = field(default_factory=Slo)
    request_rate: float | None = None  # requests per second the fleet must serve
    concurrency: int | None = None  # fixed per replica (the --batch-size of older tools)
    precisions: tuple[Precision, ...] = SEARCHED_PRECISIONS
    market: Market = Market.ON_DEMAND
    settings: Settings = field(default_factory=Settings)
    offload: bool = False  # allow KV cache in host memory instead of queueing

    @property
    def rate(self) -> float:
        """Requests/s the fleet is sized for: the question's, else `DEFAULT_RATE`."""
        return DEFAULT_RATE if self.request_rate is None else self.request_rate


@dataclass(frozen=True)
class Candidate:
    instance: Instance
    precision: Precision
    tensor_parallel: int
    replicas_per_instance: int
    price_usd_hr: float | None
    prediction: Prediction
    concurrency: int = 0
    instances_needed: int = 1
    memory_per_gpu_gib: float = 0.0
    why_not: str = ""
    at_load: Prediction | None = None  # at the question's rate, spread over the fleet

    @property
    def feasible(self) -> bool:
        return not self.why_not

    @property
    def output_tok_s(self) -> float:
        """Per instance."""
        return self.prediction.output_tok_s * self.replicas_per_instance

    @property
    def fleet_usd_hr(self) -> float:
        return (self.price_usd_hr or math.inf) * self.instances_needed

    @property
    def usd_per_million_output(self) -> float:
        if not self.feasible or not self.output_tok_s or self.price_usd_hr is None:
            return math.inf
        return self.price_usd_hr / (self.output_tok_s * 3600) * 1e6

    @property
    def tok_s_per_usd_hr(self) -> float:
        return self.output_tok_s / self.price_usd_hr if self.price_usd_hr else 0.0


def tensor_parallel_sizes(arch: ModelArch, gpus: int) -> list[int]:
    """Powers of two up to the GPU count that split the attention and KV heads evenly."""
    sizes = [1 << k for k in range(gpus.bit_length()) if (1 << k) <= gpus]
    return [t for t in sizes if gpus % t == 0 and arch.num_attention_heads % t == 0
            and (arch.num_key_value_heads % t == 0 or t % arch.num_key_value_heads == 0)]


def _concurrencies(q: Question, dep: Deployment) -> list[int]:
    if q.concurrency:
        return [q.concurrency]
    top = dep.max_num_seqs
    return [1 << k for k in range(top.bit_length()) if (1 << k) <= top]


def evaluate(q: Question, inst: Instance, precision: Precision, tp: int) -> Candidate:
    gpu = catalog.gpu(inst.gpu)
    dep = Deployment(q.arch, gpu, precision, tp, settings=q.settings, engine=engines.serving())
    eff = efficiency.for_gpu(gpu.name)
    price = inst.price_usd_hr(q.market)
    base = Candidate(inst, precision, tp, inst.gpu_count // tp, price,
                     Prediction(feasible=False),
                     memory_per_gpu_gib=dep.memory().usable / GIB)
    if price is None:
        return replace(base, why_not=f"no {q.market} price in the catalogue")
    if unable := gpu.cannot_run(precision.value, q.arch.family):
        return replace(base, why_not=unable)
    best: Candidate | None = None
    miss = ""
    tried: list[tuple[int, Prediction]] = []  # every level up to the best one, in order
    for c in _concurrencies(q, dep):
        p = predict(dep, Workload(q.input_len, q.output_len, c), eff, offload=q.offload)
        if not p.feasible:
            return replace(base, prediction=p, why_not=p.why_not)
        tried.append((c, p))
        miss = q.slo.misses(p)
        if miss:
            break  # latency only grows with concurrency
        if best is None or p.output_tok_s > best.prediction.output_tok_s:
            best = replace(base, prediction=p, concurrency=c)
    if best is None:
        return replace(base, why_not=f"misses the SLO even at concurrency "
                                   f"{_concurrencies(q, dep)[0]}: {miss}")
    best = replace(best, instances_needed=_instances(q, best))
    return replace(best, at_load=_at_load(q, best, tried))


def _at_load(q: Question, c: Candidate, tried: list[tuple[int, Prediction]]) -> Prediction:
    """The fleet at the question's rate rather than flat out: each replica's share of the
    rate, served by the fewest concurrent requests (a power of two, up to the candidate's)
    that carry it, of the levels the search already predicted."""
    share = q.rate / (c.instances_needed * c.replicas_per_instance)
    for level, p in tried:
        if level >= c.concurrency or p.requests_s >= share:
            return p
    return c.prediction


def _instances(q: Question, c: Candidate) -> int:
    per_instance = c.prediction.requests_s * c.replicas_per_instance
    return max(1, math.ceil(q.rate / per_instance))


def candidates(q: Question) -> Iterator[Candidate]:
    known = {g.name for g in catalog.gpus().values()}
    for inst in instances().values():
        if inst.gpu not in known:
            continue
        for precision in q.precisions:
            for tp in tensor_parallel_sizes(q.arch, inst.gpu_count):
                yield evaluate(q, inst, precision, tp)


def by_cost(found: Iterable[Candidate]) -> list[Candidate]:
    """Cheapest fleet first, infeasible candidates last."""
    return sorted(found, key=lambda c: (not c.feasible, c.fleet_usd_hr, -c.output_tok_s,
                                        c.instance.name))


def search(q: Question) -> list[Candidate]:
    """Every candidate, the recommendation first (`preferred`), then cheapest fleet first."""
    ranked = by_cost(candidates(q))
    best = preferred(ranked)
    return ranked if best is None else [best, *(c for c in ranked if c is not best)]


def preferred(ranked: list[Candidate]) -> Candidate | None:
    """Of the fleets within `CLOSE_COST` of the cheapest (`ranked` cheapest first), the one
    on the cheapest instance, then at the most portable precision; None if none is feasible."""
    feasible = [c for c in ranked if c.feasible]
    if not feasible:
        return None
    close = [c for c in feasible if c.fleet_usd_hr <= feasible[0].fleet_usd_hr * (1 + CLOSE_COST)]
    return min(close, key=lambda c: (c.price_usd_hr or math.inf,
                                     PRECISION_PREFERENCE[c.precision], c.fleet_usd_hr))


def asg_capacity(c: Candidate) -> AsgCapacity:
    """Auto Scaling bounds: the steady-state count, and headroom for bursts above it."""
    need = c.instances_needed
    return AsgCapacity(min=need, max=max(need + 1, math.ceil(need * HEADROOM)), desired=need)
