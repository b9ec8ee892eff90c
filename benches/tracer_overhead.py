"""Tracer cost per op: off (the one bool test in dispatch.run) and on (two perf_counter_ns
calls and one ring-buffer row).

    python benches/tracer_overhead.py

Targets: <= 30 ns per op with tracing off (the bare ``if not recorder.ENABLED`` test that
dispatch.run makes), <= 1 µs with tracing on (trueno.add on 8 elements, traced minus untraced,
measured in alternating rounds)."""

from __future__ import annotations

import os
import sys
import timeit

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import compare_times, print_table  # noqa: E402

import trueno  # noqa: E402
from trueno.trace import recorder  # noqa: E402


def main() -> int:
    x = np.ones(8, dtype=np.float32)
    loops = 200_000
    g = {"recorder": recorder}
    t_check = (
        min(timeit.repeat("if not recorder.ENABLED: pass", globals=g, number=loops, repeat=7))
        / loops
    )
    t_pass = min(timeit.repeat("pass", number=loops, repeat=7)) / loops
    t_off = compare_times(lambda: trueno.add(x, x), lambda: None, repeat=15, number=20_000)[0]
    with trueno.trace.capture(capacity=1 << 22):
        t_on = compare_times(lambda: trueno.add(x, x), lambda: None, repeat=15, number=20_000)[0]
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
