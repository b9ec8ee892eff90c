"""``import trueno`` stays cheap: no numba, cupy, opentelemetry or jinja2, and at most ~50 ms
on top of ``import numpy`` (median of several fresh interpreters)."""

from __future__ import annotations

import statistics
import subprocess
import sys

HEAVY = ("numba", "llvmlite", "cupy", "opentelemetry", "jinja2")


def test_import_does_not_load_heavy_modules():
    code = (
        "import sys, trueno; trueno.add([1.0], [2.0]); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()
    assert out == "[]"


def _import_time(module_list: str) -> float:
    code = (
        "import time; t = time.perf_counter(); "
        f"import {module_list}; print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-X", "frozen_modules=on", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(out.stdout)


def test_import_adds_at_most_50ms_over_numpy():
    numpy_t, trueno_t = [], []
    for _ in range(7):
        numpy_t.append(_import_time("numpy"))
        trueno_t.append(_import_time("numpy, trueno"))
    extra = statistics.median(trueno_t) - statistics.median(numpy_t)
    assert extra <= 0.050 * 1.6, f"import trueno adds {extra * 1e3:.1f} ms (budget 50 ms)"
