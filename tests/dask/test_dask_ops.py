"""trueno's ops on dask arrays, computed on a real 2-process LocalCluster: results equal
the numpy reference at the op's tolerance, graphs are lazy, nothing computes on the client."""

from __future__ import annotations

import numpy as np
import pytest

import trueno
from trueno.errors import UnsupportedError
from trueno.opspec import OPS

da = pytest.importorskip("dask.array")

DTYPES = [np.float32, np.float64]


def _tol(name, dtype):
    """The op's declared tolerance (float32's; it bounds float64 too: chunks may run on
    another backend than the whole array)."""
    spec = OPS[name]
    return dict(rtol=spec.rtol, atol=spec.atol + 1e-12)


@pytest.fixture(autouse=True)
def no_client_compute(monkeypatch):
    """Building a graph must never turn a dask array into numpy on the client: any
    conversion in the op call raises (tests call .compute() explicitly, after)."""
    state = {"armed": True}

    def guard(orig):
        def wrapped(self, *a, **k):
            if state["armed"]:
                raise AssertionError("a dask array was converted/computed during an op call")
            return orig(self, *a, **k)

        return wrapped

    for attr in ("__array__", "compute", "persist", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(da.Array, attr, guard(getattr(da.Array, attr)))
    yield state


def _data(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _compute(guard, x):
    guard["armed"] = False
    try:
        return x.compute()
    finally:
        guard["armed"] = True


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,params",
    [("gelu", ()), ("sigmoid", ()), ("exp", ()), ("relu", ()), ("leaky_relu", (0.1,))],
)
def test_elementwise(client, no_client_compute, name, params, dtype):
    x = _data((300, 40), dtype)
    dx = da.from_array(x, chunks=(70, 40))
    out = getattr(trueno, name)(dx, *params)
    assert isinstance(out, da.Array) and out.dtype == dtype
    assert out.npartitions == dx.npartitions
    got = _compute(no_client_compute, out)
    np.testing.assert_allclose(got, getattr(trueno, name)(x, *params), **_tol(name, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_with_numpy_and_scalar(client, no_client_compute, dtype):
    x, y = _data((500,), dtype), _data((500,), dtype, 1)
    dx = da.from_array(x, chunks=120)
    got = _compute(no_client_compute, trueno.add(dx, y))
    np.testing.assert_array_equal(got, x + y)
    got = _compute(no_client_compute, trueno.mul(dx, 3.0))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, x * dtype(3.0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "layer_norm", "rms_norm"])
def test_rowwise(client, no_client_compute, name, dtype):
    x = _data((200, 48), dtype)
    dx = da.from_array(x, chunks=(64, 48))
    out = getattr(trueno, name)(dx)
    assert out.dtype == dtype
    got = _compute(no_client_compute, out)
    np.testing.assert_allclose(got, getattr(trueno, name)(x), **_tol(name, dtype))


def test_rowwise_params_and_axis(client, no_client_compute):
    x = _data((90, 32), np.float32)
    g, b = _data((32,), np.float32, 1), _data((32,), np.float32, 2)
    dx = da.from_array(x, chunks=(40, 32))
    got = _compute(no_client_compute, trueno.layer_norm(dx, g, b))
    np.testing.assert_allclose(got, trueno.layer_norm(x, g, b), **_tol("layer_norm", np.float32))
    got = _compute(no_client_compute, trueno.softmax(dx, axis=0))
    np.testing.assert_allclose(got, trueno.softmax(x, axis=0), **_tol("softmax", np.float32))


def test_rowwise_rechunk_warns(client, no_client_compute):
    x = _data((60, 64), np.float64)
    dx = da.from_array(x, chunks=(30, 16))
    with pytest.warns(UserWarning, match="rechunking the last axis"):
        out = trueno.softmax(dx)
    np.testing.assert_allclose(_compute(no_client_compute, out), trueno.softmax(x), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name",
    ["sum", "sum_kahan", "sum_of_squares", "norm_l1", "norm_l2", "norm_linf", "max", "min",
     "mean", "variance", "stddev"],
)  # fmt: skip
def test_reductions(client, no_client_compute, name, dtype):
    x = _data((130, 30), dtype) + 0.5
    dx = da.from_array(x, chunks=(40, 13))
    out = getattr(trueno, name)(dx)
    assert isinstance(out, da.Array) and out.ndim == 0 and out.dtype == dtype
    got = _compute(no_client_compute, out)
    want = getattr(trueno, name)(x)
    if name.startswith("sum") or name == "norm_l1":  # relative to sum(|x|), as tests/ops
        assert abs(got - want) <= 1e-5 * np.abs(x).sum()
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_variance_ddof_and_dot(client, no_client_compute):
    x, y = _data((1000,), np.float64), _data((1000,), np.float64, 3)
    dx, dy = da.from_array(x, chunks=300), da.from_array(y, chunks=170)  # unaligned chunks
    got = _compute(no_client_compute, trueno.variance(dx, ddof=1))
    np.testing.assert_allclose(got, np.var(x, ddof=1), rtol=1e-12)
    got = _compute(no_client_compute, trueno.dot(dx, dy))
    np.testing.assert_allclose(got, x @ y, rtol=1e-12)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg_extrema_chunk_edges_and_ties(client, no_client_compute, name):
    big = name == "argmax"
    x = np.zeros((12, 10), np.float32)
    dx_chunks = (5, 4)  # blocks start at rows 0,5,10 and columns 0,4,8
    for pos in [(0, 0), (4, 3), (5, 4), (11, 9), (9, 8), (5, 3)]:  # block corners and edges
        x[:] = 0
        x[pos] = 7 if big else -7
        out = getattr(trueno, name)(da.from_array(x, chunks=dx_chunks))
        assert out.dtype == np.int64
        assert _compute(no_client_compute, out) == np.ravel_multi_index(pos, x.shape)
    x[:] = 0
    for pos in [(11, 9), (5, 4), (4, 8)]:  # ties across three blocks: the first flat index
        x[pos] = 7 if big else -7
    got = _compute(no_client_compute, getattr(trueno, name)(da.from_array(x, chunks=dx_chunks)))
    assert got == getattr(np, name)(x) == np.ravel_multi_index((4, 8), x.shape)
    x[(8, 1)] = np.nan  # NaN wins, as numpy
    got = _compute(no_client_compute, getattr(trueno, name)(da.from_array(x, chunks=dx_chunks)))
    assert got == getattr(np, name)(x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_blockwise(client, no_client_compute, dtype):
    a, b = _data((70, 50), dtype), _data((50, 30), dtype, 1)
    da_, db = da.from_array(a, chunks=(30, 20)), da.from_array(b, chunks=(20, 16))
    out = trueno.matmul(da_, db)
    assert out.dtype == dtype and out.shape == (70, 30)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(_compute(no_client_compute, out), a @ b, rtol=tol, atol=tol)


def test_lazy_nothing_runs_before_compute(client, no_client_compute):
    def task_keys(dask_scheduler):
        return {str(k) for k in dask_scheduler.tasks}

    x = da.from_array(_data((400, 32), np.float32), chunks=(100, 32))
    outs = [trueno.softmax(x), trueno.gelu(x), trueno.sum(x), trueno.argmax(x)]
    mine = {str(k) for o in outs for k in o.__dask_graph__()}
    # no task of these graphs reached the scheduler (earlier tests' tasks may still be
    # being released there, so their count is no measure)
    assert not mine & client.run_on_scheduler(task_keys)
    assert all(isinstance(o, da.Array) for o in outs)
    assert len(outs[0].__dask_graph__()) > x.npartitions  # a graph of per-chunk tasks


def test_ints_become_float64_lazily(client, no_client_compute):
    x = np.arange(100, dtype=np.int32)
    out = trueno.sum(da.from_array(x, chunks=30))
    assert out.dtype == np.float64
    assert _compute(no_client_compute, out) == x.sum()


@pytest.mark.parametrize(
    "call",
    [
        lambda x: trueno.eigh(x),
        lambda x: trueno.embedding_lookup(x, np.array([1, 2])),
        lambda x: trueno.batched_matmul(x[None], x[None]),
        lambda x: trueno.eigh_reconstruct(x[0], x),
        lambda x: trueno.convolve2d(x, x[:2, :2]),
    ],
)
def test_unsupported_raise_without_compute(client, no_client_compute, call):
    x = da.from_array(_data((8, 8), np.float64), chunks=4)
    with pytest.raises(UnsupportedError, match="not supported on dask arrays"):
        call(x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("shape,chunks", [((40, 600), (16, 130)), ((2000,), 300)])
def test_rowwise_two_pass_when_a_row_is_wider_than_a_chunk(
    client, no_client_compute, name, dtype, shape, chunks
):
    import dask

    x = _data(shape, dtype) * 3
    w, b = _data(shape[-1:], dtype, 1), _data(shape[-1:], dtype, 2)
    dx = da.from_array(x, chunks=chunks)
    params = {"layer_norm": (w, b), "rms_norm": (w,)}.get(name, ())
    with dask.config.set({"array.chunk-size": "1KiB"}):  # a row is >= 2400 bytes
        out = getattr(trueno, name)(dx, *params)
    assert out.chunks == dx.chunks and out.dtype == dtype  # no rechunk: no data moved
    got = _compute(no_client_compute, out)
    want = getattr(trueno, name)(x, *params)
    np.testing.assert_allclose(got, want, **_tol(name, dtype))
    if name == "layer_norm":  # gamma alone, then nothing
        with dask.config.set({"array.chunk-size": "1KiB"}):
            outs = [trueno.layer_norm(dx, w), trueno.layer_norm(dx)]
        for o, want in zip(outs, [trueno.layer_norm(x, w), trueno.layer_norm(x)], strict=True):
            np.testing.assert_allclose(_compute(no_client_compute, o), want, **_tol(name, dtype))


def test_workers_size_their_threads_without_the_plugin(client, no_client_compute):
    """No plugin registered in this module's cluster: a worker's first trueno task sizes the
    pool from its threads and the workers on its host, and BLAS runs at one thread."""

    def settings():
        from threadpoolctl import threadpool_info

        from trueno import config
        from trueno.dask.plugin import SETTINGS

        blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        return dict(SETTINGS), config.NUM_THREADS, blas

    from trueno.dask.plugin import pool_size

    x = da.from_array(_data((64, 8), np.float32), chunks=(8, 8))
    workers = list(client.scheduler_info()["workers"])
    no_client_compute["armed"] = False
    for address in workers:  # each worker runs trueno tasks
        client.compute(trueno.gelu(x), workers=[address]).result()
    no_client_compute["armed"] = True
    per_worker = client.run(settings)
    assert sorted(per_worker) == sorted(workers)
    for s, num_threads, blas in per_worker.values():
        assert s["source"] == "default" and s["workers_on_host"] == 2 and s["nthreads"] == 1
        assert s["pool"] == num_threads == pool_size(1, 2, s["cores"])
        assert s["pool"] * s["nthreads"] * s["workers_on_host"] <= max(s["cores"], 2)
        assert blas and all(n == 1 for n in blas)


@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_array_statistics_then_map(client, no_client_compute, dtype):
    """normalize, zscore, minmax_normalize, covariance, correlation and transpose: lazy, equal
    to the host op, with empty blocks and operands on other chunks."""
    x = _data((130, 30), dtype) * 2 + 1
    y = (_data((130, 30), dtype, 5) + x).astype(dtype)
    chunks = ((0, 40, 0, 90), (13, 17))
    dx, dy = da.from_array(x, chunks=chunks), da.from_array(y, chunks=(50, 30))
    calls = {
        "normalize": (lambda a: trueno.normalize(a), (dx,), (x,)),
        "zscore": (lambda a: trueno.zscore(a), (dx,), (x,)),
        "minmax_normalize": (lambda a: trueno.minmax_normalize(a), (dx,), (x,)),
        "covariance": (lambda a, b: trueno.covariance(a, b, ddof=1), (dx, dy), (x, y)),
        "correlation": (lambda a, b: trueno.correlation(a, b), (dx, dy), (x, y)),
        "transpose": (lambda a: trueno.transpose(a), (dx,), (x,)),
    }
    for name, (call, lazy_args, host_args) in calls.items():
        out = call(*lazy_args)
        want = call(*host_args)
        assert isinstance(out, da.Array) and out.dtype == dtype and out.shape == np.shape(want)
        got = _compute(no_client_compute, out)
        rtol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(
            got, want, rtol=rtol, atol=rtol * np.abs(want).max(), err_msg=name
        )


def test_constant_inputs_raise_on_compute_as_on_the_host(client, no_client_compute):
    from trueno.errors import DivisionByZeroError

    c = da.full((100,), 0.1, chunks=7)  # uneven blocks whose float means differ in the last bit
    assert _compute(no_client_compute, trueno.variance(c)) == 0.0
    for call in (
        trueno.zscore,
        trueno.minmax_normalize,
        lambda a: trueno.correlation(a, a),
        lambda a: trueno.normalize(a * 0),
    ):
        lazy = call(c)  # building the graph raises nothing
        with pytest.raises(DivisionByZeroError):
            _compute(no_client_compute, lazy)
