"""Statistics over all elements (mean, variance, ...) and the row-wise normalizations used by
neural networks (layer_norm, rms_norm over the last axis). Population statistics (ddof=0)
unless ``ddof`` says otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trueno import dispatch
from trueno.errors import SizeMismatchError
from trueno.ops import _fast
from trueno.ops._fast import F32, F64, NDARRAY
from trueno.ops._validate import as_float_array, ndim_in, non_empty, same_dtype, same_shape
from trueno.opspec import OpSpec, declare
from trueno.trace import recorder

if TYPE_CHECKING:
    from trueno.ops._types import Array, ArrayLike, Scalar

STAT_RTOL = 2e-5  # float32 two-pass statistics, reordered sums (relative to the data scale)

# mean is a sum on either backend: its crossover is sum's ("reduction"), not the two-pass
# statistics' (numba's mean ran 0.39x numpy at 2^10 in "stats")
MEAN = declare("mean", "reduction", rtol=STAT_RTOL, doc="arithmetic mean", args="red")
VARIANCE = declare("variance", "stats", rtol=STAT_RTOL, flops=3, doc="mean((a-m)^2)", args="red")
STDDEV = declare("stddev", "stats", rtol=STAT_RTOL, flops=3, doc="sqrt(variance)", args="red")
COVARIANCE = declare(
    "covariance", "stats", rtol=STAT_RTOL, flops=4, doc="mean((a-ma)(b-mb))", args="redxy"
)
CORRELATION = declare("correlation", "stats", rtol=1e-4, flops=6, doc="Pearson r", args="redxy")
ZSCORE = declare(
    "zscore", "stats", rtol=1e-4, atol=1e-5, flops=4, doc="(a - mean) / std", args="vec"
)
MINMAX = declare(
    "minmax_normalize",
    "stats",
    rtol=1e-5,
    atol=1e-6,
    flops=3,
    doc="(a - min) / (max - min)",
    args="vec",
)
LAYER_NORM = declare(
    "layer_norm",
    "rowwise",
    rtol=1e-4,
    atol=1e-5,
    flops=8,
    doc="(x - mean) / sqrt(var + eps) * gamma + beta over the last axis",
    args="row",
)
RMS_NORM = declare(
    "rms_norm",
    "rowwise",
    rtol=1e-5,
    atol=1e-6,
    flops=4,
    doc="x / sqrt(mean(x^2) + eps) * weight over the last axis",
    args="row",
)

# the common call of an op with parameters (non-empty float ndarrays of one dtype and shape,
# parameters of the type asked for, tracing off) runs numpy's kernel after the _fast test;
# any other call takes the validated path
_VARIANCE, _STDDEV, _COVARIANCE, _CORRELATION, _LAYER_NORM, _RMS_NORM = (
    _fast.reference(s) for s in (VARIANCE, STDDEV, COVARIANCE, CORRELATION, LAYER_NORM, RMS_NORM)
)
_STATS = _ROWWISE = 0  # HOST_MAX of variance's kind and of layer_norm's, kept by _fast
_fast.bind_global(globals(), "_STATS", VARIANCE)
_fast.bind_global(globals(), "_ROWWISE", LAYER_NORM)


def _stat(spec: OpSpec, a: ArrayLike, *params: object) -> Scalar:
    a = as_float_array(a, spec.name)
    non_empty(a, spec.name)
    return dispatch.run(spec, a.size, (a, *params))


@_fast.one_array(MEAN, empty_ok=False)
def mean(a: ArrayLike) -> Scalar:
    """Arithmetic mean of all elements."""
    return _stat(MEAN, a)


def variance(a: ArrayLike, ddof: int = 0) -> Scalar:
    """Variance of all elements (population by default; ddof=1 for the sample variance)."""
    if type(a) is NDARRAY and type(ddof) is int and 0 < a.size < _STATS:
        if ((dt := a.dtype) is F32 or dt is F64) and not recorder.ENABLED:
            return _VARIANCE(a, ddof)
    return _stat(VARIANCE, a, int(ddof))


def stddev(a: ArrayLike, ddof: int = 0) -> Scalar:
    """Standard deviation: sqrt(variance(a, ddof))."""
    if type(a) is NDARRAY and type(ddof) is int and 0 < a.size < _STATS:
        if ((dt := a.dtype) is F32 or dt is F64) and not recorder.ENABLED:
            return _STDDEV(a, ddof)
    return _stat(STDDEV, a, int(ddof))


def _two(a: ArrayLike, b: ArrayLike) -> bool:
    """The fast path of covariance and correlation: non-empty float ndarrays of one dtype and
    shape below the bound, tracing off."""
    if type(a) is NDARRAY and type(b) is NDARRAY:
        dt = a.dtype
        if (dt is F32 or dt is F64) and b.dtype is dt and 0 < a.size < _STATS:
            return a.shape == b.shape and not recorder.ENABLED
    return False


def covariance(a: ArrayLike, b: ArrayLike, ddof: int = 0) -> Scalar:
    """Covariance of two same-size arrays."""
    if _two(a, b) and type(ddof) is int:
        return _COVARIANCE(a, b, ddof)
    a, b = same_dtype((a, b), "covariance")
    same_shape(a, b, "covariance")
    non_empty(a, "covariance")
    return dispatch.run(COVARIANCE, a.size, (a, b, int(ddof)))


def correlation(a: ArrayLike, b: ArrayLike) -> Scalar:
    """Pearson correlation; an input without variance raises DivisionByZeroError."""
    if _two(a, b):
        return _CORRELATION(a, b)
    a, b = same_dtype((a, b), "correlation")
    same_shape(a, b, "correlation")
    non_empty(a, "correlation")
    return dispatch.run(CORRELATION, a.size, (a, b))


@_fast.one_array(ZSCORE, empty_ok=False)
def zscore(a: ArrayLike) -> Array:
    """(a - mean) / stddev; a constant input raises DivisionByZeroError."""
    return _stat(ZSCORE, a)


@_fast.one_array(MINMAX, empty_ok=False)
def minmax_normalize(a: ArrayLike) -> Array:
    """(a - min) / (max - min) into [0, 1]; a constant input raises DivisionByZeroError."""
    return _stat(MINMAX, a)


def _rows(
    spec: OpSpec, x: ArrayLike, params: tuple[ArrayLike | None, ...]
) -> tuple[Array, list[Array | None]]:
    x = as_float_array(x, spec.name)
    ndim_in(x, (1, 2), spec.name)
    non_empty(x, spec.name)
    out = []
    for p in params:
        if p is not None:
            p = as_float_array(p, spec.name).astype(x.dtype, copy=False)
            if p.shape != x.shape[-1:]:
                raise SizeMismatchError(spec.name, x.shape[-1:], p.shape)
        out.append(p)
    return x, out


def _row_params(x: ArrayLike, params: tuple[ArrayLike | None, ...], eps: float) -> bool:
    """The fast path of layer_norm and rms_norm: a non-empty 1-D or 2-D float ndarray below the
    bound, each parameter None or an ndarray of its dtype and last-axis shape, a float eps,
    tracing off."""
    if type(x) is not NDARRAY or type(eps) is not float or recorder.ENABLED:
        return False
    dt = x.dtype
    if not (0 < x.size < _ROWWISE and (dt is F32 or dt is F64) and 0 < x.ndim < 3):
        return False
    for p in params:
        if p is not None and not (type(p) is NDARRAY and p.dtype is dt and p.shape == x.shape[-1:]):
            return False
    return True


def layer_norm(
    x: ArrayLike, gamma: ArrayLike | None = None, beta: ArrayLike | None = None, eps: float = 1e-5
) -> Array:
    """Layer normalization over the last axis of a 1-D or 2-D array."""
    if _row_params(x, (gamma, beta), eps):
        return _LAYER_NORM(x, gamma, beta, eps)
    x, (gamma, beta) = _rows(LAYER_NORM, x, (gamma, beta))
    return dispatch.run(LAYER_NORM, x.size, (x, gamma, beta, float(eps)))


def rms_norm(x: ArrayLike, weight: ArrayLike | None = None, eps: float = 1e-6) -> Array:
    """RMS normalization over the last axis of a 1-D or 2-D array (Llama's RMSNorm)."""
    if _row_params(x, (weight,), eps):
        return _RMS_NORM(x, weight, eps)
    x, (weight,) = _rows(RMS_NORM, x, (weight,))
    return dispatch.run(RMS_NORM, x.size, (x, weight, float(eps)))


__all__ = [
    "correlation",
    "covariance",
    "layer_norm",
    "mean",
    "minmax_normalize",
    "rms_norm",
    "stddev",
    "variance",
    "zscore",
]
