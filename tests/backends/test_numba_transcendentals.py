"""numba's exp, tanh, sigmoid, gelu and selu kernels (the serial loops the backend runs per chunk)
against the numpy reference kernels, float32 and float64, over the whole float range
(hypothesis) and dense grids: huge, tiny, negative, subnormal, ±0, ±inf, NaN.

Bounds: float64 in ulps of the reference's result; float32 in relative error (floored at the
smallest normal, so subnormal results count in absolute steps). inf, -inf, NaN and the sign
of zero come out exactly where numpy's do."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

numba = pytest.importorskip("numba")

from math_loops import run, ulps  # noqa: E402

from trueno import backends, cpu  # noqa: E402
from trueno.backends import Backend  # noqa: E402
from trueno.backends.numba_kernels import _math as M  # noqa: E402
from trueno.backends.numba_kernels import activations as act  # noqa: E402
from trueno.backends.numba_kernels import elementwise as ew  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
REF = backends.load(Backend.NUMPY).KERNELS
SERIAL = {
    "exp": ew._exp,
    "tanh": ew._tanh,
    "sigmoid": act._sigmoid,
    "gelu": act._gelu_tanh,
    "gelu_erf": act._gelu_erf,
    "selu": act._selu,
}
# float64: ulps against numpy (exp64 1, tanh64 2; sigmoid and gelu add 1 + e and a division,
# whose roundings differ from numpy's where e differs by an ulp; selu: libm's expm1 against
# numpy's, 3 ulp apart at worst on the grids). gelu_erf: the reference's own
# erfc is good to 1e-11 (tests/backends/test_numba_math.py), numba's is libm's.
ULP64 = {"exp": 1, "tanh": 2, "sigmoid": 4, "gelu": 4, "selu": 4}
REL64 = {"gelu_erf": 5e-11}
# float32: relative error against numpy's float32 result (exp32 1.9e-7 and numpy's own ulp);
# gelu_erf: 5e-7 + 2.5e-7 x^2 (erfc32's 4e-7 + 1.2e-7 a^2, a = |x| / sqrt(2), and erfc's
# conditioning, 2 a^2, on the float32 rounding of x / sqrt(2))
REL32 = {"exp": 4e-7, "tanh": 4e-7, "sigmoid": 4e-7, "gelu": 4e-7, "selu": 4e-7}


def reference(name: str, x: np.ndarray) -> np.ndarray:
    return REF["gelu"](x, "none") if name == "gelu_erf" else REF[name](x)


def serial(name: str, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    SERIAL[name](out, x)
    return out


def bound32(name: str, x: np.ndarray) -> np.ndarray:
    if name == "gelu_erf":
        return 5e-7 + 2.5e-7 * x.astype(np.float64) ** 2
    return np.full(x.shape, REL32[name])


def check(name: str, x: np.ndarray) -> None:
    got, want = serial(name, x), reference(name, x)
    assert got.dtype == want.dtype == x.dtype
    assert np.array_equal(np.isnan(got), np.isnan(want)), x[np.isnan(got) != np.isnan(want)]
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf]), x[inf][got[inf] != want[inf]]
    zero = want == 0
    assert np.array_equal(np.signbit(got[zero]), np.signbit(want[zero])), x[zero]
    fin = np.isfinite(want)
    g, w, xf = got[fin], want[fin], x[fin]
    if x.dtype == np.float64 and name in ULP64:
        err = ulps(g, w)
        assert err.max(initial=0) <= ULP64[name], (xf[err.argmax()], g[err.argmax()])
        return
    g64, w64 = g.astype(np.float64), w.astype(np.float64)
    rel = np.abs(g64 - w64) / np.maximum(np.abs(w64), np.finfo(x.dtype).tiny)
    limit = REL64[name] if x.dtype == np.float64 else bound32(name, xf)
    bad = rel > limit
    assert not bad.any(), (xf[bad][:5], g[bad][:5], w[bad][:5])


NAMES = list(SERIAL)
DTYPES = [np.float32, np.float64]
SPECIALS = [
    0.0,
    -0.0,
    np.inf,
    -np.inf,
    np.nan,
    1e-45,
    -1e-45,
    5e-324,
    -5e-324,
    1e-30,
    -1e-30,
    3e38,
    -3e38,
    1e300,
    -1e300,
    88.7,
    89.0,
    -103.0,
    -104.0,
    709.78,
    709.8,
    -745.0,
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
@settings(max_examples=150)
def test_whole_range(name, dtype, data):
    width = 32 if dtype == np.float32 else 64
    x = data.draw(hnp.arrays(dtype, st.integers(1, 80), elements=st.floats(width=width)))
    check(name, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
@settings(max_examples=150)
def test_active_range(name, dtype, data):
    """Where the results are neither 0, ±1 nor overflowed: through the switches of each form."""
    lo, hi = (-110.0, 110.0) if dtype == np.float32 else (-750.0, 750.0)
    elements = st.floats(lo, hi, width=32 if dtype == np.float32 else 64)
    check(name, data.draw(hnp.arrays(dtype, st.integers(1, 80), elements=elements)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_grids(name, dtype):
    rng = np.random.default_rng(7)
    tiny = np.geomspace(1e-44 if dtype == np.float32 else 1e-320, 1e3, 100_001)
    x = np.concatenate(
        [
            rng.standard_normal(200_000) * 3,
            np.linspace(-750.0, 750.0, 200_001),
            np.linspace(-30.0, 30.0, 200_001),
            tiny,
            -tiny,
            SPECIALS,
        ]
    )
    with np.errstate(over="ignore"):
        check(name, x.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid", "gelu"])
def test_threaded_matches_serial(name, dtype):
    """The backend's kernel splits a big input over threads: the same bits as one loop."""
    x = (np.random.default_rng(3).standard_normal(ew.PAR_MIN_MATH * 2 + 17) * 5).astype(dtype)
    got = backends.load(Backend.NUMBA).KERNELS[name](x)
    np.testing.assert_array_equal(got, serial(name, x))


