"""On a real GPU: every cupy kernel against the numpy reference at the op's tolerance, the
quantized matvec kernels against gguf-py, transfers traced, device data staying on the device.
Every test here is ``@pytest.mark.gpu`` and skips with the reason when cupy or a device is
missing (conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

import trueno
from trueno import trace
from trueno.backends import cupy_backend, numpy_backend
from trueno.device import HostFallback, allow_host_fallback, is_device_array, to_device, to_host
from trueno.opspec import OPS

pytestmark = pytest.mark.gpu

POSITIVE = {"sqrt", "ln", "log2", "log10", "pow"}
UNIT = {"asin", "acos", "atanh"}
ROWWISE = ("softmax", "log_softmax", "layer_norm", "rms_norm")
SHAPES = [(1,), (7,), (1000,), (3, 33), (4, 4097), (2, 3, 64)]


def inputs(name: str, shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype) * dtype(3)
    if name in POSITIVE:
        x = np.abs(x) + dtype(0.1)
    elif name in UNIT:
        x = np.tanh(x) * dtype(0.99)
    elif name == "acosh":
        x = np.abs(x) + dtype(1)
    y = rng.standard_normal(shape).astype(dtype)
    return x, y


def kernels():
    return sorted(
        n for n, fn in dict.items(cupy_backend.KERNELS) if not isinstance(fn, HostFallback)
    )


def compare(name, got, want, dtype):
    spec = OPS[name]
    rtol = max(spec.rtol, 2e-6) if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(
        to_host(got), want, rtol=rtol, atol=max(spec.atol, 1e-6), equal_nan=True, err_msg=name
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_elementwise_and_reductions(shape, dtype):
    rng = np.random.default_rng(0)
    for name in kernels():
        if name in ROWWISE or name in ("matmul", "matvec", "vecmat", "transpose"):
            continue
        ref = numpy_backend.KERNELS[name]
        fn = cupy_backend.KERNELS[name]
        x, y = inputs(name, shape, dtype, rng)
        nargs = (
            2
            if name in ("add", "sub", "mul", "div", "minimum", "maximum", "copysign", "pow", "dot")
            else 1
        )
        if name in (
            "dot",
            "sum",
            "max",
            "min",
            "argmax",
            "argmin",
            "sum_of_squares",
            "norm_l1",
            "norm_l2",
            "norm_linf",
            "mean",
        ):
            x, y = x.ravel(), y.ravel()
        args = (x, y)[:nargs]
        got = fn(*(to_device(a) for a in args))
        assert is_device_array(got), f"{name} left the device"
        compare(name, got, ref(*args), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 5), (3, 32), (5, 1000), (2, 4096), (64, 896), (2, 3, 100)], ids=str
)
def test_rowwise_one_kernel_each(shape, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype) * dtype(4)
    w = rng.standard_normal(shape[-1]).astype(dtype)
    b = rng.standard_normal(shape[-1]).astype(dtype)
    k = cupy_backend.KERNELS
    r = numpy_backend.KERNELS
    dx = to_device(x)
    for name in ("softmax", "log_softmax"):
        compare(name, k[name](dx), r[name](x), dtype)
        compare(name, k[name](dx, axis=0), r[name](x, axis=0), dtype)
    compare(
        "layer_norm",
        k["layer_norm"](dx, to_device(w), to_device(b), 1e-5),
        r["layer_norm"](x, w, b, 1e-5),
        dtype,
    )
    compare("layer_norm", k["layer_norm"](dx), r["layer_norm"](x), dtype)
    compare("rms_norm", k["rms_norm"](dx, to_device(w), 1e-6), r["rms_norm"](x, w, 1e-6), dtype)
    compare("rms_norm", k["rms_norm"](dx), r["rms_norm"](x), dtype)


def test_softmax_special_values_match_numpy():
    x = np.array([[0.0, -np.inf, 1.0], [np.nan, 1.0, 2.0], [1e30, -1e30, 0.0]], np.float32)
    with np.errstate(all="ignore"):
        want = numpy_backend.KERNELS["softmax"](x)
    got = to_host(cupy_backend.KERNELS["softmax"](to_device(x)))
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (64, 128, 32), (257, 513, 129)])
def test_matmul_cublas(m, k, n):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    compare("matmul", cupy_backend.KERNELS["matmul"](to_device(a), to_device(b)), a @ b, np.float32)
    compare(
        "matvec",
        cupy_backend.KERNELS["matvec"](to_device(a), to_device(b[:, 0])),
        a @ b[:, 0],
        np.float32,
    )


def test_public_api_keeps_device_arrays_on_device_and_traces_copies():
    x = np.random.default_rng(3).standard_normal((8, 300)).astype(np.float32)
    with trace.capture() as t:
        dx = trueno.to_device(x)
        dy = trueno.softmax(dx)
        assert is_device_array(dy)
        y = trueno.to_host(dy)
    np.testing.assert_allclose(y, numpy_backend.KERNELS["softmax"](x), rtol=1e-5)
    transfers = [
        (s["name"], s["bytes"], s["backend"]) for s in t.spans if s["category"] == "transfer"
    ]
    assert transfers == [("to_device", x.nbytes, "cupy"), ("to_host", x.nbytes, "cupy")]
    assert [s["backend"] for s in t.spans if s["name"] == "softmax"] == ["cupy"]


def test_forced_cupy_on_host_data_copies_in_and_out_traced():
    x = np.linspace(-2, 2, 1000, dtype=np.float32)
    with trace.capture() as t, trueno.use_backend("cupy"):
        y = trueno.exp(x)
    assert type(y) is np.ndarray
    np.testing.assert_allclose(y, np.exp(x), rtol=OPS["exp"].rtol)
    names = [s["name"] for s in t.spans if s["category"] == "transfer"]
    assert names == ["to_device", "to_host"]


def test_op_without_gpu_kernel_needs_permission():
    dx = to_device(np.arange(10, dtype=np.float32))
    with pytest.raises(trueno.TruenoError, match="allow_host_fallback"):
        cupy_backend.KERNELS.get("clamp")(dx, 1.0, 5.0)
    with trace.capture() as t, allow_host_fallback():
        out = cupy_backend.KERNELS.get("clamp")(dx, 1.0, 5.0)
    assert is_device_array(out)
    np.testing.assert_array_equal(to_host(out), np.clip(np.arange(10, dtype=np.float32), 1, 5))
    cats = [s["category"] for s in t.spans]
    assert cats.count("fallback") == 1 and cats.count("transfer") == 2


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q6_K"])
@pytest.mark.parametrize("rows,cols", [(1, 256), (3, 512), (130, 2304), (1000, 4096)])
def test_quant_matvec_matches_gguf_py(name, rows, cols):
    from gguf import GGMLQuantizationType, quants
    from test_quant_kernels import random_blocks

    from trueno.gguf.constants import GGMLType
    from trueno.quant.gpu import prepare_gpu

    t = GGMLType[name]
    rng = np.random.default_rng(rows)
    w = random_blocks(t, rows, cols, rng)
    x = rng.standard_normal(cols).astype(np.float32)
    ref_w = quants.dequantize(w, GGMLQuantizationType(int(t))).astype(np.float64)
    ref = ref_w @ x
    mat = prepare_gpu(w, t, (rows, cols))
    got = to_host(mat.matvec(to_device(x)))
    scale = np.abs(ref_w) @ np.abs(x) + 1e-6
    assert np.all(np.abs(got - ref) <= 2e-6 * cols**0.5 * scale + 1e-7)
    for n in (1, 2, 8, 9, 17):  # column groups of 8: full, partial, several
        xs = rng.standard_normal((n, cols)).astype(np.float32)
        xs[0] = x
        got_batch = to_host(mat.matmul(to_device(xs)))
        assert got_batch.shape == (n, rows)
        np.testing.assert_allclose(got_batch[0], got, rtol=1e-6, atol=1e-6)
        want = xs.astype(np.float64) @ ref_w.T
        scale_b = np.abs(xs.astype(np.float64)) @ np.abs(ref_w).T + 1e-6
        assert np.all(np.abs(got_batch - want) <= 2e-6 * cols**0.5 * scale_b + 1e-7)


def test_a_measured_gpu_threshold_sends_host_data_to_the_gpu(monkeypatch):
    """Once GPU_THRESHOLDS holds a measured size for an op class, AUTO copies host inputs at
    least that large to the GPU (the copies traced) and keeps smaller ones on the host."""
    from trueno import dispatch

    monkeypatch.setitem(dispatch.GPU_THRESHOLDS, "rowwise", 4096)
    rng = np.random.default_rng(5)
    small = rng.standard_normal((4, 512)).astype(np.float32)  # 2048 elements
    big = rng.standard_normal((8, 512)).astype(np.float32)  # 4096 elements
    with trace.capture() as t:
        y_small = trueno.softmax(small)
        y_big = trueno.softmax(big)
    assert type(y_small) is np.ndarray and type(y_big) is np.ndarray
    np.testing.assert_allclose(y_big, numpy_backend.KERNELS["softmax"](big), rtol=1e-5)
    backends = [s["backend"] for s in t.spans if s["name"] == "softmax"]
    assert backends[0] in ("numpy", "numba") and backends[1] == "cupy", backends
    moved = [(s["name"], s["bytes"]) for s in t.spans if s["category"] == "transfer"]
    assert moved == [("to_device", big.nbytes), ("to_host", big.nbytes)]
