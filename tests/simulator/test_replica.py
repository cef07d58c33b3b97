"""A simulated engine's continuous batching, step by step, on a service model with round numbers."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import pytest

from planner.timing import EngineCosts, decode_step_s, prefill_s
from simulator.replica import DecodeRun, Finished, Replica, Step
from simulator.service import RooflineService, StepLoad, decode_ends
from simulator.traffic import Arrival


@dataclass(frozen=True)
class Flat:
    """10 ms a step plus 1 ms per token, and a KV cache of `kv_tokens`."""

    kv_tokens: int = 10_000

    def step_s(self, load: StepLoad) -> float:
        return 0.010 + 0.001 * load.tokens


def drain(replica: Replica, start_s: float = 0.0) -> tuple[list[Finished], float]:
    """Step the replica until it is idle (bounded); what finished and when it went idle."""
    now, done = start_s, list[Finished]()
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


def test_a_requests_latency_outside_the_engine_delays_its_answer_but_not_the_engine() -> None:
    replica = Replica(Flat(), request_s=0.02)
    replica.submit(Arrival(0.0, prompt_tokens=100, output_tokens=4))
    (done,), idle = drain(replica)
    assert done.first_token_s == pytest.approx(0.110 + 0.02)
    assert done.finished_s == pytest.approx(0.110 + 3 * 0.011 + 0.02)
    assert idle == pytest.approx(0.110 + 3 * 0.011)  # the engine was free 20 ms earlier
    assert replica.first_tokens == [pytest.approx(0.130)]  # what the agent's TTFT sees


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


def _decode_steps_agree(service: RooflineService) -> None:
    """The simulator's decode step, alone and as `decode_ends` runs it, is the planner's."""
    dep, eff = service.deployment, service.eff
    for seqs, context in ((1, 100), (32, 6000)):
        planner_s = decode_step_s(dep, eff, seqs, context)[0]
        assert service.step_s(StepLoad(decode_seqs=seqs, decode_context=context)) == \
            pytest.approx(planner_s)
        assert service.decode_ends(seqs, seqs * context, 0.0, 1)[0] == \
            pytest.approx(planner_s)


@pytest.mark.parametrize(("model", "gpu", "tp"), [
    ("Llama-3.1-8B", "A10G", 1), ("Llama-3.1-70B", "H100-80G", 4),
    ("Mixtral-8x7B-v0.1", "H100-80G", 2), ("Qwen3-30B-A3B", "H100-80G", 1),  # experts reached
    ("Gemma-2-9B", "L40S", 1),  # sliding-window layers
])
def test_the_roofline_step_agrees_with_the_planner_on_pure_steps(model: str, gpu: str,
                                                                 tp: int) -> None:
    """Regression: a mixture's step read every expert in the simulator and only those its
    tokens reach in the planner (5.7x apart for Qwen3-30B-A3B at batch 1)."""
    service = RooflineService.for_names(model, gpu, tensor_parallel=tp)
    dep, eff = service.deployment, service.eff
    _decode_steps_agree(service)
    if not dep.arch.sliding_window:  # the simulator's prefill attends to every token
        assert service.step_s(StepLoad(prefill_tokens=2000, prefill_context=1000)) == \
            pytest.approx(prefill_s(dep, eff, 2000))
    assert service.kv_tokens == dep.memory().kv_tokens > 0


def test_the_roofline_step_reads_the_kv_cache_at_the_engine_s_attention_bandwidth() -> None:
    """An engine whose attention reads the KV cache below the GPU's fitted bandwidth (vLLM
    V0's) slows the simulator's step as it does the planner's."""
    service = RooflineService.for_names("Llama-3.1-8B", "L40S")
    slow = RooflineService(replace(service.deployment, engine=EngineCosts(attention=0.5)),
                           service.eff)
    _decode_steps_agree(slow)
    assert slow.step_s(StepLoad(decode_seqs=32, decode_context=6000)) > \
        service.step_s(StepLoad(decode_seqs=32, decode_context=6000))


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


# --- Runs of pure-decode steps planned together (`plan_run`) -----------------------------


def stepped(replica: Replica, start_s: float, until_s: float) -> tuple[list[float], list[Finished]]:
    """Step one at a time from `start_s` while steps start before `until_s`: their ends, and
    what finished."""
    now, ends, done = start_s, list[float](), list[Finished]()
    while now < until_s and (step := replica.plan()) is not None:
        now += step.duration_s
        ends.append(now)
        done += replica.complete(step, now)
    return ends, done


def prefilled(*arrivals: Arrival, kv_tokens: int = 10_000) -> tuple[Replica, float]:
    """A replica that has prefilled `arrivals` (one step each at most) and now only decodes."""
    replica = Replica(Flat(kv_tokens))
    for arrival in arrivals:
        replica.submit(arrival)
    _, now = stepped_once(replica, 0.0)
    assert not replica.waiting and all(not seq.prefilling for seq in replica.running)
    return replica, now


def stepped_once(replica: Replica, now: float) -> tuple[list[Finished], float]:
    step = replica.plan()
    assert step is not None
    now += step.duration_s
    return replica.complete(step, now), now


