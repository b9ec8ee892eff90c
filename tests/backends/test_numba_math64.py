"""The float64 polynomials exp64 and tanh64 of numba_kernels/_math.py against numpy, in ulps
of the result, over the whole float64 range (hypothesis) and over dense grids: normal and
subnormal results, overflow, huge and tiny inputs, ±0, ±inf and NaN. exp64 is checked with
both ways of scaling by 2**k: exponent bits (every host) and vscalef (AVX-512 hosts only; an
instruction the CPU lacks would kill the process, so the test is skipped elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

numba = pytest.importorskip("numba")

from math_loops import run, ulps  # noqa: E402

from trueno.backends.numba_kernels import _math as M  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
EXP_ULP = 1
TANH_ULP = 2


SCALEF_ONLY = pytest.mark.skipif(not M.SCALEF, reason="numba's target lacks avx512f (vscalef)")
EXP = [
    pytest.param("exp64_bits", id="exp-bits"),
    pytest.param("exp64_scalef", id="exp-scalef", marks=SCALEF_ONLY),
]


def check(name: str, x: np.ndarray, bound: int) -> None:
    got, want = run(name, x), (np.tanh if name == "tanh64" else np.exp)(x)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    special = ~np.isfinite(want)
    assert np.array_equal(got[special & ~np.isnan(want)], want[special & ~np.isnan(want)])
    fin = np.isfinite(want)
    err = ulps(got[fin], want[fin])
    assert err.max(initial=0) <= bound, (x[fin][err.argmax()], got[fin][err.argmax()])


SPECIALS = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2e-308, 1e-300, 1e300, -1e300]
)


NAMES = [*EXP, pytest.param("tanh64", id="tanh")]
BOUND = {"exp64_bits": EXP_ULP, "exp64_scalef": EXP_ULP, "tanh64": TANH_ULP}
ACTIVE = {"exp64_bits": (-746.0, 710.0), "exp64_scalef": (-746.0, 710.0), "tanh64": (-25.0, 25.0)}


@pytest.mark.parametrize("name", NAMES)
@given(x=hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(width=64)))
@settings(max_examples=300)
def test_whole_range(name, x):
    check(name, x, BOUND[name])


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
@settings(max_examples=300)
def test_active_range(name, data):
    """Dense in the active range: exp from underflow to overflow, tanh into saturation."""
    lo, hi = ACTIVE[name]
    x = data.draw(hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(lo, hi)))
    check(name, x, BOUND[name])


@pytest.mark.parametrize("name", EXP)
def test_exp64_grids(name):
    rng = np.random.default_rng(0)
    check(name, rng.uniform(-746.0, 710.0, 400_000), EXP_ULP)
    check(name, np.linspace(-745.2, -708.0, 100_001), EXP_ULP)  # subnormal results
    check(name, np.linspace(709.0, 709.8, 10_001), EXP_ULP)  # up to overflow
    check(name, np.concatenate([np.geomspace(1e-320, 1.0, 50_001), SPECIALS]), EXP_ULP)
    check(name, -np.geomspace(1e-320, 1.0, 50_001), EXP_ULP)
    assert run(name, np.array([709.79, 1e308, np.inf])).tolist() == [np.inf] * 3
    assert run(name, np.array([-745.2, -1e308, -np.inf])).tolist() == [0.0] * 3
    assert run(name, np.array([0.0, -0.0])).tolist() == [1.0, 1.0]


def test_exp64_is_the_hosts_variant():
    assert M.exp64 is (M.exp64_scalef if M.SCALEF else M.exp64_bits)


def test_tanh64_grids():
    rng = np.random.default_rng(1)
    check("tanh64", rng.uniform(-25.0, 25.0, 400_000), TANH_ULP)
    check("tanh64", np.linspace(0.55, 0.7, 100_001), TANH_ULP)  # both sides of the 0.625 switch
    small = np.geomspace(1e-320, 1.0, 100_001)
    check("tanh64", np.concatenate([small, -small, SPECIALS]), TANH_ULP)
    got = run("tanh64", np.array([-0.0, 22.5, -1e300, np.inf, -np.inf]))
    assert got.tolist() == [0.0, 1.0, -1.0, 1.0, -1.0] and np.signbit(got[0])
