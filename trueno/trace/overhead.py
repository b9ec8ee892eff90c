"""The tracer's own cost per op, off and on (``trueno trace overhead``).

- off: the extra work dispatch does per op when tracing is off (one module-level bool test),
  measured as a loop doing that test minus an empty loop; and ``trace.span()`` when off.
- on: ``record_op`` per call (the recorder's part), and a whole traced op (the caller passes
  ``trueno.add``: this module sits below the ops) on a tiny array minus the untraced one
  (recorder + dispatch's span bookkeeping).
Each number is the minimum over ``repeat`` rounds of ``n`` calls (the least disturbed run).
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter_ns

import numpy as np

from trueno.trace import recorder


def _best(fn, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = perf_counter_ns()
        fn(n)
        best = min(best, (perf_counter_ns() - t) / n)
    return best


def measure(op: Callable, n: int = 100_000, repeat: int = 5) -> dict[str, float]:
    """Nanoseconds per op for each cost (see the module docstring); ``op(a, a)`` is the
    traced op timed on 16 float32s."""
    a = np.ones(16, np.float32)
    mod = recorder

    def empty(k):
        for _ in range(k):
            pass

    def flag(k):
        for _ in range(k):
            if mod.ENABLED:
                pass

    def span_off(k):
        span = recorder.span
        for _ in range(k):
            with span("x"):
                pass

    def ops(k):
        for _ in range(k):
            op(a, a)

    def record(k):
        rec = recorder.record_op
        for i in range(k):
            rec("add", "numpy", (16,), "float32", 192, 16, i, 1)

    was_on = recorder.ENABLED
    if was_on:
        raise RuntimeError("measure() needs tracing off to start with")
    out = {
        "off_flag_ns": max(0.0, _best(flag, n, repeat) - _best(empty, n, repeat)),
        "off_span_ns": _best(span_off, n, repeat),
    }
    op_off = _best(ops, n, repeat)
    recorder.start(capacity=max(1 << 16, n))
    try:
        out["on_record_op_ns"] = _best(record, n // 5, repeat)
        recorder.start(capacity=max(1 << 16, n))
        op_on = _best(ops, n // 5, repeat)
    finally:
        recorder.stop()
    out.update(op_untraced_ns=op_off, op_traced_ns=op_on, on_per_op_ns=op_on - op_off)
    return out