# numba's target (the host unless NUMBA_CPU_NAME / NUMBA_CPU_FEATURES say otherwise). AMD's
# AVX-512 CPUs: LLVM's tuning keeps 512-bit vectors. Intel's AVX-512 CPUs carry LLVM's
# prefer-256-bit tuning, so a plain loop gives ymm there (the kernels call wide_vectors; see
# test_wide_vectors_gives_zmm_and_the_same_results, run on such a host).
TARGET = numba.core.config.CPU_NAME or cpu.cpu_name()
ZEN_AVX512 = M.SCALEF and TARGET.startswith("znver")
VECTOR = "%zmm" if ZEN_AVX512 else "%[yz]mm"


def target_has(feature: str) -> bool:
    feats = numba.core.config.CPU_FEATURES
    return cpu.cpu_features()[feature] if feats is None else f"+{feature}" in feats.split(",")


@pytest.mark.skipif(
    not (target_has("avx2") and target_has("fma")), reason="numba's target lacks avx2/fma"
)
@pytest.mark.parametrize("name", ["exp32", "exp64", "tanh32", "tanh64"])
def test_polynomials_vectorize(name):
    """A loop over each polynomial compiles to packed FMAs (zmm on Zen 4/5, ymm or zmm
    elsewhere), 2**k by vscalef where SCALEF, and calls no libm function per element (which
    would stop the vectorizer)."""
    f = getattr(M, name)

    @numba.njit(error_model="numpy")  # not cached: inspect_asm needs a fresh compile
    def apply(x, out):
        for i in range(x.size):
            out[i] = f(x[i])

    dtype = np.float32 if name.endswith("32") else np.float64
    x = np.linspace(-3, 3, 64).astype(dtype)
    apply(x, np.empty_like(x))
    asm = apply.inspect_asm(apply.signatures[0])
    suffix = "ps" if dtype == np.float32 else "pd"
    assert re.search(rf"vf[n]?madd\w*{suffix}\s[^\n]*{VECTOR}", asm), "no packed FMA"
    # numba calls libm through a loaded address: movabsq $expf, %rax; callq *%rax
    assert not re.search(r"\$(exp|tanh|ldexp|fma)f?\b", asm), "a libm call"
    if name.startswith("exp") and M.SCALEF:
        assert re.search(rf"vscalef{suffix}\s[^\n]*{VECTOR}", asm)


@pytest.mark.skipif(not M.WIDE, reason="numba's target lacks AVX-512 F: wide_vectors is a no-op")
@pytest.mark.parametrize("name", ["exp32", "exp64", "tanh64"])
def test_wide_vectors_gives_zmm_and_the_same_results(name):
    """wide_vectors() in a kernel lets the vectorizer use zmm on any AVX-512 target (Intel's
    included, whose tuning prefers ymm), and the results are the plain loop's bit for bit."""
    f = getattr(M, name)

    @numba.njit(error_model="numpy")  # not cached: inspect_asm needs a fresh compile
    def wide(x, out):
        M.wide_vectors()
        for i in range(x.size):
            out[i] = f(x[i])

    dtype = np.float32 if name.endswith("32") else np.float64
    x = (np.random.default_rng(5).standard_normal(4099) * 30).astype(dtype)
    x[:4] = [np.nan, np.inf, -np.inf, 0.0]
    got = np.empty_like(x)
    wide(x, got)
    np.testing.assert_array_equal(got, run(name, x))
    asm = wide.inspect_asm(wide.signatures[0])
    suffix = "ps" if dtype == np.float32 else "pd"
    assert re.search(rf"vf[n]?madd\w*{suffix}\s[^\n]*%zmm", asm), "no zmm FMA"
