"""``import trueno`` stays cheap: no numba, cupy, opentelemetry, jinja2 or dask. (Its time on top of
``import numpy`` is a benchmark: benches/import_time.py.)"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numba", "llvmlite", "cupy", "opentelemetry", "jinja2", "dask", "distributed")


def test_import_does_not_load_heavy_modules():
    code = (
        "import sys, trueno; trueno.add([1.0], [2.0]); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()
    assert out == "[]"
