"""Traffic: the arrivals a fleet simulation serves, from a trace file or drawn from a shape.

This module is the simulator's one door to traffic. It owns time scaling (`scaled`) and
the shipped example trace, and re-exports the rest: trace files (`Arrival`, `TraceError`,
`read_trace`, `load_trace`, `write_trace`) from `simulator.traffic_trace`, which also
documents the CSV and access-log formats, their bounds and how skipped requests are
reported; synthetic traffic (`synthetic`, `SpecError`) and its spec strings from
`simulator.traffic_shapes`.

`scaled(arrivals, speed=k)` replays k times faster (every time divided by k).
`scaled(arrivals, rate=k)` sends k times the requests without a random draw: arrival i
(in time order) yields floor((i + 1) * k) - floor(i * k) copies, so k < 1 keeps an evenly
spread subset and k > 1 replicates every arrival about k times. An arrival's copies keep
its token counts and are spread evenly over the gap to the next arrival rather than
stacked on one instant, so that replication does not add bursts the trace never had.

The example trace, `simulator/data/example-trace.csv` (`EXAMPLE_TRACE`), is generated,
not recorded: one hour of chat-like traffic, `synthetic(EXAMPLE_SHAPE, duration_s=3600,
rate_per_s=4, workload=EXAMPLE_WORKLOAD, seed=17)`. That is a day's rise and fall (peak
to trough 3, quietest at minute 10, busiest at minute 40) compressed into the hour, one
burst at three times the rate for two minutes from minute 30, and log-normal lengths with
medians of 300 prompt and 150 output tokens: about 15,600 requests, 4.3 a second on
average, in about 410 kB. Regenerate it with
`python -m simulator.traffic example simulator/data/example-trace.csv`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator, Sequence
from operator import attrgetter
from pathlib import Path

from simulator.traffic_shapes import SpecError, synthetic
from simulator.traffic_trace import (
    Arrival,
    LoadedTrace,
    TraceError,
    load_trace,
    read_trace,
    write_csv,
    write_trace,
)

__all__ = ["EXAMPLE_TRACE", "Arrival", "LoadedTrace", "SpecError", "TraceError", "example",
           "load_trace", "read_trace", "scaled", "synthetic", "write_trace"]

EXAMPLE_TRACE = Path(__file__).parent / "data" / "example-trace.csv"
EXAMPLE_SHAPE = "diurnal:3*bursts:1800:120:3"
EXAMPLE_WORKLOAD = "lognormal:300:150"
EXAMPLE_DURATION_S = 3600.0
EXAMPLE_RATE_PER_S = 4.0
EXAMPLE_SEED = 17


def scaled(arrivals: Sequence[Arrival], *, speed: float = 1.0,
           rate: float = 1.0) -> list[Arrival]:
    """`arrivals` replayed `speed` times faster with `rate` times the requests (docstring above).

    Raises:
        ValueError: `speed` or `rate` is not a positive finite number.
    """
    _check_factor(speed, "speed")
    _check_factor(rate, "rate")
    ordered = sorted(arrivals, key=attrgetter("at_s"))
    return [Arrival(at_s / speed, arrival.prompt_tokens, arrival.output_tokens)
            for at_s, arrival in _copies(ordered, rate)]


def _copies(ordered: list[Arrival], rate: float) -> Iterator[tuple[float, Arrival]]:
    for index, arrival in enumerate(ordered):
        copies = math.floor((index + 1) * rate) - math.floor(index * rate)
        following = ordered[index + 1].at_s if index + 1 < len(ordered) else arrival.at_s
        step = (following - arrival.at_s) / max(copies, 1)
        for copy in range(copies):
            yield arrival.at_s + copy * step, arrival


def _check_factor(value: float, name: str) -> None:
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive finite number, got {value}")


def example() -> list[Arrival]:
    """The arrivals of the shipped example trace (see the module docstring)."""
    return synthetic(EXAMPLE_SHAPE, duration_s=EXAMPLE_DURATION_S,
                     rate_per_s=EXAMPLE_RATE_PER_S, workload=EXAMPLE_WORKLOAD,
                     seed=EXAMPLE_SEED)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m simulator.traffic example [PATH]`: write the example trace (stdout: -)."""
    parser = argparse.ArgumentParser(prog="python -m simulator.traffic",
                                     description="Generate the simulator's example trace.")
    parser.add_argument("command", choices=["example"])
    parser.add_argument("path", nargs="?", default="-", help="where to write it (- for stdout)")
    args = parser.parse_args(argv)
    if args.path == "-":
        write_csv(example(), sys.stdout)
    else:
        write_trace(example(), Path(args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
