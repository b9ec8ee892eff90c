"""The float32 approximations in numba_kernels/_math.py, checked over dense grids (including
the extremes) against float64 numpy/math: the error bounds stated in that module hold."""

from __future__ import annotations

import math

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from math_loops import run as run_loop  # noqa: E402

from trueno.backends.numba_kernels import _math as M  # noqa: E402
from trueno.backends.numpy_backend import erfc as ref_erfc  # noqa: E402

SCALEF_ONLY = pytest.mark.skipif(not M.SCALEF, reason="numba's target lacks avx512f (vscalef)")


def run(name: str, x: np.ndarray) -> np.ndarray:
    return run_loop(name, x).astype(np.float64)


def grid(lo: float, hi: float, n: int = 2_000_001) -> np.ndarray:
    return np.linspace(lo, hi, n, dtype=np.float32)


TINY32 = float(np.finfo(np.float32).tiny)


def rel_err(got, want, floor=TINY32):
    return np.abs(got - want) / np.maximum(np.abs(want), floor)


# 2**k by exponent bits (every host) and by vscalef (AVX-512 hosts only)
EXP32 = [
    pytest.param("exp32_bits", 1.9e-7, id="bits"),
    pytest.param("exp32_scalef", 1.9e-7, id="scalef", marks=SCALEF_ONLY),
    pytest.param("exp32_accurate_bits", 8.5e-8, id="accurate-bits"),
    pytest.param("exp32_accurate_scalef", 8.5e-8, id="accurate-scalef", marks=SCALEF_ONLY),
]


@pytest.mark.parametrize("name, bound", EXP32)
def test_exp32_error(name, bound):
    x = grid(-87.3, 88.7)
    assert rel_err(run(name, x), np.exp(x.astype(np.float64))).max() <= bound
    ext = np.array([89.0, 1e30, np.inf, -104.0, -1e30, -np.inf, np.nan, 0.0, -0.0], np.float32)
    got = run(name, ext)
    assert np.isinf(got[:3]).all() and (got[3:6] == 0).all() and np.isnan(got[6])
    assert got[7] == got[8] == 1.0
    sub = grid(-103.0, -87.4, 10_001)  # subnormal results: within two subnormal steps
    assert np.abs(run(name, sub) - np.exp(sub.astype(np.float64))).max() <= 2.0**-148


def test_exp32_is_the_hosts_variant():
    assert M.exp32 is (M.exp32_scalef if M.SCALEF else M.exp32_bits)
    assert M.exp32_accurate is (M.exp32_accurate_scalef if M.SCALEF else M.exp32_accurate_bits)


def every_float32(lo: float, hi: float) -> np.ndarray:
    """Every float32 in [lo, hi] (0 <= lo <= hi), by bit pattern."""
    a, b = np.array([lo, hi], np.float32).view(np.uint32)
    return np.arange(a, b + 1, dtype=np.uint32).view(np.float32)


# FMA: 2.95e-7 over every float32 (checked once, 146 s; the end region below). Without FMA
# (a numba target with -fma): 4e-7
TANH32_REL = 3e-7 if M.FMA else 4e-7


def test_tanh32_error():
    x = grid(-12.0, 12.0)
    assert rel_err(run("tanh32", x), np.tanh(x.astype(np.float64))).max() <= TANH32_REL
    small = np.geomspace(1e-38, 0.7, 200_001).astype(np.float32)
    assert rel_err(run("tanh32", small), np.tanh(small.astype(np.float64))).max() <= TANH32_REL
    ext = np.array([np.inf, -np.inf, 1e30, -1e30, np.nan, -0.0, 1e-45, -1e-45], np.float32)
    got = run("tanh32", ext)
    assert list(got[:4]) == [1, -1, 1, -1] and np.isnan(got[4])
    assert got[5] == 0 and math.copysign(1, got[5]) == -1
    assert list(got[6:]) == [ext[6], ext[7]]  # subnormal x: tanh(x) = x


def test_tanh32_end_region():
    """Every float32 where the rational nears 1 and is clamped (8.086): within the bound,
    never above 1, exactly 1 beyond the clamp, odd."""
    x = every_float32(6.5, 8.5)
    got = run("tanh32", x)
    assert rel_err(got, np.tanh(x.astype(np.float64))).max() <= TANH32_REL
    assert got.max() == 1.0 and (got[x >= np.float32(8.086)] == 1.0).all()
    assert np.array_equal(run("tanh32", -x), -got)


def test_erfc32_error():
    x = grid(0.0, 9.0)[::50]
    want = np.array([math.erfc(v) for v in x.astype(np.float64)])
    # a*a rounds in float32: the bound grows like a^2 ulp (erfc's own conditioning)
    assert (rel_err(run("erfc_pos32", x), want) <= 4e-7 + 1.2e-7 * x.astype(np.float64) ** 2).all()
    assert run("erfc_pos32", np.array([12.0, np.inf], np.float32)).tolist() == [0.0, 0.0]


def test_expm1_32_error():
    x = grid(-20.0, 20.0)
    assert rel_err(run("expm1_32", x), np.expm1(x.astype(np.float64))).max() <= 3e-7
    tiny = np.geomspace(1e-30, 0.4, 100_001).astype(np.float32)
    assert rel_err(run("expm1_32", -tiny), np.expm1(-tiny.astype(np.float64))).max() <= 3e-7


def test_reference_erfc_matches_math():
    x = np.concatenate([np.linspace(-8, 8, 4001), [-30.0, 30.0, 0.0, 2.5, -2.5, 26.0]])
    want = np.array([math.erfc(v) for v in x])
    np.testing.assert_allclose(ref_erfc(x), want, rtol=1e-11, atol=0)
    assert np.isnan(ref_erfc(np.array([np.nan])))[0]
    np.testing.assert_array_equal(ref_erfc(np.array([np.inf, -np.inf])), [0.0, 2.0])
