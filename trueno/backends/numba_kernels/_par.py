"""Two-level parallelism without numba's parallel=True (which compiles 5-10x slower): large
inputs are cut into contiguous chunks and each chunk runs the same nogil kernel on its own
thread (a small persistent pool). Chunk results are combined by the caller."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from trueno import config

_pool: ThreadPoolExecutor | None = None


def threads() -> int:
    """Worker threads for big inputs: TRUENO_NUM_THREADS, else the CPUs this process may use."""
    if config.NUM_THREADS:
        return config.NUM_THREADS
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


THREADS = threads()


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, THREADS - 1), thread_name_prefix="trueno")
    return _pool


def bounds(n: int, par_min: int, align: int = 64) -> list[tuple[int, int]]:
    """[(lo, hi)] chunks of range(n): one chunk below ``par_min``, else one per thread (chunk
    starts aligned to ``align`` elements)."""
    if n < par_min or THREADS == 1:
        return [(0, n)]
    step = -(-n // THREADS)
    step = -(-step // align) * align
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def map_chunks(kern, out, arrays: tuple, params: tuple = (), par_min: int = 1 << 17) -> None:
    """``kern(out[c], *(a[c] for a in arrays), *params)`` for each chunk c of the flat range."""
    chunks = bounds(out.size, par_min)
    if len(chunks) == 1:
        kern(out, *arrays, *params)
        return
    pool = _get_pool()
    futures = [
        pool.submit(kern, out[lo:hi], *(a[lo:hi] for a in arrays), *params) for lo, hi in chunks[1:]
    ]
    lo, hi = chunks[0]
    kern(out[lo:hi], *(a[lo:hi] for a in arrays), *params)
    for f in futures:
        f.result()


def reduce_chunks(kern, arrays: tuple, params: tuple = (), par_min: int = 1 << 18) -> list:
    """[``kern(*(a[c] for a in arrays), *params)`` for each chunk c], in chunk order."""
    n = arrays[0].size
    chunks = bounds(n, par_min)
    if len(chunks) == 1:
        return [kern(*arrays, *params)]
    pool = _get_pool()
    futures = [pool.submit(kern, *(a[lo:hi] for a in arrays), *params) for lo, hi in chunks[1:]]
    lo, hi = chunks[0]
    first = kern(*(a[lo:hi] for a in arrays), *params)
    return [first] + [f.result() for f in futures]


def chunk_starts(n: int, par_min: int) -> list[int]:
    return [lo for lo, _ in bounds(n, par_min)]
