"""Every op declared in trueno.OPS, on every available backend, against the numpy reference
(one test body per input signature, CuPy-style): sizes 0, 1, odd, strided views; values
incl. ±0, NaN, ±Inf, subnormals and huge magnitudes; float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest
from _ophelpers import BACKENDS, DTYPES, assert_close, call, floats, vectors
from hypothesis import given
from hypothesis import strategies as st

import trueno
from trueno import OPS

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
OTHER = [b for b in BACKENDS if b != "numpy"]


def ops_with(*args: str) -> list[str]:
    return sorted(name for name, spec in OPS.items() if spec.args in args)


def test_every_op_has_a_parity_test():
    covered = set(ops_with("x", "xy", "xs", "xss", "xys", "xyz", "red", "redxy", "row", "vec"))
    matrix = {
        "matmul",
        "batched_matmul",
        "transpose",
        "matvec",
        "vecmat",
        "convolve2d",
        "embedding_lookup",
        "eigh",
    }  # tests/ops/test_matrix.py
    assert set(OPS) == covered | matrix


def compare(name: str, backend: str, *args, scale: float = 0.0, **kwargs) -> None:
    spec, fn = OPS[name], getattr(trueno, name)
    want = call("numpy", fn, *args, **kwargs)
    got = call(backend, fn, *args, **kwargs)
    if want[0] == "raise" or got[0] == "raise":
        assert got[0] == want[0] and type(got[1]) is type(want[1]), (name, want, got)
        return
    rtol = spec.rtol
    atol = spec.atol + rtol * scale
    assert_close(got[1], want[1], rtol, atol, f"{name} on {backend}")


@pytest.mark.parametrize("backend", OTHER)
@pytest.mark.parametrize("name", ops_with("x") + ops_with("xs", "xss"))
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_unary(name, backend, dtype, data):
    spec = OPS[name]
    elements = (
        floats(dtype)
        if spec.domain is None or data.draw(st.booleans())
        else floats(dtype, *spec.domain)
    )
    x = data.draw(vectors(dtype, elements))
    params = {"xs": (2.5,), "xss": (-1.5, 2.0)}.get(spec.args, ())
    if name == "scale":
        params = (data.draw(st.sampled_from([2.5, -0.0, float("inf"), 1e-3])),)
    compare(name, backend, x, *params)
    if name == "gelu":
        compare(name, backend, x, approximate="none")


@pytest.mark.parametrize("backend", OTHER)
@pytest.mark.parametrize("name", ops_with("xy", "xys", "xyz"))
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_binary(name, backend, dtype, data):
    spec = OPS[name]
    n = data.draw(st.integers(0, 300))
    arrays = [data.draw(vectors(dtype, floats(dtype), size=n)) for _ in range(len(spec.args))]
    arrays = arrays[:2] if spec.args == "xys" else arrays
    params = (0.25,) if spec.args == "xys" else ()
    compare(name, backend, *arrays, *params)
    if spec.args == "xy":  # array op scalar
        compare(name, backend, arrays[0], data.draw(st.sampled_from([2.0, -0.5, 0.0])))


REDUCE_FINITE = {np.float32: 1e15, np.float64: 1e100}  # sums of squares must not overflow


@pytest.mark.parametrize("backend", OTHER)
@pytest.mark.parametrize("name", ops_with("red", "redxy", "vec"))
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_reduction(name, backend, dtype, data):
    spec = OPS[name]
    big = REDUCE_FINITE[dtype]
    wide = data.draw(st.booleans())
    elements = floats(dtype, -big, big) if wide else floats(dtype, -1e3, 1e3)
    n = data.draw(st.one_of(st.integers(0, 300), st.sampled_from([1000, 5000])))
    xs = [
        data.draw(vectors(dtype, elements, size=n)) for _ in range(2 if spec.args == "redxy" else 1)
    ]
    finite = [np.where(np.isfinite(x), x, 0).astype(np.float64) for x in xs]
    # float32 sums are compared relative to the data's scale (condition-number aware)
    scale = (
        float(np.sum(np.abs(finite[0] * finite[-1]) if spec.args == "redxy" else np.abs(finite[0])))
        if n
        else 0.0
    )
    if name in ("sum_of_squares", "norm_l2", "variance", "stddev", "covariance"):
        scale = float(np.sum(finite[0] ** 2)) if n else 0.0
        if name in ("norm_l2", "stddev"):
            scale = np.sqrt(scale)
    if name in ("mean", "variance", "stddev", "covariance", "correlation"):
        scale = scale / max(n, 1) if name != "correlation" else 1.0
    if name in ("zscore", "minmax_normalize", "normalize", "correlation"):
        spread = float(np.ptp(finite[0])) if n else 0.0
        if n and spread <= 1e-3 * float(np.max(np.abs(finite[0]))):
            return  # near-constant input: whether it counts as constant is rounding noise
        scale = 1.0
    compare(name, backend, *xs, scale=scale)


@pytest.mark.parametrize("backend", OTHER)
@pytest.mark.parametrize("name", ops_with("row"))
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_rowwise(name, backend, dtype, data):
    rows = data.draw(st.sampled_from([None, 1, 3, 8]))
    cols = data.draw(st.sampled_from([1, 2, 5, 64, 257]))
    shape = (cols,) if rows is None else (rows, cols)
    elements = floats(dtype, -1e4, 1e4) if data.draw(st.booleans()) else floats(dtype, -30, 30)
    x = data.draw(vectors(dtype, elements, shape=shape))
    if name in ("softmax", "log_softmax"):
        compare(name, backend, x)
        if x.ndim == 2:
            compare(name, backend, x, axis=0)
    else:
        weights = [
            data.draw(
                vectors(dtype, floats(dtype, -3, 3, specials=False), size=cols, strided=False)
            )
            for _ in range(2)
        ]
        if name == "layer_norm":
            compare(name, backend, x)
            compare(name, backend, x, weights[0], weights[1], eps=1e-3)
        else:
            compare(name, backend, x)
            compare(name, backend, x, weights[0])


@pytest.mark.parametrize("backend", OTHER)
@pytest.mark.parametrize(
    "name",
    [
        "exp",
        "tanh",
        "sigmoid",
        "gelu",
        "silu",
        "softmax",
        "log_softmax",
        "add",
        "sum",
        "max",
        "argmax",
        "layer_norm",
        "rms_norm",
        "zscore",
        "minmax_normalize",
        "variance",
        "sum_kahan",
        "norm_linf",
        "argmin",
    ],
)
def test_large_inputs_split_over_threads(name, backend, monkeypatch):
    """Sizes above the thread-split threshold (chunk borders, combining partial results);
    splitting is forced (the kernels skip it while the machine is busy)."""
    from trueno.backends.numba_kernels import _par, reductions, rowwise, stats

    monkeypatch.setattr(_par, "threads_now", lambda: 2)
    monkeypatch.setattr(rowwise, "LONG_ROW_MIN", 1 << 16)
    monkeypatch.setattr(reductions, "PAR_MIN", 1 << 16)
    monkeypatch.setattr(stats, "PAR_MIN", 1 << 16)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(300_001) * 4).astype(np.float32)
    x[123_457] = 40.0  # unique max in the second half
    args = (x, x) if name == "add" else (x,)
    scale = float(np.abs(x).sum()) if name == "sum" else 0.0
    scale = float(np.mean(x.astype(np.float64) ** 2)) if name == "variance" else scale
    compare(name, backend, *args, scale=scale)
    x2 = x[:300_000].reshape(100, 3000)
    if name in ("softmax", "layer_norm", "rms_norm"):
        compare(name, backend, x2)
    if name in ("argmax", "argmin"):
        y = x.copy()
        y[200_000] = np.nan
        compare(name, backend, y)
