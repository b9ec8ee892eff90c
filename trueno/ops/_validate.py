"""Input checks shared by the op functions: convert array-likes, check dtype and shapes, and
raise typed errors that say what was found and what was expected."""

from __future__ import annotations

import numpy as np

from trueno.errors import DTypeError, EmptyInputError, ShapeError, SizeMismatchError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x, op: str) -> np.ndarray:
    """``x`` as a float32/float64 ndarray (ints and bools become float64, like numpy's
    true division). cupy arrays pass through untouched."""
    if type(x) is np.ndarray and x.dtype in FLOAT_DTYPES:
        return x
    if type(x).__module__.startswith("cupy"):
        return x
    a = np.asarray(x)
    if a.dtype in FLOAT_DTYPES:
        return a
    if a.dtype.kind in "biu":
        return a.astype(np.float64)
    if a.dtype.kind == "f":  # float16 and longdouble compute in float32 / float64
        return a.astype(np.float32 if a.dtype.itemsize < 4 else np.float64)
    raise DTypeError(f"{op}: unsupported dtype {a.dtype}; expected float32 or float64")


def same_shape(a, b, op: str) -> None:
    if a.shape != b.shape:
        raise SizeMismatchError(op, a.shape, b.shape)


def non_empty(a, op: str) -> None:
    if a.size == 0:
        raise EmptyInputError(op)


def ndim_in(a, allowed: tuple[int, ...], op: str, what: str = "input") -> None:
    if a.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ShapeError(f"{op}: {what} must be {want}, got {a.ndim}-D with shape {a.shape}")
