"""The cupy backend's kernels (imports cupy: loaded only by ``cupy_backend`` when a GPU is there).

Kernels take validated arrays like the numpy reference's and keep device data on the device.
Host arrays (dispatch sent host data here: a forced backend or a measured GPU threshold) are
copied in and the result copied back, each copy a traced transfer.
"""

from __future__ import annotations

import functools

import cupy as cp
import numpy as np

from trueno.backends.cuda import elementwise, function
from trueno.backends.cuda.layout import as_rows, threads_per_row
from trueno.backends.device import is_device_array, to_device, to_host
from trueno.errors import DTypeError
from trueno.trace import recorder

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def _host_in_host_out(fn):
    """Run ``fn`` on device copies of any host array arguments; return host data for host
    callers (the copies are traced spans), device data for device callers. While tracing,
    wait for the kernel so the op's span holds its GPU time (otherwise launches are async)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not any(type(a) is np.ndarray for a in args):
            out = fn(*args, **kwargs)
            if recorder.ENABLED:
                cp.cuda.get_current_stream().synchronize()
            return out
        dev = tuple(to_device(a) if type(a) is np.ndarray else a for a in args)
        out = fn(*dev, **kwargs)
        if not is_device_array(out):
            return out
        host = to_host(out)
        return host[()] if host.ndim == 0 else host  # a reduction gives a numpy scalar

    return wrapper


# ---- element-wise: one fused ElementwiseKernel per expression ------------------------------


def _elementwise_kernel(e: elementwise.Expr):
    kern = cp.ElementwiseKernel(
        e.in_params, "T y", f"y = {e.expr}", f"trueno_{e.name}", preamble=elementwise.PREAMBLE
    )

    def run(*arrays):
        return kern(*arrays)

    run.__name__ = e.name
    return _host_in_host_out(run)


# ---- reductions ---------------------------------------------------------------------------

_sum_sq = cp.ReductionKernel("T x", "T y", "x * x", "a + b", "y = a", "0", "trueno_sum_sq")
_norm_l2 = cp.ReductionKernel("T x", "T y", "x * x", "a + b", "y = sqrt(a)", "0", "trueno_norm_l2")
_norm_l1 = cp.ReductionKernel("T x", "T y", "fabs(x)", "a + b", "y = a", "0", "trueno_norm_l1")


def _sum(a):
    return a.sum(dtype=a.dtype)


def _dot(a, b):
    return cp.dot(a, b)


# ---- row-wise: one CUDA kernel each (cuda/rowwise.cu), one thread block per row ------------


def _suffix(a) -> str:
    suffix = _SUFFIX.get(np.dtype(a.dtype))
    if suffix is None:
        raise DTypeError(f"cupy row-wise kernels take float32 or float64, got {a.dtype}")
    return suffix


def _as_rows(a, axis: int):
    return as_rows(cp, a, axis)


def _softmax_like(kernel: str, a, axis: int = -1):
    x, restore = _as_rows(a, axis)
    y = cp.empty_like(x)
    rows, n = x.shape
    if rows and n:
        fn = function("rowwise", f"{kernel}_{_suffix(x)}")
        fn((rows,), (threads_per_row(n),), (x, y, np.int32(n)))
    return restore(y)


def _softmax(a, axis: int = -1):
    return _softmax_like("softmax", a, axis)


def _log_softmax(a, axis: int = -1):
    return _softmax_like("log_softmax", a, axis)


def _param(p, x, n: int, what: str):
    """A per-column weight/bias on the device, contiguous, in x's dtype (or x as a dummy)."""
    if p is None:
        return x, 0
    p = cp.ascontiguousarray(to_device(p) if type(p) is np.ndarray else p, dtype=x.dtype)
    if p.size != n:
        from trueno.errors import SizeMismatchError

        raise SizeMismatchError(what, n, p.size)
    return p, 1


def _layer_norm(x, gamma=None, beta=None, eps: float = 1e-5):
    rows2d, restore = _as_rows(x, -1)
    y = cp.empty_like(rows2d)
    rows, n = rows2d.shape
    w, has_w = _param(gamma, rows2d, n, "layer_norm weight")
    b, has_b = _param(beta, rows2d, n, "layer_norm bias")
    if rows and n:
        fn = function("rowwise", f"layer_norm_{_suffix(rows2d)}")
        fn(
            (rows,),
            (threads_per_row(n),),
            (
                rows2d,
                y,
                np.int32(n),
                w,
                b,
                np.int32(has_w),
                np.int32(has_b),
                rows2d.dtype.type(eps),
            ),
        )
    return restore(y)


def _rms_norm(x, weight=None, eps: float = 1e-6):
    rows2d, restore = _as_rows(x, -1)
    y = cp.empty_like(rows2d)
    rows, n = rows2d.shape
    w, has_w = _param(weight, rows2d, n, "rms_norm weight")
    if rows and n:
        fn = function("rowwise", f"rms_norm_{_suffix(rows2d)}")
        fn(
            (rows,),
            (threads_per_row(n),),
            (rows2d, y, np.int32(n), w, np.int32(has_w), rows2d.dtype.type(eps)),
        )
    return restore(y)


# ---- matrix: cuBLAS through cupy.matmul ----------------------------------------------------


def _matmul(a, b):
    return cp.matmul(a, b)


def _matvec(a, x):
    return cp.matmul(a, x)


def _vecmat(x, a):
    return cp.matmul(x, a)


def _transpose(a):
    return cp.ascontiguousarray(a.T)


_DIRECT = {
    "sum": _sum,
    "dot": _dot,
    "max": lambda a: a.max(),
    "min": lambda a: a.min(),
    "argmax": lambda a: a.argmax(),
    "argmin": lambda a: a.argmin(),
    "sum_of_squares": lambda a: _sum_sq(a),
    "norm_l2": lambda a: _norm_l2(a),
    "norm_l1": lambda a: _norm_l1(a),
    "norm_linf": lambda a: cp.abs(a).max(),
    "mean": lambda a: a.mean(dtype=a.dtype),
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "layer_norm": _layer_norm,
    "rms_norm": _rms_norm,
    "matmul": _matmul,
    "matvec": _matvec,
    "vecmat": _vecmat,
    "transpose": _transpose,
}


def _gelu_kernel():
    tanh_form = _elementwise_kernel(elementwise.EXPRESSIONS["gelu"])
    erf_form = _elementwise_kernel(elementwise.EXPRESSIONS["gelu_erf"])

    def gelu(x, approximate="tanh"):
        return tanh_form(x) if approximate == "tanh" else erf_form(x)

    return gelu


def register_all(table: dict) -> None:
    """Fill the cupy backend's kernel table (element-wise kernels compile on first call)."""
    for e in elementwise.EXPRESSIONS.values():
        if e.name not in ("gelu", "gelu_erf"):
            table[e.name] = _elementwise_kernel(e)
    table["gelu"] = _gelu_kernel()
    for name, attr in elementwise.UFUNCS.items():
        table[name] = _host_in_host_out(getattr(cp, attr))
    for name, fn in _DIRECT.items():
        table[name] = _host_in_host_out(fn)
