"""Reductions to a scalar: sums, dot, extrema, arg-extrema, norms (and normalize). Empty
input raises EmptyInputError (numpy would return 0 or raise a bare ValueError)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trueno import dispatch
from trueno.ops import _fast
from trueno.ops._validate import as_float_array, non_empty, same_dtype, same_shape
from trueno.opspec import OpSpec, declare

if TYPE_CHECKING:
    from trueno.ops._types import Array, ArrayLike, Scalar

# Sum-like results are compared to the reference relative to sum(|a|) (see tests/ops), so the
# rtol below bounds the rounding of a reordered float32 sum (multiple accumulators).
SUM_RTOL = 1e-5
# sum_of_squares, norm_l2 and normalize are BLAS sdot on numpy, like dot: their classes are
# "sumsq" and dot's "blas1", not the multi-accumulator sums' ("reduction")

DOT = declare("dot", "blas1", rtol=SUM_RTOL, flops=2, doc="sum(a * b)", args="redxy")
SUM = declare("sum", "reduction", rtol=SUM_RTOL, doc="sum(a)", args="red")
SUM_KAHAN = declare(
    "sum_kahan", "reduction", rtol=1e-6, flops=4, doc="compensated sum(a)", args="red"
)
SUM_SQ = declare("sum_of_squares", "sumsq", rtol=SUM_RTOL, flops=2, doc="sum(a*a)", args="red")
MAX = declare("max", "extrema", rtol=0.0, doc="largest element", args="red")
MIN = declare("min", "extrema", rtol=0.0, doc="smallest element", args="red")
ARGMAX = declare("argmax", "argextrema", rtol=0.0, doc="index of the first largest", args="red")
ARGMIN = declare("argmin", "argextrema", rtol=0.0, doc="index of the first smallest", args="red")
NORM_L1 = declare("norm_l1", "reduction", rtol=SUM_RTOL, doc="sum(|a|)", args="red")
NORM_L2 = declare("norm_l2", "sumsq", rtol=SUM_RTOL, flops=2, doc="sqrt(sum(a*a))", args="red")
NORM_LINF = declare("norm_linf", "reduction", rtol=0.0, doc="max(|a|)", args="red")
NORMALIZE = declare("normalize", "blas1", rtol=SUM_RTOL, flops=3, doc="a / norm_l2(a)", args="vec")


def _reduce(spec: OpSpec, a: ArrayLike) -> Scalar:
    a = as_float_array(a, spec.name)
    non_empty(a, spec.name)
    return dispatch.run(spec, a.size, (a,))


@_fast.two_arrays(DOT)
def dot(a: ArrayLike, b: ArrayLike) -> Scalar:
    """Inner product of two same-size arrays (flattened)."""
    a, b = same_dtype((a, b), "dot")
    same_shape(a, b, "dot")
    return dispatch.run(DOT, a.size, (a, b))


@_fast.one_array(SUM)
def sum(a: ArrayLike) -> Scalar:  # noqa: A001 (trueno's name)
    """Sum of all elements (0 for an empty input, as numpy)."""
    a = as_float_array(a, "sum")
    return dispatch.run(SUM, a.size, (a,))


@_fast.one_array(SUM_KAHAN)
def sum_kahan(a: ArrayLike) -> Scalar:
    """Compensated (Kahan-Babuska) sum of all elements: error independent of n."""
    a = as_float_array(a, "sum_kahan")
    return dispatch.run(SUM_KAHAN, a.size, (a,))


@_fast.one_array(SUM_SQ)
def sum_of_squares(a: ArrayLike) -> Scalar:
    """sum(a * a)."""
    a = as_float_array(a, "sum_of_squares")
    return dispatch.run(SUM_SQ, a.size, (a,))


@_fast.one_array(MAX, empty_ok=False)
def max(a: ArrayLike) -> Scalar:  # noqa: A001
    """Largest element (NaN if any element is NaN). Empty input raises EmptyInputError."""
    return _reduce(MAX, a)


@_fast.one_array(MIN, empty_ok=False)
def min(a: ArrayLike) -> Scalar:  # noqa: A001
    """Smallest element (NaN if any element is NaN). Empty input raises EmptyInputError."""
    return _reduce(MIN, a)


@_fast.one_array(ARGMAX, empty_ok=False)
def argmax(a: ArrayLike) -> int:
    """Flat index of the first largest element (of the first NaN, if any, as numpy)."""
    return _reduce(ARGMAX, a)


@_fast.one_array(ARGMIN, empty_ok=False)
def argmin(a: ArrayLike) -> int:
    """Flat index of the first smallest element (of the first NaN, if any, as numpy)."""
    return _reduce(ARGMIN, a)


@_fast.one_array(NORM_L1)
def norm_l1(a: ArrayLike) -> Scalar:
    """sum(|a|)."""
    a = as_float_array(a, "norm_l1")
    return dispatch.run(NORM_L1, a.size, (a,))


@_fast.one_array(NORM_L2)
def norm_l2(a: ArrayLike) -> Scalar:
    """Euclidean norm sqrt(sum(a*a))."""
    a = as_float_array(a, "norm_l2")
    return dispatch.run(NORM_L2, a.size, (a,))


@_fast.one_array(NORM_LINF, empty_ok=False)
def norm_linf(a: ArrayLike) -> Scalar:
    """max(|a|). Empty input raises EmptyInputError."""
    return _reduce(NORM_LINF, a)


@_fast.one_array(NORMALIZE, empty_ok=False)
def normalize(a: ArrayLike) -> Array:
    """a / norm_l2(a); a zero vector raises DivisionByZeroError."""
    return _reduce(NORMALIZE, a)


__all__ = [
    "argmax",
    "argmin",
    "dot",
    "max",
    "min",
    "norm_l1",
    "norm_l2",
    "norm_linf",
    "normalize",
    "sum",
    "sum_kahan",
    "sum_of_squares",
]
