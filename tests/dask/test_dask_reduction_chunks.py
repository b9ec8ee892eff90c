"""Graph shapes on dask arrays (synchronous scheduler): the sum family as one ``da.reduction``
(kernel partial as its chunk step; empty blocks give neutral partials; building the graph
runs no kernel, dask's meta call included), and matvec/vecmat as lazy matmuls."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import trueno  # noqa: E402

OPS = ["sum", "sum_kahan", "sum_of_squares", "norm_l1", "norm_l2", "norm_linf", "max", "min"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_blocks_change_nothing(op, dtype):
    xn = np.random.default_rng(1).standard_normal((1000, 37)).astype(dtype) - 3.0
    x = da.from_array(xn, chunks=((0, 0, 300, 0, 700), (16, 0, 21)))
    got = getattr(trueno, op)(x).compute(scheduler="sync")
    want = getattr(trueno, op)(xn)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_building_the_graph_runs_no_kernel():
    x = da.ones((256, 64), chunks=(32, 64), dtype=np.float32)
    with trueno.trace.capture() as t:
        graphs = [getattr(trueno, op)(x) for op in OPS]
    assert t.spans == []  # no chunk span, no op span: nothing ran on the client
    assert float(graphs[0].compute(scheduler="sync")) == 256 * 64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lazy_vector", [True, False])
def test_matvec_and_vecmat_are_lazy_matmuls(dtype, lazy_vector):
    rng = np.random.default_rng(2)
    an = rng.standard_normal((300, 70)).astype(dtype)
    vn, wn = rng.standard_normal(70).astype(dtype), rng.standard_normal(300).astype(dtype)
    a = da.from_array(an, chunks=(64, 32))
    v = da.from_array(vn, chunks=32) if lazy_vector else vn
    w = da.from_array(wn, chunks=64) if lazy_vector else wn
    tol = 1e-4 if dtype == np.float32 else 1e-10
    with trueno.trace.capture() as t:
        pairs = [(trueno.matvec(a, v), an @ vn), (trueno.vecmat(w, a), wn @ an)]
    assert t.spans == []  # graphs only
    for got, want in pairs:
        assert isinstance(got, da.Array) and got.dtype == want.dtype
        out = got.compute(scheduler="sync")
        assert out.shape == want.shape and out.dtype == want.dtype
        np.testing.assert_allclose(out, want, rtol=tol, atol=tol * np.abs(want).max())


def test_a_graph_built_while_tracing_leaves_the_client_untraced_after():
    """Computed in the process that built it (sync scheduler), a traced graph records into
    the client's capture while it lasts, and turns nothing on for later."""
    from trueno.trace import recorder

    x = da.ones((64, 8), chunks=(16, 8), dtype=np.float32)
    with trueno.trace.capture() as t:
        lazy = trueno.sum(x)
    assert not recorder.ENABLED
    assert float(lazy.compute(scheduler="sync")) == 64 * 8
    assert not recorder.ENABLED  # (it stayed on forever before: the chunk task started it)
    assert t.spans == []
