"""Shared by the op tests: backends to run, hypothesis strategies, result comparison."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import trueno
from trueno import backends
from trueno.backends import Backend

BACKENDS = [
    b.value for b in (Backend.NUMPY, Backend.NUMBA, Backend.CUPY) if backends.is_available(b)
]
DTYPES = [np.float32, np.float64]
SIZES = st.one_of(st.sampled_from([0, 1, 2, 3, 7, 16, 17, 33, 64, 65]), st.integers(0, 300))


def floats(dtype, lo=None, hi=None, specials=True):
    """Element values: all floats of the dtype (±0, NaN, ±Inf, subnormals, huge), or a range
    (plus the specials when asked)."""
    width = 32 if dtype == np.float32 else 64
    if lo is None:
        return st.floats(width=width, allow_nan=specials, allow_infinity=specials)
    if width == 32:
        lo, hi = float(np.float32(lo)), float(np.float32(hi))
    base = st.floats(lo, hi, width=width)
    if specials:
        return st.one_of(base, base, base, st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf]))
    return base


@st.composite
def vectors(draw, dtype, elements, size=None, shape=None, strided=None):
    """A float array of ``size`` (or ``shape``); sometimes a strided (non-contiguous) view."""
    if shape is None:
        shape = (draw(SIZES) if size is None else size,)
    if strided is None:
        strided = draw(st.booleans())
    if strided and len(shape) >= 1:
        big = draw(hnp.arrays(dtype, (shape[0] * 2,) + tuple(shape[1:]), elements=elements))
        return big[::2]
    return draw(hnp.arrays(dtype, shape, elements=elements))


def call(backend: str, fn, *args, **kwargs):
    """fn(*args) with ``backend`` forced; returns ("ok", result) or ("raise", exception)."""
    with trueno.use_backend(backend):
        try:
            return "ok", fn(*args, **kwargs)
        except trueno.TruenoError as exc:
            return "raise", exc


def assert_close(got, want, rtol: float, atol: float = 0.0, what: str = "") -> None:
    """Same shape and dtype; NaN where the reference has NaN; infinities equal; finite values
    within rtol/atol (plus the dtype's smallest normal, for subnormal results)."""
    got_a, want_a = np.asarray(got), np.asarray(want)
    assert got_a.shape == want_a.shape, (what, got_a.shape, want_a.shape)
    assert got_a.dtype == want_a.dtype, (what, got_a.dtype, want_a.dtype)
    if got_a.dtype.kind in "iu":
        np.testing.assert_array_equal(got_a, want_a, err_msg=what)
        return
    tiny = float(np.finfo(want_a.dtype).tiny)
    np.testing.assert_allclose(
        got_a, want_a, rtol=rtol, atol=atol + tiny, equal_nan=True, err_msg=what
    )
