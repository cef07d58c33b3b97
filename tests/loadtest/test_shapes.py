"""Load shapes: users over time, and the specs that name them."""

from __future__ import annotations

import pytest

from loadtest.shapes import Constant, ShapeError, Spike, Step, parse


def test_constant_holds_the_peak_at_the_spawn_rate() -> None:
    shape = parse("constant", peak=8, spawn_rate=2)
    assert shape == Constant(8, 2.0)
    assert [shape.users_at(t) for t in (0, 5, 500)] == [8, 8, 8]
    assert parse("constant", peak=8, spawn_rate=0).spawn_rate() == 8  # no rate: all at once


def test_step_adds_users_each_step_until_the_peak() -> None:
    shape = parse("step:3:10", peak=8, spawn_rate=1)
    assert shape == Step(8, 3, 10.0)
    assert [shape.users_at(t) for t in (0, 9.9, 10, 19.9, 20, 30, 1000)] == [3, 3, 6, 6, 8, 8, 8]


def test_spike_jumps_to_the_peak_and_back() -> None:
    shape = parse("spike:2:30:10", peak=20, spawn_rate=1)
    assert shape == Spike(20, 2, 30.0, 10.0)
    assert [shape.users_at(t) for t in (0, 29.9, 30, 39.9, 40, 100)] == [2, 2, 20, 20, 2, 2]
    assert shape.spawn_rate() == 20  # the spike lands at once


@pytest.mark.parametrize(("spec", "peak", "message"), [
    ("ramp", 4, "unknown shape 'ramp'"),
    ("step:2", 4, "unknown shape"),
    ("step:0:10", 4, "N must be 1..4"),
    ("step:5:10", 4, "N must be 1..4"),
    ("step:2:0", 4, "SECONDS > 0"),
    ("step:two:10", 4, "'two' is not a number"),
    ("spike:5:10:10", 4, "BASE must be 0..4"),
    ("spike:1:-1:10", 4, "AT >= 0"),
    ("spike:1:10:0", 4, "SECONDS > 0"),
    ("constant", 0, "peak of at least 1 user"),
])
def test_bad_shapes_are_refused_with_the_reason(spec: str, peak: int, message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        parse(spec, peak=peak, spawn_rate=1)
