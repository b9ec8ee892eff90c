"""The output buffer pool of trueno's kernels in dask workers (trueno.dask.buffers)."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest

from trueno.dask.buffers import OutputPool

da = pytest.importorskip("dask.array")


def test_a_buffer_returns_only_when_no_array_uses_it():
    pool = OutputPool(min_bytes=1024, max_bytes=1 << 20)
    a = pool.empty((64, 64), np.float32)
    assert a.flags.writeable and a.flags.c_contiguous and a.flags.aligned
    assert a.shape == (64, 64) and a.dtype == np.float32
    a[:] = 2.0
    ptr = a.ctypes.data
    view = a[3:5].reshape(-1)
    del a
    gc.collect()
    assert pool.idle_bytes == 0 and float(view.sum()) == 256.0  # a view keeps it
    del view
    assert pool.idle_bytes == 64 * 64 * 4
    b = pool.empty((4096,), np.float32)  # same bytes, another shape
    assert b.ctypes.data == ptr and pool.reused == 1 and pool.fresh == 1
    c = pickle.loads(pickle.dumps(b))  # sent to another worker: a copy
    assert c.ctypes.data != ptr and np.array_equal(c, b)


def test_small_outputs_and_the_idle_bound():
    pool = OutputPool(min_bytes=1024, max_bytes=3 * 4096)
    assert pool.empty((8,), np.float64).base is None  # below min_bytes: np.empty
    arrays = [pool.empty((1024,), np.float32) for _ in range(5)]
    del arrays
    assert pool.idle_bytes == 3 * 4096  # the rest freed for real
    pool.clear()
    assert pool.idle_bytes == 0


def _pool_counts():
    from trueno.dask import buffers

    return None if buffers.POOL is None else (buffers.POOL.reused, buffers.POOL.fresh)


def test_workers_reuse_output_buffers(client):
    import trueno

    x = da.random.default_rng(1).standard_normal((4096, 512), chunks=(1024, 512))
    x = x.astype(np.float32).persist()
    before = client.run(_pool_counts)
    for _ in range(3):
        got = trueno.softmax(x).sum(axis=1).compute()
        np.testing.assert_allclose(got, 1.0, rtol=1e-5)
    after = client.run(_pool_counts)
    assert all(v is not None for v in after.values())  # installed in both worker processes
    reused = sum(v[0] - (before[a] or (0, 0))[0] for a, v in after.items())
    assert reused > 0
    y = trueno.gelu(x)
    np.testing.assert_allclose(
        y.compute(), trueno.gelu(x.compute()), rtol=1e-6, atol=1e-7
    )  # outputs reused across tasks keep their values
