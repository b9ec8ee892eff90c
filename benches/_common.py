"""Shared bench helpers: median timing, the DRAM read-bandwidth probe (BLAS sgemv over a large
float32 matrix), markdown tables. Other bench scripts import this module."""

from __future__ import annotations

import gc
import statistics
import sys
from time import perf_counter, sleep

import numpy as np


def median_time(fn, repeat: int = 7, number: int | None = None) -> float:
    """Median seconds per call of ``fn()`` over ``repeat`` rounds of ``number`` calls each.

    With ``number=None`` the call count is calibrated so one round takes ~20 ms (at least 1).
    One untimed call runs first (JIT compile, page faults).
    """
    fn()
    if number is None:
        t0 = perf_counter()
        fn()
        once = perf_counter() - t0
        number = max(1, int(0.02 / max(once, 1e-9)))
    gc_was = gc.isenabled()
    gc.disable()
    try:
        times = []
        for _ in range(max(1, repeat)):
            t0 = perf_counter()
            for _ in range(number):
                fn()
            times.append((perf_counter() - t0) / number)
    finally:
        if gc_was:
            gc.enable()
    return statistics.median(times)


def compare_times(fn_a, fn_b, repeat: int = 7, number: int | None = None) -> tuple[float, float]:
    """Median seconds per call of ``fn_a()`` and ``fn_b()``, timed in alternating rounds so
    load from other processes hits both alike (this machine is shared)."""
    fn_a()
    fn_b()
    if number is None:
        t0 = perf_counter()
        fn_a()
        fn_b()
        once = (perf_counter() - t0) / 2
        number = max(1, int(0.01 / max(once, 1e-9)))
    ta, tb = [], []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(max(1, repeat)):
            for fn, acc in ((fn_a, ta), (fn_b, tb)):
                t0 = perf_counter()
                for _ in range(number):
                    fn()
                acc.append((perf_counter() - t0) / number)
    finally:
        if gc_was:
            gc.enable()
    return statistics.median(ta), statistics.median(tb)


def best_decode_tok_s(model, ids, n_tokens: int, calls: int = 3) -> float:
    """The best of ``calls`` greedy decodes of ``n_tokens`` after prompt ``ids`` (tok/s, the
    generator's own decode timing; the model reset before each)."""
    from trueno.llm.generate import generate_tokens

    best = 0.0
    for _ in range(calls):
        model.reset()
        gen = generate_tokens(model, ids, max_tokens=n_tokens, temperature=0, stop_at_eog=False)
        for _ in gen:
            pass
        best = max(best, gen.stats.decode_tok_s)
    return best


def best_prefill_tok_s(model, ids, n: int = 128, calls: int = 2) -> float:
    """The best of ``calls`` prefills of ``n`` tokens (``ids`` repeated to length), tok/s, the
    model reset before each."""
    prompt = (list(ids) * (n // len(ids) + 1))[:n]
    best = 0.0
    for _ in range(calls):
        model.reset()
        t0 = perf_counter()
        model.prefill(prompt)
        best = max(best, n / (perf_counter() - t0))
    return best


def set_threads(n: int) -> None:
    """Run numba's kernels and BLAS on ``n`` threads (the benches' ``--threads``)."""
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache (L3 on most hosts) from sysfs; 0 where unknown."""
    from pathlib import Path

    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        scale = units.get(text[-1:].upper(), 1)
        digits = text[:-1] if text[-1:].upper() in units else text
        if digits.isdigit():
            best = max(best, int(digits) * scale)
    return best


def dram_bytes(min_bytes: int) -> int:
    """Bytes a working set needs to be served from DRAM, not the last-level cache: at least
    ``min_bytes`` and twice that cache (300 MiB of L3 on some 2-vCPU Xeon hosts holds a
    262144 x 640 Q8_0 matrix, 178 MB, whole)."""
    return max(min_bytes, 2 * last_level_cache_bytes())


def sgemv_bandwidth_gbs(min_bytes: int = 512 << 20, repeat: int = 5) -> float:
    """DRAM read bandwidth in GB/s, measured as BLAS sgemv (``A @ x``) over a float32 matrix of
    at least ``min_bytes`` and twice the last-level cache (:func:`dram_bytes`) at the current
    BLAS thread count. Bytes counted: A only."""
    cols = 4096
    rows = max(1, -(-dram_bytes(min_bytes) // (cols * 4)))
    a = np.ones((rows, cols), dtype=np.float32)  # touch every page before timing
    x = np.ones(cols, dtype=np.float32)
    t = median_time(lambda: a @ x, repeat=repeat, number=1)
    sleep(0.2)  # OpenBLAS's threads spin ~0.1 s after a call: not in the next timing
    return a.nbytes / t / 1e9


def gbs(nbytes: int, seconds: float) -> float:
    """GB/s for ``nbytes`` moved in ``seconds``."""
    return nbytes / seconds / 1e9 if seconds > 0 else float("inf")


def fmt_time(seconds: float) -> str:
    """Human time: ns / µs / ms / s with 3 significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def print_table(headers, rows, file=None) -> None:
    """Print a markdown table (columns padded to their widest cell)."""
    file = file or sys.stdout
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    print(line(cells[0]), file=file)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=file)
    for r in cells[1:]:
        print(line(r), file=file)
    file.flush()


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def sizes(quick: bool, lo: int = 2, hi: int = 7) -> list[int]:
    """Sizes 10**lo .. 10**hi (``--quick`` stops at 1e6)."""
    return [10**e for e in range(lo, (min(hi, 6) if quick else hi) + 1)]
