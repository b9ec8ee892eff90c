"""Tracer cost per op: off (the one bool test in dispatch.run) and on (two perf_counter_ns
calls and one ring-buffer row).

    python benches/tracer_overhead.py

Targets: <= 30 ns per op with tracing off (the bare ``if not recorder.ENABLED`` test that
dispatch.run makes), <= 1 µs with tracing on (trueno.add on 8 elements, traced minus untraced:
the two sides alternate inside one capture, best of 3 timings per side and round, medians of
15 rounds)."""

from __future__ import annotations

import gc
import os
import statistics
import sys
import timeit
from time import perf_counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import print_table  # noqa: E402

import trueno  # noqa: E402
from trueno.trace import recorder  # noqa: E402


def off_on(op, rounds: int = 15, calls: int = 3, number: int = 20_000) -> tuple[float, float]:
    """Seconds per ``op()`` with tracing off and on, inside one capture, the recorder's flag
    flipped between the two sides of each round: the best of ``calls`` timings of ``number``
    calls per side and round (load from other processes only slows a timing), then the median
    over rounds of each side."""

    def best() -> float:
        times = []
        for _ in range(calls):
            t0 = perf_counter()
            for _ in range(number):
                op()
            times.append((perf_counter() - t0) / number)
        return min(times)

    off, on = [], []
    op()
    with trueno.trace.capture(capacity=1 << 24):
        gc.disable()
        try:
            for _ in range(rounds):
                recorder.ENABLED = False
                off.append(best())
                recorder.ENABLED = True
                on.append(best())
        finally:
            recorder.ENABLED = True  # capture() turns it off on exit
            gc.enable()
    return statistics.median(off), statistics.median(on)


def main() -> int:
    x = np.ones(8, dtype=np.float32)
    loops = 200_000
    g = {"recorder": recorder}
    t_check = (
        min(timeit.repeat("if not recorder.ENABLED: pass", globals=g, number=loops, repeat=7))
        / loops
    )
    t_pass = min(timeit.repeat("pass", number=loops, repeat=7)) / loops
    t_off, t_on = off_on(lambda: trueno.add(x, x))
    rows = [
        ["bool test (if not recorder.ENABLED)", f"{(t_check - t_pass) * 1e9:.1f} ns", "<= 30 ns"],
        ["trueno.add(8) tracing off", f"{t_off * 1e9:.0f} ns", ""],
        ["trueno.add(8) tracing on", f"{t_on * 1e9:.0f} ns", ""],
        ["cost of a span (on - off)", f"{(t_on - t_off) * 1e9:.0f} ns", "<= 1000 ns"],
    ]
    print_table(["measure", "per op", "target"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
