"""A simulated engine's continuous batching, step by step, on a service model with round numbers."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from planner.timing import decode_step_s, prefill_s
from simulator.replica import Finished, Replica
from simulator.service import RooflineService, StepLoad
from simulator.traffic import Arrival


@dataclass(frozen=True)
class Flat:
    """10 ms a step plus 1 ms per token, and a KV cache of `kv_tokens`."""

    kv_tokens: int = 10_000

    def step_s(self, load: StepLoad) -> float:
        return 0.010 + 0.001 * load.tokens


def drain(replica: Replica, start_s: float = 0.0) -> tuple[list[Finished], float]:
    """Step the replica until it is idle (bounded); what finished and when it went idle."""
    now, done = start_s, []
    for _ in range(100_000):
        step = replica.plan()
        if step is None:
            return done, now
        now += step.duration_s
        done += replica.complete(step, now)
    raise AssertionError("the replica never went idle")


def test_one_request_prefills_then_decodes_a_token_a_step() -> None:
    replica = Replica(Flat())
    replica.submit(Arrival(0.0, prompt_tokens=100, output_tokens=4))
    (done,), idle = drain(replica)
    assert done.first_token_s == pytest.approx(0.010 + 0.100)  # one step of 100 tokens
    assert done.finished_s == pytest.approx(0.110 + 3 * 0.011)  # three one-token steps
    assert idle == done.finished_s and replica.kv_used == 0


def test_a_long_prompt_is_prefilled_in_chunks_of_the_token_budget() -> None:
    replica = Replica(Flat(), max_num_batched_tokens=64)
    replica.submit(Arrival(0.0, prompt_tokens=200, output_tokens=1))
    (done,), _ = drain(replica)
    assert done.first_token_s == pytest.approx(3 * (0.010 + 0.064) + 0.010 + 0.008)


def test_decoding_sequences_share_a_step_with_a_new_prompt() -> None:
    replica = Replica(Flat(), max_num_batched_tokens=64)
    replica.submit(Arrival(0.0, 10, 5))
    first = replica.plan()
    assert first is not None
    replica.complete(first, first.duration_s)
    replica.submit(Arrival(0.0, 100, 5))
    mixed = replica.plan()
    assert mixed is not None
    assert [take for _, take in mixed.chunks] == [1, 63]  # the decode token, then the chunk
    assert (mixed.load.decode_seqs, mixed.load.prefill_tokens) == (1, 63)


def test_no_more_than_max_num_seqs_run_at_once() -> None:
    replica = Replica(Flat(), max_num_seqs=2)
    for _ in range(5):
        replica.submit(Arrival(0.0, 10, 3))
    step = replica.plan()
    assert step is not None and len(step.chunks) == 2 and len(replica.waiting) == 3
    replica.complete(step, step.duration_s)
    done, _ = drain(replica, step.duration_s)
    assert len(done) == 5 and not replica.running and not replica.waiting


def test_a_request_waits_while_the_cache_cannot_hold_its_prompt() -> None:
    replica = Replica(Flat(kv_tokens=150))
    replica.submit(Arrival(0.0, 100, 10))
    replica.submit(Arrival(0.0, 100, 10))
    step = replica.plan()
    assert step is not None and len(step.chunks) == 1 and len(replica.waiting) == 1
    replica.complete(step, step.duration_s)
    done, _ = drain(replica, step.duration_s)
    assert len(done) == 2
    assert done[1].first_token_s > done[0].finished_s  # admitted only once the first freed


def test_a_sequence_that_outgrows_the_cache_preempts_the_newest_which_recomputes() -> None:
    replica = Replica(Flat(kv_tokens=220))
    replica.submit(Arrival(0.0, 100, 30))
    replica.submit(Arrival(0.0, 100, 30))
    done, _ = drain(replica)
    assert sorted(d.preemptions for d in done) == [0, 1]
    assert all(d.finished_s > d.first_token_s for d in done)
    assert replica.kv_used == 0 and not replica.running and not replica.waiting


def test_a_request_longer_than_the_cache_is_refused() -> None:
    replica = Replica(Flat(kv_tokens=100))
    assert not replica.submit(Arrival(0.0, 90, 20))
    assert replica.submit(Arrival(0.0, 90, 10))


def test_the_roofline_step_agrees_with_the_planner_on_pure_steps() -> None:
    service = RooflineService.for_names("Llama-3.1-8B", "A10G")
    dep, eff = service.deployment, service.eff
    assert service.step_s(StepLoad(decode_seqs=32, decode_context=500)) == pytest.approx(
        decode_step_s(dep, eff, 32, 500)[0])
    assert service.step_s(StepLoad(prefill_tokens=2000, prefill_context=1000)) == pytest.approx(
        prefill_s(dep, eff, 2000))
    assert service.kv_tokens == dep.memory().kv_tokens > 0


def test_random_traffic_keeps_the_cache_accounting_exact_and_admits_no_one_after_a_preemption(
        ) -> None:
    """Regression: a step that preempted still admitted waiting requests (the victim among
    them), which vLLM's scheduler does not; the cache's accounting must hold throughout."""
    rng = random.Random(1)
    steps = 0
    for _ in range(10):
        replica = Replica(Flat(kv_tokens=rng.randint(200, 2000)), max_num_seqs=rng.randint(1, 16),
                          max_num_batched_tokens=rng.randint(4, 512))
        now = 0.0
        for _ in range(600):
            if rng.random() < 0.3:
                replica.submit(Arrival(now, rng.randint(1, 300), rng.randint(1, 200)))
            was_running = {id(seq): seq.preemptions for seq in replica.running}
            preemptions = _preemptions(replica)
            step = replica.plan()
            if step is None:
                continue
            steps += 1
            if _preemptions(replica) > preemptions:  # this step had to preempt
                # Only sequences that ran before and still do: none admitted, none readmitted.
                assert all(was_running.get(id(seq)) == seq.preemptions for seq, _ in step.chunks)
            assert 0 <= replica.kv_used <= replica.kv_capacity
            now += step.duration_s
            replica.complete(step, now)
            assert replica.kv_used == sum(seq.computed for seq in replica.running)
    assert steps > 1000  # the traffic did exercise the scheduler


def _preemptions(replica: Replica) -> int:
    return sum(seq.preemptions for seq in (*replica.waiting, *replica.running))
