"""Tracer cost per op: off (the one bool test in dispatch.run) and on (two perf_counter_ns
calls and one ring-buffer row).

    python benches/tracer_overhead.py

Targets: <= 30 ns per op with tracing off, <= 1 µs with tracing on. "off" is measured two
ways: the bare ``if not recorder.ENABLED`` test, and trueno.add on 8 elements minus the same
call path with the check removed (a copy of dispatch.run without it)."""

from __future__ import annotations

import os
import sys
import timeit

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import compare_times, print_table  # noqa: E402

import trueno  # noqa: E402
from trueno import dispatch  # noqa: E402
from trueno.ops.spec import OPS  # noqa: E402
from trueno.trace import recorder  # noqa: E402


def _run_unchecked(spec, n, args, kwargs=None):
    backend = dispatch.choose(spec, n, args)
    fn = dispatch.kernel(backend, spec.name)
    return fn(*args, **kwargs) if kwargs else fn(*args)


def main() -> int:
    x = np.ones(8, dtype=np.float32)
    ADD = OPS["add"]
    loops = 200_000
    g = {"recorder": recorder}
    t_check = (
        min(timeit.repeat("if not recorder.ENABLED: pass", globals=g, number=loops, repeat=7))
        / loops
    )
    t_pass = min(timeit.repeat("pass", number=loops, repeat=7)) / loops
    args = (x, x)
    t_run, t_bare = compare_times(
        lambda: dispatch.run(ADD, 8, args),
        lambda: _run_unchecked(ADD, 8, args),
        repeat=15,
        number=20_000,
    )
    t_off = compare_times(lambda: trueno.add(x, x), lambda: None, repeat=15, number=20_000)[0]
    with trueno.trace.capture(capacity=1 << 22):
        t_on = compare_times(lambda: trueno.add(x, x), lambda: None, repeat=15, number=20_000)[0]
    rows = [
        ["bool test (if not recorder.ENABLED)", f"{(t_check - t_pass) * 1e9:.1f} ns", "<= 30 ns"],
        ["dispatch.run minus unchecked copy", f"{(t_run - t_bare) * 1e9:.1f} ns", "<= 30 ns"],
        ["trueno.add(8) tracing off", f"{t_off * 1e9:.0f} ns", ""],
        ["trueno.add(8) tracing on", f"{t_on * 1e9:.0f} ns", ""],
        ["cost of a span (on - off)", f"{(t_on - t_off) * 1e9:.0f} ns", "<= 1000 ns"],
    ]
    print_table(["measure", "per op", "target"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
