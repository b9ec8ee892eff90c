"""Input checks shared by the op functions: convert array-likes, check dtype and shapes, and
raise typed errors that say what was found and what was expected."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from trueno.errors import DTypeError, EmptyInputError, ShapeError, SizeMismatchError

if TYPE_CHECKING:
    from trueno.ops._types import Array, ArrayLike

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x: ArrayLike, op: str) -> Array:
    """``x`` as a float32/float64 ndarray (ints and bools become float64, like numpy's
    true division). cupy arrays pass through untouched."""
    if type(x) is np.ndarray and x.dtype in FLOAT_DTYPES:
        return x
    mod = type(x).__module__
    if mod.startswith("cupy"):
        return x
    if mod.startswith("dask") and "dask" in sys.modules:  # lazy: never np.asarray a graph
        return lazy_array(x, op)
    a = np.asarray(x)
    if a.dtype in FLOAT_DTYPES:
        return a
    if a.dtype.kind in "biu":
        return a.astype(np.float64)
    if a.dtype.kind == "f":  # float16 and longdouble compute in float32 / float64
        return a.astype(np.float32 if a.dtype.itemsize < 4 else np.float64)
    raise DTypeError(f"{op}: unsupported dtype {a.dtype}; expected float32 or float64")


def lazy_array(x: Any, op: str) -> Array:
    """A dask array checked for op ``op`` by :mod:`trueno.dask` (imported by name here, as
    dispatch imports backends: only once a dask array arrives, so ``import trueno`` stays
    dask-free). Raises UnsupportedError, without computing, for an op dask cannot run."""
    return importlib.import_module("trueno.dask.array").accept(x, op)


def same_shape(a: Array, b: Array, op: str) -> None:
    if a.shape != b.shape:
        raise SizeMismatchError(op, a.shape, b.shape)


def non_empty(a: Array, op: str) -> None:
    if a.size == 0:
        raise EmptyInputError(op)


def ndim_in(a: Array, allowed: tuple[int, ...], op: str, what: str = "input") -> None:
    if a.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ShapeError(f"{op}: {what} must be {want}, got {a.ndim}-D with shape {a.shape}")


def _is_scalar(x: object) -> bool:
    return isinstance(x, (int, float)) or (isinstance(x, np.generic) and x.ndim == 0)


def operands(a: ArrayLike, b: ArrayLike, op: str) -> tuple[Array, Array]:
    """Two operands of an element-wise op: same-shape arrays of one float dtype, or an array
    and a scalar (the scalar takes the array's dtype, as numpy does with Python numbers)."""
    if type(a) is np.ndarray and type(b) is np.ndarray:  # fast path: same-shape float arrays
        if a.shape == b.shape and a.dtype == b.dtype and a.dtype in FLOAT_DTYPES:
            return a, b
    if _is_scalar(b) and not _is_scalar(a):
        a = as_float_array(a, op)
        return a, a.dtype.type(b)
    if _is_scalar(a) and not _is_scalar(b):
        b = as_float_array(b, op)
        return b.dtype.type(a), b
    a = as_float_array(a, op)
    b = as_float_array(b, op)
    if a.shape != b.shape:
        if a.ndim == 0 or b.ndim == 0:  # 0-d arrays act as scalars
            t = np.result_type(a, b)
            return (
                (t.type(a), b.astype(t, copy=False))
                if a.ndim == 0
                else (a.astype(t, copy=False), t.type(b))
            )
        raise SizeMismatchError(op, a.shape, b.shape)
    if a.dtype != b.dtype:
        t = np.result_type(a, b)
        a, b = a.astype(t, copy=False), b.astype(t, copy=False)
    return a, b


def same_dtype(arrays: tuple[ArrayLike, ...], op: str) -> tuple[Array, ...]:
    """Arrays converted to one float dtype (the widest among them)."""
    first = arrays[0]
    if type(first) is np.ndarray and first.dtype in FLOAT_DTYPES:  # fast path: all one dtype
        t = first.dtype
        for x in arrays:
            if type(x) is not np.ndarray or x.dtype != t:
                break
        else:
            return arrays
    arrays = tuple([as_float_array(x, op) for x in arrays])
    t = arrays[0].dtype
    if any(x.dtype != t for x in arrays):
        t = np.result_type(*arrays)
        arrays = tuple(x.astype(t, copy=False) for x in arrays)
    return arrays


def scalar(x: Any, op: str, what: str) -> float:
    """A real Python number parameter (NaN allowed)."""
    if _is_scalar(x):
        return float(x)
    raise DTypeError(f"{op}: {what} must be a real number, got {type(x).__name__}")
