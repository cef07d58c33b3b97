"""One engine's continuous batching, step by step, the way vLLM's scheduler does it.

A step has a token budget (`max_num_batched_tokens`). The running sequences come
first, in the order they were admitted: each decoding sequence takes one token, a
sequence still prefilling takes the next chunk of its prompt that the budget allows
(chunked prefill). What budget is left admits waiting requests, first come first
served, while fewer than `max_num_seqs` run and the KV cache has room for the chunk
each would compute. Every token computed takes one KV-cache slot until its sequence
ends. A sequence whose step completes its prompt samples its first token at the end
of that step; a decoding sequence samples one more. A running sequence that would
need a slot when none is free preempts the most recently admitted one, which loses
its cache and waits at the head of the queue to recompute its prompt and what it had
generated (vLLM's recompute preemption); like vLLM's scheduler, a step that had to
preempt admits no one.

KV slots are counted in tokens, not in 16-token blocks: the difference is at most a
block per sequence, small against the caches of the GPUs the simulator sizes.

Most steps of a lightly loaded engine are pure decode, and nothing about the next one
is new: the same sequences, one token each. `plan_run` plans such steps together as a
`DecodeRun` while nothing can change them: no request waits, no prompt is being
prefilled, no sequence finishes before the run's last step and the cache holds every
step's tokens. Each step's time is still the service model's for that step's load,
added up in the same order (`simulator.service.decode_ends`), so a run ends at the very
float that stepping one at a time reaches. Profiling an hour of traffic found 96 steps
per request and the per-step bookkeeping (planning, the load, completing) 85% of the
run's time; in a run a step is a few float operations. What reads the engine mid-run
first applies the steps that have ended (`advance`), so it sees what stepping one at a
time would show.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from simulator.service import ServiceModel, StepLoad, decode_ends
from simulator.traffic import Arrival


@dataclass(slots=True, eq=False)  # identity: the scheduler looks sequences up in its lists
class Sequence:
    """One request inside a replica."""

    arrival: Arrival
    id: int
    to_prefill: int = 0  # prompt tokens (plus, after a preemption, those generated before it)
    computed: int = 0  # tokens whose KV is in the cache
    generated: int = 0  # output tokens sampled so far
    first_token_s: float | None = None
    preemptions: int = 0
    running: bool = False  # in the replica's running list (checked per step: no list scans)

    def __post_init__(self) -> None:
        self.to_prefill = self.arrival.prompt_tokens

    @property
    def prefilling(self) -> bool:
        return self.computed < self.to_prefill

    @property
    def done(self) -> bool:
        return self.generated >= self.arrival.output_tokens


@dataclass(frozen=True, slots=True)
class Finished:
    """A request the replica completed, with its timings (absolute simulated seconds)."""

    arrival: Arrival
    first_token_s: float
    finished_s: float
    preemptions: int


@dataclass
class Step:
    """The tokens one step computes, per sequence, and how long it takes."""

    chunks: list[tuple[Sequence, int]]
    load: StepLoad
    duration_s: float


@dataclass
class DecodeRun:
    """Pure-decode steps back to back, planned together (`Replica.plan_run`): every step
    has the first one's chunks, one token for each running sequence."""

    step: Step  # the first step, as `Replica.plan` made it
    ends: list[float]  # when each step ends, absolute simulated seconds
    applied: int = 0  # steps whose tokens the sequences already hold

    @property
    def end_s(self) -> float:
        return self.ends[-1]


