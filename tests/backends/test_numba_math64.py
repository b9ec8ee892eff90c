"""The float64 polynomials exp64 and tanh64 of numba_kernels/_math.py against numpy, in ulps
of the result, over the whole float64 range (hypothesis) and over dense grids: normal and
subnormal results, overflow, huge and tiny inputs, ±0, ±inf and NaN."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

numba = pytest.importorskip("numba")

from trueno.backends.numba_kernels import _math as M  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
EXP_ULP = 1
TANH_ULP = 2


@numba.njit(error_model="numpy")  # no cache: it would not see edits to _math
def _apply64(which, x, out):
    for i in range(x.size):
        out[i] = M.exp64(x[i]) if which == 0 else M.tanh64(x[i])


def run(which: int, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _apply64(which, x, out)
    return out


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in representable float64 steps (subnormals included; -0 and +0 are 0 apart)."""

    def ordered(v):
        i = v.view(np.int64)
        return np.where(i < 0, np.int64(-(2**63)) - i, i)

    return np.abs(ordered(got) - ordered(want))


def check(which: int, x: np.ndarray, bound: int) -> None:
    got, want = run(which, x), (np.exp if which == 0 else np.tanh)(x)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    special = ~np.isfinite(want)
    assert np.array_equal(got[special & ~np.isnan(want)], want[special & ~np.isnan(want)])
    fin = np.isfinite(want)
    err = ulps(got[fin], want[fin])
    assert err.max(initial=0) <= bound, (x[fin][err.argmax()], got[fin][err.argmax()])


SPECIALS = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2e-308, 1e-300, 1e300, -1e300]
)


@pytest.mark.parametrize("which, bound", [(0, EXP_ULP), (1, TANH_ULP)], ids=["exp", "tanh"])
@given(x=hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(width=64)))
@settings(max_examples=300)
def test_whole_range(which, bound, x):
    check(which, x, bound)


@pytest.mark.parametrize(
    "which, bound, lo, hi",
    [(0, EXP_ULP, -746.0, 710.0), (1, TANH_ULP, -25.0, 25.0)],
    ids=["exp", "tanh"],
)
@given(data=st.data())
@settings(max_examples=300)
def test_active_range(which, bound, lo, hi, data):
    """Dense in the active range: exp from underflow to overflow, tanh into saturation."""
    x = data.draw(hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(lo, hi)))
    check(which, x, bound)


def test_exp64_grids():
    rng = np.random.default_rng(0)
    check(0, rng.uniform(-746.0, 710.0, 400_000), EXP_ULP)
    check(0, np.linspace(-745.2, -708.0, 100_001), EXP_ULP)  # subnormal results
    check(0, np.linspace(709.0, 709.8, 10_001), EXP_ULP)  # up to overflow
    check(0, np.concatenate([np.geomspace(1e-320, 1.0, 50_001), SPECIALS]), EXP_ULP)
    check(0, -np.geomspace(1e-320, 1.0, 50_001), EXP_ULP)
    assert run(0, np.array([709.79, 1e308, np.inf])).tolist() == [np.inf] * 3
    assert run(0, np.array([-745.2, -1e308, -np.inf])).tolist() == [0.0] * 3
    assert run(0, np.array([0.0, -0.0])).tolist() == [1.0, 1.0]


def test_tanh64_grids():
    rng = np.random.default_rng(1)
    check(1, rng.uniform(-25.0, 25.0, 400_000), TANH_ULP)
    check(1, np.linspace(0.55, 0.7, 100_001), TANH_ULP)  # both sides of the switch at 0.625
    small = np.geomspace(1e-320, 1.0, 100_001)
    check(1, np.concatenate([small, -small, SPECIALS]), TANH_ULP)
    got = run(1, np.array([-0.0, 22.5, -1e300, np.inf, -np.inf]))
    assert got.tolist() == [0.0, 1.0, -1.0, 1.0, -1.0] and np.signbit(got[0])
