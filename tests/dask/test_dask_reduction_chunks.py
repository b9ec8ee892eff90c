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
    import dask

    x = da.ones((256, 64), chunks=(32, 64), dtype=np.float32)
    wide = da.ones((4, 4096), chunks=(2, 512), dtype=np.float32)
    with trueno.trace.capture() as t:
        graphs = [getattr(trueno, op)(x) for op in OPS]
        others = [trueno.gelu(x), trueno.add(x, x), trueno.softmax(x), trueno.layer_norm(x),
                  trueno.matmul(x, x.T), trueno.zscore(x), trueno.covariance(x, x),
                  trueno.argmax(x), trueno.mean(x), trueno.transpose(x)]  # fmt: skip
        with dask.config.set({"array.chunk-size": "4KiB"}):  # the two-pass row path
            others.append(trueno.softmax(wide))
    assert t.spans == []  # no chunk span, no op span: nothing ran on the client
    assert all(isinstance(o, da.Array) for o in others)
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


ROWWISE = ["softmax", "log_softmax", "layer_norm", "rms_norm"]


def _layers(arr) -> str:
    return " ".join(map(str, arr.__dask_graph__().layers))


@pytest.mark.parametrize("name", ROWWISE)
def test_rows_wider_than_a_chunk_take_two_passes_without_moving_data(name):
    import warnings

    import dask

    x = da.ones((6, 1000), chunks=(3, 200), dtype=np.float64)  # a row: 8000 B
    with dask.config.set({"array.chunk-size": "4KiB"}), warnings.catch_warnings():
        warnings.simplefilter("error")  # no DaskRechunkWarning: nothing is rechunked
        with trueno.trace.capture() as t:
            out = getattr(trueno, name)(x)
    assert t.spans == []  # graph only
    assert out.chunks == x.chunks and "rechunk" not in _layers(out)
    # with the default chunk size the same input is rechunked to whole rows, with a warning
    with pytest.warns(UserWarning, match="rechunking the last axis") as caught:
        again = getattr(trueno, name)(x)
    assert again.chunks[-1] == (1000,) and "rechunk" in _layers(again)
    assert caught[0].filename == __file__  # the warning points at the caller's line


def test_rechunked_rows_stay_within_the_chunk_size():
    import dask

    x = da.ones((64, 512), chunks=(64, 128), dtype=np.float64)  # 4 KiB rows
    with dask.config.set({"array.chunk-size": "64KiB"}):
        with pytest.warns(UserWarning, match="rechunking the last axis"):
            out = trueno.softmax(x)
    assert out.chunks == ((16, 16, 16, 16), (512,))  # 16 whole rows = 64 KiB per chunk
    np.testing.assert_allclose(out.compute(scheduler="sync"), np.full((64, 512), 1 / 512))


def test_operands_chunked_differently_are_aligned():
    an, bn = np.arange(100.0), np.arange(100.0)[::-1].copy()
    a, b = da.from_array(an, chunks=30), da.from_array(bn, chunks=17)
    out = trueno.add(a, b)
    assert out.chunks == a.chunks
    np.testing.assert_array_equal(out.compute(scheduler="sync"), an + bn)
    got = trueno.fma(a, b, da.from_array(an, chunks=40)).compute(scheduler="sync")
    np.testing.assert_array_equal(got, an * bn + an)


@pytest.mark.parametrize(
    "call",
    [
        trueno.argmax,
        trueno.argmin,
        trueno.softmax,
        lambda u: trueno.dot(u, u),
        trueno.rms_norm,
    ],
)
def test_unknown_chunk_sizes_raise_a_shape_error_before_computing(call):
    from trueno.errors import ShapeError

    x = da.from_array(np.arange(10.0) - 3, chunks=3)
    unknown = x[x > 0]  # chunk sizes only known after computing
    with pytest.raises(ShapeError, match="chunk sizes are unknown.*compute_chunk_sizes"):
        call(unknown)


