"""The chunked thread runner: chunk bounds, ordered results, no hang after fork, and helpers
that never start are not waited for."""

from __future__ import annotations

import multiprocessing as mp
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

from trueno.backends.numba_kernels import _par  # noqa: E402


def test_bounds_cover_the_range(monkeypatch):
    monkeypatch.setattr(_par, "threads_now", lambda: 2)
    for n in (1, 1000, 65_537, 1_000_003):
        chunks = _par.bounds(n, 1 << 10)
        assert chunks[0][0] == 0 and chunks[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))
    assert _par.bounds(100, 1 << 10) == [(0, 100)]


def test_run_tasks_returns_results_in_order(monkeypatch):
    monkeypatch.setattr(_par, "threads_now", lambda: 2)
    assert _par.run_tasks([lambda i=i: i * i for i in range(20)]) == [i * i for i in range(20)]


def _child_sum(q) -> None:
    from trueno.backends.numba_kernels import _par as par
    from trueno.backends.numba_kernels import reductions

    par.threads_now = lambda: 2
    x = np.ones(1 << 20, dtype=np.float32)
    q.put(float(np.sum(par.reduce_chunks(reductions._sum, (x,), (), 1 << 16))))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_no_hang_after_fork(monkeypatch):
    monkeypatch.setattr(_par, "threads_now", lambda: 2)
    from trueno.backends.numba_kernels import reductions

    x = np.ones(1 << 20, dtype=np.float32)
    _par.reduce_chunks(reductions._sum, (x,), (), 1 << 16)  # the parent's pool exists now
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_sum, args=(q,))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and q.get(timeout=5) == float(1 << 20)