@dataclass
class Replica:
    """The scheduler state of one engine."""

    service: ServiceModel
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    max_model_len: int | None = None  # prompt + max_tokens beyond it is refused (400)
    # Latency outside the engine's steps (the request's way in, the answer's way out): added
    # to each request's first token and end, never to a step. A measured profile has it
    # (`simulator.profile`); the roofline models the GPU only, and has none.
    request_s: float = 0.0
    waiting: deque[Sequence] = field(default_factory=deque)
    running: list[Sequence] = field(default_factory=list)
    kv_capacity: int = 0
    kv_used: int = 0
    first_tokens: list[float] = field(default_factory=list)  # TTFTs since the agent last read
    _next_id: int = 0

    def __post_init__(self) -> None:
        self.kv_capacity = self.kv_capacity or self.service.kv_tokens

    @property
    def outstanding(self) -> int:
        """Requests in the engine, running or waiting: what the load balancer counts."""
        return len(self.running) + len(self.waiting)

    @property
    def kv_usage(self) -> float:
        return self.kv_used / self.kv_capacity if self.kv_capacity else 0.0

    def submit(self, arrival: Arrival) -> bool:
        """Queue a request; False when vLLM would refuse it with a 400: longer than the
        engine's context, or than its whole KV cache."""
        length = arrival.prompt_tokens + arrival.output_tokens
        if length > self.kv_capacity or (self.max_model_len and length > self.max_model_len):
            return False
        self.waiting.append(Sequence(arrival, self._next_id))
        self._next_id += 1
        return True

    def plan(self) -> Step | None:
        """The next step's tokens, or None when there is nothing to do."""
        budget = self.max_num_batched_tokens
        chunks: list[tuple[Sequence, int]] = []
        preempted = False
        for seq in list(self.running):
            if budget == 0 or not seq.running:
                break  # out of budget, or preempted (with every newer one) to make room
            left = seq.to_prefill - seq.computed  # `prefilling`, inlined: this loop is hot
            take = min(left, budget) if left > 0 else 1
            while self.kv_used + take > self.kv_capacity and self._preempt_newest(seq):
                preempted = True
            if not seq.running:
                preempted = True
                break  # it was the newest itself, and nothing else could make room
            chunks.append((seq, take))
            self.kv_used += take
            budget -= take
        if not preempted:  # as vLLM: no admissions in a step that had to preempt
            self._admit(chunks, budget)
        if not chunks:
            return None
        load = _load(chunks)
        return Step(chunks, load, self.service.step_s(load))

    def plan_run(self, now_s: float, horizon_s: float = math.inf) -> Step | DecodeRun | None:
        """The next step from `now_s` and, when it is pure decode with no request waiting,
        the pure-decode steps after it, up to the first that finishes a sequence, the last
        the cache has room for, or the first that ends at or after `horizon_s` (the
        simulation's next arrival: steps planned past it are wasted if it comes here)."""
        step = self.plan()
        if step is None or self.waiting or step.load.prefill_tokens:
            return step
        seqs = len(step.chunks)
        end = now_s + step.duration_s
        count = min(min(s.arrival.output_tokens - s.generated for s in self.running),
                    1 + (self.kv_capacity - self.kv_used) // seqs)
        if count < 2 or end >= horizon_s or seqs < len(self.running):
            return step
        context = sum(seq.computed for seq, _ in step.chunks) + seqs  # after the first step
        ends = [end, *decode_ends(self.service, seqs, context, end, count - 1, horizon_s)]
        return DecodeRun(step, ends)

    def advance(self, run: DecodeRun, steps: int) -> None:
        """Apply `steps` more steps of the run, never its last (`complete_run`): each
        sequence holds a token more a step, and the cache the next step's token, which
        is taken when that step is planned."""
        for seq, _ in run.step.chunks:
            seq.computed += steps
            seq.generated += steps
        self.kv_used += steps * len(run.step.chunks)
        run.applied += steps

    def complete_run(self, run: DecodeRun, now_s: float) -> list[Finished]:
        """Apply a run whose last step ended at `now_s`."""
        self.advance(run, len(run.ends) - 1 - run.applied)
        return self.complete(run.step, now_s)

    def _admit(self, chunks: list[tuple[Sequence, int]], budget: int) -> None:
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            take = min(seq.to_prefill - seq.computed, budget)
            if self.kv_used + take > self.kv_capacity:
                return
            self.waiting.popleft()
            self.running.append(seq)
            seq.running = True
            chunks.append((seq, take))
            self.kv_used += take
            budget -= take

    def _preempt_newest(self, needing: Sequence) -> bool:
        """Free the most recently admitted sequence's cache; False when only `needing` runs."""
        victim = self.running[-1]
        if victim is needing and len(self.running) == 1:
            return False
        self.running.pop()
        victim.running = False
        self.kv_used -= victim.computed
        victim.to_prefill = victim.arrival.prompt_tokens + victim.generated
        victim.computed = 0
        victim.preemptions += 1
        self.waiting.appendleft(victim)
        return victim is not needing

    def complete(self, step: Step, now_s: float) -> list[Finished]:
        """Apply a step that ended at `now_s`: cache filled, tokens sampled, sequences done."""
        finished: list[Finished] = []
        for seq, take in step.chunks:
            seq.computed += take
            if seq.computed < seq.to_prefill:
                continue  # a chunk of a longer prompt: nothing sampled yet
            seq.generated += 1
            if seq.first_token_s is None:
                seq.first_token_s = now_s + self.request_s
                self.first_tokens.append(seq.first_token_s - seq.arrival.at_s)
            if seq.generated >= seq.arrival.output_tokens:
                self.running.remove(seq)
                seq.running = False
                self.kv_used -= seq.computed
                finished.append(Finished(seq.arrival, seq.first_token_s, now_s + self.request_s,
                                         seq.preemptions))
        return finished


def _load(chunks: list[tuple[Sequence, int]]) -> StepLoad:
    decode = [seq.computed for seq, _ in chunks if seq.computed >= seq.to_prefill]
    prefill = [(seq.computed, take) for seq, take in chunks if seq.computed < seq.to_prefill]
    tokens = sum(take for _, take in prefill)
    # Mean position of the prefilled tokens: a chunk [c, c + k) averages c + k / 2.
    position = sum(take * (start + take / 2) for start, take in prefill)
    return StepLoad(decode_seqs=len(decode),
                    decode_context=sum(decode) / len(decode) if decode else 0.0,
                    prefill_tokens=tokens,
                    prefill_context=position / tokens if tokens else 0.0)