def test_cupy_chunks_stay_cupy_in_the_graph():
    """Chunks that are cupy arrays (the repository's emulated cupy: a host array whose type
    says cupy) give results whose meta, hence chunk type, is still cupy's; nothing runs."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "gpu"))
    try:
        import emulated_cupy
    finally:
        sys.path.pop(0)
    import dask

    host = np.arange(64.0).reshape(8, 8)
    x = da.from_array(host.view(emulated_cupy.ndarray), chunks=(4, 8), asarray=False)
    assert type(x._meta) is emulated_cupy.ndarray
    with trueno.trace.capture() as t:
        outs = [
            trueno.gelu(x),
            trueno.add(x, x),
            trueno.mul(x, 2.0),
            trueno.softmax(x),
            trueno.layer_norm(x),
            trueno.rms_norm(x, np.ones(8)),
            trueno.matmul(x, x),
            trueno.matvec(x, da.from_array(np.ones(8).view(emulated_cupy.ndarray), chunks=4)),
        ]
    assert t.spans == []
    for out in outs:
        assert type(out._meta) is emulated_cupy.ndarray, out
    # a row wider than a chunk on cupy chunks: a clear error, not a host round trip
    wide = da.from_array(host.view(emulated_cupy.ndarray), chunks=(4, 4), asarray=False)
    with dask.config.set({"array.chunk-size": "32B"}):
        with pytest.raises(trueno.TruenoError, match="cupy arrays"):
            trueno.softmax(wide)


def _tasks(arr) -> int:
    return len(dict(arr.__dask_graph__()))


@pytest.mark.parametrize(
    "op", ["sum", "norm_l2", "max", "mean", "argmax", "argmin", "variance", "stddev"]
)
def test_reductions_merge_every_partial_in_one_task(op):
    """dask's default tree (split_every 4) would take 4 levels over 16 row blocks, each a
    scheduler round trip and a transfer on a cluster; trueno's partials are a few bytes, so
    one task merges them all and gives the final value: after dask's optimization (which
    fuses a partial with the reduction's chunk step) the graph is the 16 chunk tasks and
    one aggregate, nothing in between and no final task of its own."""
    import dask

    x = da.from_array(np.arange(64 * 8, dtype=np.float64).reshape(64, 8), chunks=(4, 8))
    assert x.numblocks == (16, 1)
    out = getattr(trueno, op)(x)
    (optimized,) = dask.optimize(out)
    assert _tasks(optimized) - _tasks(x) == 17  # 16 chunk tasks + 1 aggregate (final value)
    assert optimized.dtype == out.dtype == np.asarray(getattr(trueno, op)(x.compute())).dtype
    assert not any("-partial-" in str(name) for name in out.__dask_graph__().layers)
    np.testing.assert_allclose(
        out.compute(scheduler="sync"), getattr(trueno, op)(x.compute()), rtol=1e-12
    )


def test_flat_split_bounds_the_fan_in():
    from trueno.dask.array import FLAT_MAX, flat_split

    assert flat_split((16, 1)) == {0: 16, 1: 2}  # one level; a 1-block axis still merges
    assert flat_split((1,)) == {0: 2}
    assert flat_split(()) == {}
    for numblocks in [(5000,), (100, 100), (3000, 1), (40, 40, 40)]:
        split = flat_split(numblocks)
        fan_in = [min(s, n) for s, n in zip(split.values(), numblocks, strict=True)]
        assert np.prod(fan_in) <= FLAT_MAX
        assert all(s >= 2 for s in split.values())


@pytest.mark.parametrize("op", ["sum", "argmax", "argmin", "mean", "max"])
def test_more_blocks_than_one_task_merges_reduce_as_a_tree(op):
    from trueno.dask.array import FLAT_MAX

    xn = np.random.default_rng(3).standard_normal(3000)
    xn[[7, 2500]] = 10.0  # argmax's tie: the first index wins across the tree's levels
    xn[[11, 2900]] = -10.0
    x = da.from_array(xn, chunks=2)
    assert x.numblocks[0] > FLAT_MAX
    out = getattr(trueno, op)(x)
    assert any("-partial-" in str(name) for name in out.__dask_graph__().layers)  # 2 levels
    got = out.compute(scheduler="sync")
    np.testing.assert_allclose(got, getattr(trueno, op)(xn), rtol=1e-12)