def twins(*arrivals: Arrival, kv_tokens: int = 10_000) -> tuple[Replica, Replica, float]:
    one, now = prefilled(*arrivals, kv_tokens=kv_tokens)
    other, again = prefilled(*arrivals, kv_tokens=kv_tokens)
    assert now == again
    return one, other, now


def test_a_run_ends_at_the_step_that_finishes_a_sequence_and_at_the_same_floats() -> None:
    single, batched, now = twins(Arrival(0.0, 10, 6), Arrival(0.0, 30, 9))
    run = batched.plan_run(now, math.inf)
    assert isinstance(run, DecodeRun)
    assert len(run.ends) == 5  # both hold their first token: the shorter needs 5 more
    ends, done = stepped(single, now, run.end_s)
    assert run.ends == ends  # bit for bit, not approximately
    assert batched.complete_run(run, run.end_s) == done
    assert [d.arrival.output_tokens for d in done] == [6]
    assert _state(batched) == _state(single)


def test_a_run_ends_at_the_last_step_the_cache_holds_and_the_next_step_preempts() -> None:
    single, batched, now = twins(Arrival(0.0, 10, 50), Arrival(0.0, 10, 50), kv_tokens=60)
    run = batched.plan_run(now, math.inf)
    assert isinstance(run, DecodeRun)
    # 20 prompt tokens and 2 sampled are in the cache, the first step takes 2 more slots:
    # 38 free slots hold 19 steps more.
    assert len(run.ends) == 20
    ends, _ = stepped(single, now, run.end_s)
    assert run.ends == ends
    batched.complete_run(run, run.end_s)
    assert batched.kv_used == batched.kv_capacity == 60
    assert _state(batched) == _state(single)
    after = batched.plan_run(run.end_s, math.inf)
    assert isinstance(after, Step) and [s.preemptions for s in batched.waiting] == [1]


def test_a_run_ends_at_the_first_step_that_ends_at_or_after_the_horizon() -> None:
    single, batched, now = twins(Arrival(0.0, 10, 500))
    run = batched.plan_run(now, now + 0.1)
    assert isinstance(run, DecodeRun)
    assert run.ends[-2] < now + 0.1 <= run.end_s and len(run.ends) == 10  # 11 ms a step
    ends, _ = stepped(single, now, now + 0.1)
    assert run.ends == ends


def test_a_run_is_one_step_when_a_request_waits_a_prompt_is_prefilling_or_the_horizon_is_near(
        ) -> None:
    replica, now = prefilled(Arrival(0.0, 10, 100))
    assert isinstance(replica.plan_run(now, now + 0.005), Step)  # ends after the horizon
    replica, now = prefilled(Arrival(0.0, 10, 100))
    replica.submit(Arrival(now, 10, 100))
    assert isinstance(replica.plan_run(now, math.inf), Step)  # admits the waiting one
    replica = Replica(Flat(), max_num_batched_tokens=8)
    replica.submit(Arrival(0.0, 20, 100))
    assert isinstance(replica.plan_run(0.0, math.inf), Step)  # a chunk of the prompt


def test_reading_a_run_midway_shows_what_stepping_one_at_a_time_would() -> None:
    single, batched, now = twins(Arrival(0.0, 10, 40), Arrival(0.0, 10, 60))
    run = batched.plan_run(now, math.inf)
    assert isinstance(run, DecodeRun)
    middle = run.ends[14]  # a step ends exactly then: it counts as done, as its event would
    stepped(single, now, middle)
    assert single.plan() is not None  # the step in progress, planned at `middle`
    batched.advance(run, 15)
    assert _state(batched) == _state(single)


def _state(replica: Replica) -> tuple[object, ...]:
    return (replica.kv_used, [(s.computed, s.generated, s.preemptions) for s in replica.running],
            [(s.computed, s.generated, s.preemptions) for s in replica.waiting])


class _Generic:
    """The roofline seen only through `step_s`: what `decode_ends` does for any model."""

    def __init__(self, service: RooflineService) -> None:
        self.service, self.kv_tokens = service, service.kv_tokens

    def step_s(self, load: StepLoad) -> float:
        return self.service.step_s(load)


@pytest.mark.parametrize("tensor_parallel", [1, 2])
def test_the_rooflines_own_decode_loop_gives_step_s_float_for_float(tensor_parallel: int) -> None:
    service = RooflineService.for_names("Llama-3.1-8B", "A10G", tensor_parallel=tensor_parallel)
    rng = random.Random(tensor_parallel)
    for _ in range(50):
        # From 0 the first end is the step time itself: a difference of an ulp shows.
        seqs, start = rng.randint(1, 256), rng.choice([0.0, rng.uniform(0, 3600)])
        context = seqs * rng.randint(1, 4000) + rng.randint(0, seqs - 1)
        fast = decode_ends(service, seqs, context, start, 40)
        assert fast == decode_ends(_Generic(service), seqs, context, start, 40)
        horizon = fast[rng.randint(0, 39)]
        assert decode_ends(service, seqs, context, start, 40, horizon) == fast[
            :fast.index(horizon) + 1]
