"""The vectorized log, log2, log10, sin, cos, tan, sinh and cosh of numba_kernels/_logtrig.py,
in ulps of the result against the long double result rounded to the dtype (correct rounding
but for double rounding, which the bounds absorb; see WIDE); over dense grids, the
whole range (hypothesis) and the edges: 0, -0, subnormals, infinities, NaN, negative logs,
overflowing sinh and cosh, and sines past the reduction's range, which the kernels give to
libm."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

numba = pytest.importorskip("numba")

from math_loops import loop, ulps  # noqa: E402

from trueno.backends.numba_kernels import _logtrig as L  # noqa: E402
from trueno.backends.numba_kernels import _par, libm  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FUNCS = {  # name: (float32 form, float64 form, numpy's)
    "log": (L.log32, L.log64, np.log),
    "log2": (L.log2_32, L.log2_64, np.log2),
    "log10": (L.log10_32, L.log10_64, np.log10),
    "sin": (L.sin32, L.sin64, np.sin),
    "cos": (L.cos32, L.cos64, np.cos),
    "tan": (L.tan32, L.tan64, np.tan),
    "sinh": (L.sinh32, L.sinh64, np.sinh),
    "cosh": (L.cosh32, L.cosh64, np.cosh),
    "atan": (L.atan32, L.atan64, np.arctan),
    "asin": (L.asin32, L.asin64, np.arcsin),
    "acos": (L.acos32, L.acos64, np.arccos),
    "asinh": (L.asinh32, L.asinh64, np.arcsinh),
    "acosh": (L.acosh32, L.acosh64, np.arccosh),
    "atanh": (L.atanh32, L.atanh64, np.arctanh),
}
BOUND = {  # max ulps: (float32, float64), each against the correctly rounded result
    "log": (1, 1),
    "log2": (1, 1),
    "log10": (2, 1),
    "sin": (2, 1),
    "cos": (2, 1),
    "tan": (3, 3),
    "sinh": (2, 2),
    "cosh": (2, 2),
    "atan": (2, 1),
    "asin": (2, 1),
    "acos": (2, 1),
    "asinh": (2, 2),
    "acosh": (2, 2),
    "atanh": (3, 3),
}
KERNEL = {name: name for name in FUNCS} | {"log": "ln"}
DTYPES = (np.float32, np.float64)


def scalar_loop(name: str, dtype):
    """A plain loop over one scalar form (not a kernel: the forms alone, no libm hand-off)."""
    return loop(FUNCS[name][0 if dtype == np.float32 else 1])


# numpy's float64 functions are themselves up to 2 ulps off, and which ones it runs depends
# on the host (SVML where AVX-512 is, libm elsewhere), so the float64 reference is libm's long
# double rounded to float64 where long double is wider (x86's 80 bits: correctly rounded but
# for double rounding); elsewhere numpy's float64, with an ulp more in the bound for its error
WIDE = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


def reference(name: str, x: np.ndarray) -> np.ndarray:
    ref = FUNCS[name][2]
    return ref(x.astype(np.longdouble if WIDE else np.float64)).astype(x.dtype)


def check(name: str, got: np.ndarray, x: np.ndarray) -> None:
    want = reference(name, x)
    assert np.array_equal(np.isnan(got), np.isnan(want)), x[np.isnan(got) != np.isnan(want)][:5]
    edge = np.isinf(want) | (want == 0)  # exact there, the sign of zero included
    assert np.array_equal(got[edge], want[edge]) and np.array_equal(
        np.signbit(got[edge]), np.signbit(want[edge])
    )
    fin = np.isfinite(want)
    err = ulps(got[fin], want[fin])
    bound = BOUND[name][0] if x.dtype == np.float32 else BOUND[name][1] + (not WIDE)
    assert err.max(initial=0) <= bound, (x[fin][err.argmax()], got[fin][err.argmax()])


def grid(name: str, dtype) -> np.ndarray:
    rng = np.random.default_rng(7)
    tiny = np.finfo(dtype).smallest_subnormal
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, tiny, -tiny, 1.0, -1.0, 2.0, 10.0, 1000.0]
    if name.startswith("log"):
        parts = [
            np.exp(rng.uniform(-700 if dtype == np.float64 else -87, 88, 50_000)),
            rng.uniform(0.5, 2.0, 50_000),  # where the reduction's branches meet
            np.ldexp(rng.uniform(0.5, 1.0, 5_000), rng.integers(-1074, 1020, 5_000))
            if dtype == np.float64
            else np.ldexp(rng.uniform(0.5, 1.0, 5_000), rng.integers(-149, 127, 5_000)),
            -rng.uniform(0, 10, 100),
            10.0 ** np.arange(-30, 31),
            2.0 ** np.arange(-140, 120),
        ]
    elif name in ("atan", "asin", "acos"):
        parts = [
            rng.uniform(-1, 1, 100_000),  # every reduction range of asin and acos
            np.nextafter(np.float64([0.5, -0.5, 0.975, -0.975, 1.0, -1.0]), 0),
            rng.uniform(-1.01, 1.01, 5_000),  # NaN past +-1 for asin, acos
            np.exp(rng.uniform(-80, 80, 50_000)) * rng.choice([-1, 1], 50_000),  # atan's
            np.float64([0.4375, 0.6875, 1.1875, 2.4375, 0.4142135623730950, 2.414213562373095]),
        ]
    elif name in ("asinh", "acosh", "atanh"):
        parts = [
            rng.uniform(-1.0, 1.0, 60_000),  # atanh's domain; asinh's small arguments
            rng.uniform(0.99, 3.0, 30_000),  # acosh's forms meet at 2
            np.exp(rng.uniform(-80, 88, 50_000)) * rng.choice([-1, 1], 50_000),
            np.nextafter(np.float64([1.0, -1.0, 2.0]), 0),
            np.float64([1e18, 1e20, 1e30, 1e150, 1e300]),
            np.finfo(dtype).max / np.float64([1, 1.5, 2, 3]),  # past max / 2: no 2 x overflow
        ]
    elif name in ("sinh", "cosh"):
        big = 89.5 if dtype == np.float32 else 711.0  # past overflow
        parts = [
            rng.uniform(-big, big, 50_000),
            rng.uniform(-1.2, 1.2, 50_000),  # the expm1 form and its edge at 1
            np.exp(rng.uniform(-80, 0, 5_000)) * rng.choice([-1, 1], 5_000),
            np.nextafter(np.float64([1.0, 709.0, 88.0, 89.0, 89.4]), 0),
        ]
    else:
        top = float(L.TRIG_MAX32 if dtype == np.float32 else L.TRIG_MAX64)
        parts = [
            rng.uniform(-10, 10, 50_000),
            rng.uniform(-top, top, 50_000),
            np.exp(rng.uniform(-80, np.log(top), 20_000)) * rng.choice([-1, 1], 20_000),
            np.arange(-200, 201) * (np.pi / 2),  # near multiples of pi/2: the reduction's worst
            np.nextafter(np.arange(1, 200) * (np.pi / 2), 0),
        ]
    with np.errstate(all="ignore"):
        x = np.concatenate([*parts, specials]).astype(dtype)
    return x  # sines: all inside the reduction's range (the kernels' libm pass aside)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(FUNCS))
def test_dense_grid(name, dtype):
    x = grid(name, dtype)
    out = np.empty_like(x)
    scalar_loop(name, dtype)(x, out)
    check(name, out, x)


@pytest.mark.parametrize("name", list(FUNCS))
@given(x=hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(width=64)))
@settings(max_examples=150, deadline=None)
def test_whole_range_through_the_kernels(name, x):
    """Any input, both dtypes, through the registered kernels: sines past the reduction's
    range come from libm (the kernels' second pass), so they hold the bound too."""
    for dtype in DTYPES:
        with np.errstate(all="ignore"):
            xd = x.astype(dtype)
        check(name, libm.KERNELS[KERNEL[name]](xd), xd)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["sin", "cos", "tan"])
