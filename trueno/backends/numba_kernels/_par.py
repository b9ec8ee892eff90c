"""Parallelism without numba's parallel=True (which compiles 5-10x slower and, with OpenMP on
a loaded 2-core machine, can stall for milliseconds): a large input is cut into contiguous
chunks (a few per thread), and the calling thread plus a small persistent pool claim chunks
from a shared counter and run the same nogil kernel on them. A descheduled worker therefore
costs at most one chunk: the caller takes the rest. Chunk results come back in order.

The simple kernels (element-wise ops, activations, sums and extrema, row-wise ops) run on
numba's OpenMP team instead (:mod:`._team`), whose fork and join cost 2-3 us against the
pool's 20-50 us hand-off; the pool is their fallback where the team must not run (a fork()ed
child, a stalled team) and the splitter of the rest."""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

from trueno import config

CHUNKS_PER_THREAD = 4
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


def threads_now() -> int:
    """Threads a big input is split over. A busy machine needs no special case: chunks are
    claimed dynamically, so a worker waiting for a core costs at most one chunk."""
    return THREADS


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, THREADS - 1), thread_name_prefix="trueno")
    return _pool


FORKED = False  # in a fork()ed child (see _after_fork)


def _after_fork() -> None:
    """After fork the child has the pool object but not its threads: start a new one. And it
    must not enter numba's OpenMP team (:mod:`._team`): numba ends a child that starts a
    parallel region after its parent used GNU OpenMP, so the child's calls take the pool."""
    global _pool, FORKED
    _pool = None
    FORKED = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def bounds(n: int, par_min: int, align: int = 64) -> list[tuple[int, int]]:
    """[(lo, hi)] chunks of range(n): one chunk below ``par_min``, else a few per thread
    (chunk starts aligned to ``align`` elements, chunks at least par_min / 2 long)."""
    if n < par_min:
        return [(0, n)]
    use = threads_now()
    if use == 1:
        return [(0, n)]
    pieces = min(use * CHUNKS_PER_THREAD, max(use, 2 * n // par_min))
    step = -(-n // pieces)
    step = -(-step // align) * align
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def run_tasks(tasks: list) -> list:
    """Results of zero-argument callables, run by the caller and the pool (dynamic claims)."""
    if len(tasks) == 1:
        return [tasks[0]()]
    results = [None] * len(tasks)
    claim = itertools.count()
    n = len(tasks)

    def worker() -> None:
        while True:
            i = next(claim)  # atomic under the GIL
            if i >= n:
                return
            results[i] = tasks[i]()

    pool = _get_pool()
    futures = [pool.submit(worker) for _ in range(min(threads_now(), n) - 1)]
    worker()
    for f in futures:
        if not f.cancel():  # a helper that never started is not waited for
            f.result()
    return results


def _task(kern, args):
    return lambda: kern(*args)


def map_chunks(kern, out, arrays: tuple, params: tuple = (), par_min: int = 1 << 17) -> None:
    """``kern(out[c], *(a[c] for a in arrays), *params)`` for each chunk c of the flat range."""
    chunks = bounds(out.size, par_min)
    if len(chunks) == 1:
        kern(out, *arrays, *params)
        return
    run_tasks(
        [_task(kern, (out[lo:hi], *(a[lo:hi] for a in arrays), *params)) for lo, hi in chunks]
    )


def reduce_chunks(kern, arrays: tuple, params: tuple = (), par_min: int = 1 << 18) -> list:
    """[``kern(*(a[c] for a in arrays), *params)`` for each chunk c], in chunk order."""
    chunks = bounds(arrays[0].size, par_min)
    if len(chunks) == 1:
        return [kern(*arrays, *params)]
    return run_tasks([_task(kern, (*(a[lo:hi] for a in arrays), *params)) for lo, hi in chunks])
