"""Neural-network activations. Element-wise ones keep the input's shape and dtype; softmax
and log_softmax work on a 1-D array or along an axis of a 2-D array. tanh lives in
:mod:`trueno.ops.elementwise` (it is both)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trueno import dispatch
from trueno.errors import ArgumentError, EmptyInputError, ShapeError
from trueno.ops import _fast
from trueno.ops._fast import F32, F64, NDARRAY
from trueno.ops._validate import as_float_array, ndim_in, scalar
from trueno.opspec import OpSpec, declare
from trueno.trace import recorder

if TYPE_CHECKING:
    from trueno.ops._types import Array, ArrayLike

EXACT = 0.0
RELU = declare("relu", "clip", rtol=EXACT, doc="max(x, 0)")
LEAKY_RELU = declare("leaky_relu", "fused", rtol=EXACT, doc="x < 0 ? alpha x : x")
ELU = declare("elu", "fused", rtol=1e-5, atol=1e-7, flops=12, doc="x < 0 ? alpha (e^x - 1) : x")
SELU = declare("selu", "fused", rtol=1e-5, atol=1e-7, flops=13, doc="scaled elu")
SIGMOID = declare("sigmoid", "fused", rtol=2e-6, flops=14, doc="1 / (1 + e^-x)")
GELU = declare(
    "gelu",
    "fused",
    rtol=1e-5,
    atol=1e-7,
    flops=20,
    doc="x * Phi(x), tanh approximation or exact erf",
)
SILU = declare("silu", "fused", rtol=2e-6, flops=15, doc="x * sigmoid(x)")
HARDSWISH = declare("hardswish", "fused", rtol=1e-6, flops=4, doc="x * clamp(x + 3, 0, 6) / 6")
MISH = declare("mish", "fused", rtol=1e-5, atol=1e-7, flops=30, doc="x * tanh(softplus(x))")
SOFTMAX = declare(
    "softmax",
    "rowwise",
    rtol=1e-5,
    atol=1e-8,
    flops=14,
    doc="e^x / sum(e^x) along an axis",
    args="row",
)
LOG_SOFTMAX = declare(
    "log_softmax",
    "rowwise",
    rtol=1e-5,
    atol=1e-5,
    flops=14,
    doc="x - log(sum(e^x)) along an axis",
    args="row",
)

# the common call of an op with parameters (a float ndarray, parameters of the type and
# values asked for, tracing off) runs numpy's kernel after the _fast test; any other call
# takes the validated path
_GELU, _SOFTMAX, _LOG_SOFTMAX = (_fast.reference(s) for s in (GELU, SOFTMAX, LOG_SOFTMAX))
_FUSED = _ROWWISE = 0  # HOST_MAX of gelu's kind and softmax's
_fast.bind_global(globals(), "_FUSED", GELU)
_fast.bind_global(globals(), "_ROWWISE", SOFTMAX)


def _act(spec: OpSpec, x: ArrayLike, *params: object) -> Array:
    x = as_float_array(x, spec.name)
    return dispatch.run(spec, x.size, (x, *params))


@_fast.one_array(RELU)
def relu(x: ArrayLike) -> Array:
    """max(x, 0) element-wise (NaN stays NaN)."""
    return _act(RELU, x)


@_fast.with_floats(LEAKY_RELU, 1, 1, 0.01)
def leaky_relu(x: ArrayLike, alpha: float = 0.01) -> Array:
    """x for x >= 0, alpha * x below."""
    return _act(LEAKY_RELU, x, scalar(alpha, "leaky_relu", "alpha"))


@_fast.with_floats(ELU, 1, 1, 1.0)
def elu(x: ArrayLike, alpha: float = 1.0) -> Array:
    """x for x >= 0, alpha * (e^x - 1) below."""
    return _act(ELU, x, scalar(alpha, "elu", "alpha"))


@_fast.one_array(SELU)
def selu(x: ArrayLike) -> Array:
    """Self-normalizing elu: scale * elu(x, alpha) with the SELU paper's constants."""
    return _act(SELU, x)


@_fast.one_array(SIGMOID)
def sigmoid(x: ArrayLike) -> Array:
    """Logistic function 1 / (1 + e^-x)."""
    return _act(SIGMOID, x)


def gelu(x: ArrayLike, approximate: str = "tanh") -> Array:
    """Gaussian error linear unit: ``approximate="tanh"`` (GPT-2's form) or ``"none"``
    (exact, with erf)."""
    if type(x) is NDARRAY and x.size < _FUSED and ((dt := x.dtype) is F32 or dt is F64):
        if (approximate == "tanh" or approximate == "none") and not recorder.ENABLED:
            return _GELU(x, approximate)
    if approximate not in ("tanh", "none"):
        raise ArgumentError(f"gelu: approximate={approximate!r}; expected 'tanh' or 'none'")
    return _act(GELU, x, approximate)


@_fast.one_array(SILU)
def silu(x: ArrayLike) -> Array:
    """x * sigmoid(x) (also called swish)."""
    return _act(SILU, x)


swish = silu


@_fast.one_array(HARDSWISH)
def hardswish(x: ArrayLike) -> Array:
    """x * clamp(x + 3, 0, 6) / 6."""
    return _act(HARDSWISH, x)


@_fast.one_array(MISH)
def mish(x: ArrayLike) -> Array:
    """x * tanh(softplus(x))."""
    return _act(MISH, x)


def _rowwise(spec: OpSpec, x: ArrayLike, axis: int) -> Array:
    x = as_float_array(x, spec.name)
    ndim_in(x, (1, 2), spec.name)
    if x.size == 0:
        raise EmptyInputError(spec.name)
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(
            f"{spec.name}: axis {axis} is out of range for a {x.ndim}-D input; "
            f"expected -{x.ndim} <= axis < {x.ndim}"
        )
    axis %= x.ndim
    if axis != x.ndim - 1:  # kernels work on the last axis
        return dispatch.run(spec, x.size, (x.T, -1)).T
    return dispatch.run(spec, x.size, (x, -1))


def _last_axis(x: ArrayLike, axis: int) -> bool:
    """The fast path of softmax and log_softmax: a non-empty 1-D or 2-D float ndarray below
    the bound, along its last axis (``axis=-1``), tracing off."""
    return (
        type(x) is NDARRAY
        and 0 < x.size < _ROWWISE
        and ((dt := x.dtype) is F32 or dt is F64)
        and type(axis) is int
        and axis == -1
        and 0 < x.ndim < 3
        and not recorder.ENABLED
    )


def softmax(x: ArrayLike, axis: int = -1) -> Array:
    """e^x / sum(e^x) along ``axis`` (numerically stable: the max is subtracted first)."""
    if _last_axis(x, axis):
        return _SOFTMAX(x, -1)
    return _rowwise(SOFTMAX, x, axis)


def log_softmax(x: ArrayLike, axis: int = -1) -> Array:
    """x - logsumexp(x) along ``axis``."""
    if _last_axis(x, axis):
        return _LOG_SOFTMAX(x, -1)
    return _rowwise(LOG_SOFTMAX, x, axis)


__all__ = [
    "elu",
    "gelu",
    "hardswish",
    "leaky_relu",
    "log_softmax",
    "mish",
    "relu",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "swish",
]