def test_far_arguments_go_to_libm_on_both_routes(name, dtype, monkeypatch):
    """Elements at and past TRIG_MAX, mixed among ordinary ones, on the team (a big array) and
    on the calling thread (a small one, and a forked process's route)."""
    top = float(L.TRIG_MAX32 if dtype == np.float32 else L.TRIG_MAX64)
    rng = np.random.default_rng(3)
    x = rng.uniform(-5, 5, libm.TEAM_MIN_MATH * 2).astype(dtype)
    far = rng.choice(x.size, 500, replace=False)
    x[far] = (rng.uniform(1, 1e6, 500) * top * rng.choice([-1, 1], 500)).astype(dtype)
    x[far[:3]] = [top, -top, np.inf]
    assert (np.abs(x) >= top).sum() >= 500
    check(name, libm.KERNELS[name](x), x)  # the team
    check(name, libm.KERNELS[name](x[:1000]), x[:1000])  # the calling thread
    monkeypatch.setattr(_par, "FORKED", True)
    check(name, libm.KERNELS[name](x), x)  # no team: the pool's chunks


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_the_team_gives_the_serial_bits(dtype):
    x = np.random.default_rng(5).uniform(-50, 50, libm.TEAM_MIN_MATH * 3 + 17).astype(dtype)
    x[::7] = np.abs(x[::7])
    for name in FUNCS:
        run = libm.KERNELS[KERNEL[name]]
        serial = np.empty_like(x)
        libm.VECTOR[KERNEL[name]](serial, x)
        with np.errstate(all="ignore"):
            assert np.array_equal(run(x), serial, equal_nan=True), name
        assert run.team is not None
