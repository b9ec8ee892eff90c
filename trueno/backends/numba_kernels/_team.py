"""numba's OpenMP team for the simple kernels: when a call may use it (:func:`ok`), kernels
compiled again with ``parallel=True`` (:func:`twin`, :func:`variant`), and :func:`call`, which
times a team call for the stall guard below.

A team's fork and join cost 2-3 us, against 20-50 us for the pool's hand-off (:mod:`._par`).
But a team waits at its join for every thread, so a core held by another thread costs a call
a scheduler slice, 4-8 ms here: OpenBLAS's threads spin ~0.1 s after each BLAS call, and a
loop of ``A @ v`` and trueno.add(2^18) ran 40x slower than numpy's. A call that slow pauses
the team (calls take the pool, whose caller never waits for a worker that has not started)
for PAUSE_S, doubled up to PAUSE_MAX_S while stalls follow pauses: that loop then runs at the
pool's speed. Never in a fork()ed child (``_par.FORKED``): numba ends a child that starts a
parallel region after its parent used GNU OpenMP."""

from __future__ import annotations

import time
import types

import numba as nb
import numpy as np

from trueno.backends.numba_kernels import _par

STALL_S = 2e-3  # beyond the work itself, priced at STALL_S_PER_ITEM (page faults included)
STALL_S_PER_ITEM = 8e-9
PAUSE_S = 0.1
PAUSE_MAX_S = 10.0
_paused_until = 0.0
_pause_s = PAUSE_S


def ok() -> bool:
    """Whether a big call may use the team now."""
    return _par.threads_now() > 1 and not _par.FORKED and time.perf_counter() >= _paused_until


def took(seconds: float, items: int) -> None:
    """Report a team call's time: a stalled one pauses the team (longer if the last pause
    ended less than its own length ago)."""
    global _paused_until, _pause_s
    if seconds <= STALL_S + items * STALL_S_PER_ITEM:
        return
    now = time.perf_counter()
    recent = now - _paused_until < _pause_s
    _pause_s = min(2 * _pause_s, PAUSE_MAX_S) if recent else PAUSE_S
    _paused_until = now + _pause_s


def call(f, items: int, *args):
    """``f(*args)`` on the team, its time reported to :func:`took` (unless it compiled)."""
    known, t0 = len(f.overloads), time.perf_counter()
    result = f(*args)
    if len(f.overloads) == known:
        took(time.perf_counter() - t0, items)
    return result


def reduce(f, kern, arrays: tuple, params: tuple, team_min: int, par_min: int, join):
    """A reduction over the flat ``arrays``: ``f(*arrays, *params, k)`` on the team (``kern``
    over k chunks, joined there) from ``team_min`` elements while :func:`ok`; else ``kern``
    over the pool's chunks from ``par_min``, their results joined by ``join``, or one call."""
    n = arrays[0].size
    if n >= team_min and ok():
        return call(f, n, *arrays, *params, _par.threads_now())
    parts = _par.reduce_chunks(kern, arrays, params, par_min)
    return parts[0] if len(parts) == 1 else join(np.array(parts, dtype=arrays[0].dtype))


def warm(calls, n: int, dtype) -> None:
    """Each ``call(x)`` on an ``n``-element ramp of ``dtype``, where the team will run: loads
    the twins the calls reach and starts numba's threads (the families' trueno.warmup hooks)."""
    if ok():
        x = np.linspace(-2, 2, n, dtype=dtype)
        for call in calls:
            call(x)


def variant(template, name: str, jit: dict, parallel: bool = True, **names):
    """``template``'s code as a new function called ``name`` (numba's disk cache keys on the
    name), compiled with ``parallel=True`` (or, ``parallel=False``, as a plain kernel: its
    :func:`twin` is then the team's). With ``names``, it sees a copy of the template's module
    globals (as they are now) with ``names`` added; else the module's own."""
    g = {**template.__globals__, **names} if names else template.__globals__
    f = types.FunctionType(template.__code__, g, name, template.__defaults__,
                           template.__closure__)  # fmt: skip
    f.__qualname__ = name
    f.__module__ = template.__module__
    return nb.njit(**{**jit, "parallel": parallel})(f)


def twin(kern):
    """``kern`` (a cached njit kernel) compiled again with its own options and
    ``parallel=True``: its ``prange`` loop (a plain range in ``kern``) then runs on the team.
    Same operations per element, so the same results."""
    jit = {k: v for k, v in kern.targetoptions.items() if k != "nopython"}
    return variant(kern.py_func, kern.py_func.__qualname__ + "_team", dict(jit, cache=True))


@nb.njit(cache=True, nogil=True)
def chunk(c, n, k):
    """(lo, hi) of the ``c``-th of ``k`` chunks of range(n), one per team thread in a
    reduction's ``prange(k)``: starts 64-element aligned; every chunk non-empty when
    n >= 64 * k."""
    step = ((n + k - 1) // k + 63) // 64 * 64
    lo = min(c * step, n)
    return lo, min(lo + step, n)
