"""Startup cost: what ``import trueno`` adds to ``import numpy`` (target <= 50 ms), as the
median over fresh interpreters, alternating the two, and which heavy modules it pulls in.

    python benches/import_time.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys


def import_time(modules: str) -> float:
    code = f"import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    numpy_t, trueno_t = [], []
    for _ in range(args.runs):
        numpy_t.append(import_time("numpy"))
        trueno_t.append(import_time("numpy, trueno"))
    base, both = statistics.median(numpy_t), statistics.median(trueno_t)
    print("| measure | median | target |")
    print("|---|---:|---:|")
    print(f"| import numpy | {base * 1e3:.1f} ms | |")
    print(f"| import numpy, trueno | {both * 1e3:.1f} ms | |")
    print(f"| added by trueno | {(both - base) * 1e3:.1f} ms | <= 50 ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
