"""Scalar math the kernels inline: vectorizable approximations of exp/tanh/erf (numba never
vectorizes libm calls) and LLVM intrinsics (NaN-propagating maximum/minimum, bit casts, fused
multiply-add, ldexp).

exp and tanh have float32 and float64 polynomials LLVM turns into SIMD; erfc and expm1 use
libm for float64. Polynomials are evaluated with ``fmadd`` (llvm.fmuladd: one FMA instruction
on every AVX2 and AVX-512 host, half the instructions of a multiply and an add; a CPU without
FMA gets a multiply and an add: the tests pass compiled for such a target, tanh32's bound
aside, 4e-7 there). 2**k is
``ldexp`` where the host has AVX-512 (LLVM lowers it to vscalefpd/ps: one instruction that
rounds subnormal results once and overflows to inf) and two exponent-bit products elsewhere
(llvm.ldexp would be a libm call per element there); ``SCALEF`` says which, tests run both
where the host has both. LLVM picks zmm for these loops on Zen 4/5; for Intel's AVX-512 CPUs
its prefer-256-bit tuning gives ymm, so the kernels call ``wide_vectors()`` (see BENCHMARKS.md,
"Transcendentals at AVX-512 speed" and the ninth session). Max errors (float64:
tests/backends/test_numba_math64.py, against numpy over the whole range with hypothesis and
dense grids, in ulps of the result):
- exp64: 1 ulp (Cody-Waite reduction to |r| <= ln2/2, e^r - 1 as r + r^2 q(r) with q a
  degree-9 Chebyshev fit: 0.15 ulp truncation; above 709.79 inf, below -745.2 zero; NaN
  stays NaN).
- tanh64: 2 ulp (Cephes' x + x^3 P(x^2) / Q(x^2) below |x| = 0.625, 1 - 2 / (e^(2|x|) + 1)
  above, |x| clamped at 22 where tanh is 1 to double precision; one division serves both
  forms), signed by x. NaN stays NaN.
float32 (measured over a dense grid incl. extremes in tests/backends):
- exp32:  rel 1.9e-7 on [-87.3, 88.7] (degree-5 polynomial); 0 below -104, inf above 88.73;
  subnormal results within 2 steps; NaN -> NaN.
- exp32_accurate: rel 8.3e-8 (Cephes expf, degree 7), inside expm1 and erfc (they amplify it).
- tanh32: rel 2.95e-7 over every float32 (rational 13/6 approximation, no exp), |tanh| <= 1.
- erfc32: rel 4e-7 + 1.2e-7 a^2 (Numerical Recipes' erfcc, t exp(-a^2 + P(t)), t = 1/(1+a/2);
  the a^2 term is a*a rounding, erfc's own conditioning).
- expm1_32: rel 3e-7 (Taylor for |x| < 0.35, exp32_accurate(x) - 1 beyond).

numba's on-disk cache keys a kernel on its own file, not on the helpers it inlines: a change
to a function here must come with a change to every module that calls it (elementwise,
activations, rowwise), or warm caches keep the old code.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import config as numba_config
from numba.core import types
from numba.extending import intrinsic, overload

from trueno import cpu

INLINE = dict(inline="always", error_model="numpy")


def _target_has(feature: str) -> bool:
    """Whether numba compiles for a CPU with ``feature``: the host's features, unless
    NUMBA_CPU_FEATURES names others (numba's JIT target takes its features from there)."""
    if numba_config.CPU_FEATURES is not None:
        return f"+{feature}" in numba_config.CPU_FEATURES.split(",")
    return cpu.cpu_features()[feature]


SCALEF = _target_has("avx512f")
# LLVM's tuning for Intel's AVX-512 CPUs prefers 256-bit vectors, so its vectorizer gave the
# transcendental loops ymm there (zmm on Zen 4/5). wide_vectors() lifts that per kernel.
WIDE = SCALEF


@intrinsic
def wide_vectors(typingctx):
    """Let LLVM vectorize the calling kernel with 512-bit vectors where numba targets AVX-512
    F (the function attributes prefer-vector-width and min-legal-vector-width = 512, which
    clang's -mprefer-vector-width=512 sets); a no-op elsewhere. Same operations per lane, so
    the same results. exp64 over 1e6 values on one core, Intel Xeon (llvmlite `rocketlake`):
    814 us in ymm, 587 us in zmm, numpy 625 (BENCHMARKS.md)."""

    def codegen(context, builder, signature, args):
        if WIDE:  # string attributes: llvmlite's FunctionAttributes checks only its own names
            for attr in ('"prefer-vector-width"="512"', '"min-legal-vector-width"="512"'):
                set.add(builder.function.attributes, attr)
        return context.get_dummy_value()

    return types.void(), codegen


FMA = _target_has("fma")


@intrinsic
def fmaximum(typingctx, a, b):
    """llvm.maximum: IEEE-2019 maximum, NaN-propagating like numpy's max; its reductions
    vectorize (LLVM >= 17)."""
    sig = a(a, b)

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maximum", [t], ir.FunctionType(t, [t, t]))
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def fminimum(typingctx, a, b):
    """llvm.minimum: NaN-propagating minimum (see fmaximum)."""
    sig = a(a, b)

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.minimum", [t], ir.FunctionType(t, [t, t]))
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def i32_as_f32(typingctx, i):
    """Reinterpret the bits of an int32 as a float32."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def f64_as_i64(typingctx, x):
    """Reinterpret the bits of a float64 as an int64."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def i64_as_f64(typingctx, i):
    """Reinterpret the bits of an int64 as a float64."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def fmadd(typingctx, a, b, c):
    """a * b + c by llvm.fmuladd: one FMA (a single rounding) on every FMA host, which every
    AVX2 and AVX-512 x86 host is; numba's default (no contraction) would multiply and add."""
    sig = a(a, a, a)

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fmuladd", [t], ir.FunctionType(t, [t, t, t]))
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def ldexp(typingctx, x, k):
    """x * 2**k (int32 k) rounded once by llvm.ldexp: vscalefpd/ps with AVX-512 F; a libm
    call per element on other hosts, so use it only where ``SCALEF``."""
    sig = x(x, types.int32)

    def codegen(context, builder, signature, args):
        t, i32 = args[0].type, ir.IntType(32)
        fn = builder.module.declare_intrinsic("llvm.ldexp", [t, i32], ir.FunctionType(t, [t, i32]))
        return builder.call(fn, args)

    return sig, codegen


# --- 2**k: scale a polynomial's value by the reduction's k -----------------------------------


@nb.njit(**INLINE)
def _scale32_bits(p, k):
    # p * 2**k for float k in [-150, 128] as two normal powers of two: a subnormal result
    # rounds in the second product, an overflow gives inf
    ki = np.int32(k)
    k1 = ki >> np.int32(1)
    k2 = ki - k1
    s1 = i32_as_f32((k1 + np.int32(127)) << np.int32(23))
    s2 = i32_as_f32((k2 + np.int32(127)) << np.int32(23))
    return p * s1 * s2


@nb.njit(**INLINE)
def _scale32_scalef(p, k):
    return ldexp(p, np.int32(k))


_SHIFT64 = 6755399441055744.0  # 1.5 * 2**52: x + _SHIFT64 rounds x to an integer in the low bits
_SHIFT64_BITS = np.int64(np.array(_SHIFT64).view(np.int64))
_ONE64_BITS = np.int64(0x3FF0000000000000)


@nb.njit(**INLINE)
def _scale64_bits(p, t, k):
    # p * 2**k, k the integer in t's low bits (k in [-1075, 1024]), as two normal powers of two
    ki = f64_as_i64(t) - _SHIFT64_BITS
    k1 = ki >> np.int64(1)
    k2 = ki - k1
    s1 = i64_as_f64((k1 + np.int64(1023)) << np.int64(52))
    s2 = i64_as_f64((k2 + np.int64(1023)) << np.int64(52))
    return p * s1 * s2


@nb.njit(**INLINE)
def _scale64_scalef(p, t, k):
    return ldexp(p, np.int32(k))


# --- float32 ------------------------------------------------------------------------------


@nb.njit(**INLINE)
def _reduce32(x):
    """x = k ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 in two parts), x first clamped to
    [-104, 89] (past which e**x is 0 or inf in float32; NaN stays NaN): (k as a float, r)."""
    hi = np.float32(89.0)
    lo = np.float32(-104.0)
    xc = hi if x > hi else x
    xc = lo if xc < lo else xc
    k = np.floor(fmadd(xc, np.float32(1.44269504088896341), np.float32(0.5)))
    r = fmadd(k, np.float32(-0.693359375), xc)
    return k, fmadd(k, np.float32(2.12194440e-4), r)


def _exp32_with(scale):
    @nb.njit(**INLINE)
    def exp32(x):
        """e**x in float32, rel 1.9e-7: e^r = 1 + r + r^2 q(r) with a degree-3 near-minimax q
        on |r| <= ln2/2 (Cody-Waite reduction; 2**k by ``scale``, so subnormal results and
        overflow to inf come out right; NaN stays NaN)."""
        k, r = _reduce32(x)
        p = fmadd(np.float32(0.00831253), r, np.float32(0.04189012))
        p = fmadd(p, r, np.float32(0.16667114))
        p = fmadd(p, r, np.float32(0.49999232))
        p = fmadd(p, r * r, r) + np.float32(1.0)
        return scale(p, k)

    return exp32


def _exp32_accurate_with(scale):
    @nb.njit(**INLINE)
    def exp32_accurate(x):
        """e**x in float32, rel 8.3e-8 (Cephes expf polynomial, 2**k by ``scale``): for expm1
        and erfc, which amplify exp's error."""
        k, r = _reduce32(x)
        p = fmadd(np.float32(1.9875691500e-4), r, np.float32(1.3981999507e-3))
        p = fmadd(p, r, np.float32(8.3334519073e-3))
        p = fmadd(p, r, np.float32(4.1665795894e-2))
        p = fmadd(p, r, np.float32(1.6666665459e-1))
        p = fmadd(p, r, np.float32(5.0000001201e-1))
        p = fmadd(p, r * r, r) + np.float32(1.0)
        return scale(p, k)

    return exp32_accurate


exp32_bits = _exp32_with(_scale32_bits)
exp32_scalef = _exp32_with(_scale32_scalef)
exp32 = exp32_scalef if SCALEF else exp32_bits
exp32_accurate_bits = _exp32_accurate_with(_scale32_bits)
exp32_accurate_scalef = _exp32_accurate_with(_scale32_scalef)
exp32_accurate = exp32_accurate_scalef if SCALEF else exp32_accurate_bits


# --- float64 ------------------------------------------------------------------------------

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln2's high part: k * it is exact for |k| < 2**21
_LN2_LO = 1.90821492927058770002e-10


@nb.njit(**INLINE)
def expm1_reduced64(r):
    """e**r - 1 for |r| <= ln2/2 as r + r^2 q(r), q a degree-9 fit at Chebyshev nodes
    (truncation 1.6e-17 relative to e**r, 0.15 ulp)."""
    q = fmadd(2.5100375832561234e-08, r, 2.7620075879983367e-07)
    q = fmadd(q, r, 2.7557268480310024e-06)
    q = fmadd(q, r, 2.4801521322368692e-05)
    q = fmadd(q, r, 0.00019841269863040545)
    q = fmadd(q, r, 0.0013888888917196719)
    q = fmadd(q, r, 0.008333333333330065)
    q = fmadd(q, r, 0.041666666666624164)
    q = fmadd(q, r, 0.16666666666666669)
    q = fmadd(q, r, 0.5000000000000001)
    return fmadd(q, r * r, r)


def _exp64_with(scale):
    @nb.njit(**INLINE)
    def exp64(x):
        """e**x in float64 within 1 ulp: k = round(x / ln2) by the 1.5 * 2**52 shift (AVX2
        has no float64 -> int64 conversion; a bit cast vectorizes), r = x - k ln2 in two parts
        (Cody-Waite, |r| <= ln2/2), e^r = 1 + expm1_reduced64(r), times 2**k by ``scale``
        (subnormal results round once; above 709.79 inf, below -745.2 zero; NaN stays
        NaN)."""
        hi = 709.8
        lo = -745.2
        xc = hi if x > hi else x
        xc = lo if xc < lo else xc
        t = fmadd(xc, _LOG2E, _SHIFT64)
        k = t - _SHIFT64
        r = fmadd(k, -_LN2_HI, xc)
        r = fmadd(k, -_LN2_LO, r)
        return scale(expm1_reduced64(r) + 1.0, t, k)

    return exp64


exp64_bits = _exp64_with(_scale64_bits)
exp64_scalef = _exp64_with(_scale64_scalef)
exp64 = exp64_scalef if SCALEF else exp64_bits


@nb.njit(**INLINE)
def tanh64(x):
    """tanh in float64 within 2 ulp, branch-free (both forms computed, one selected, one
    division for both): Cephes' x + x^3 P(x^2) / Q(x^2) below |x| = 0.625, 1 - 2 / (e^(2|x|)
    + 1) above (|x| clamped at 22, where tanh is 1 to double precision; 2**k, k <= 64, from
    exponent bits, no subnormal or overflow case), signed by x. NaN stays NaN."""
    ax = np.abs(x)
    a = 22.0 if ax > 22.0 else ax
    u = a + a
    t = fmadd(u, _LOG2E, _SHIFT64)
    k = t - _SHIFT64
    r = fmadd(k, -_LN2_HI, u)
    r = fmadd(k, -_LN2_LO, r)
    # 2**k: k sits in t's low 12 bits, so t's bits shifted up by 52 are k's exponent field
    s = i64_as_f64((f64_as_i64(t) << np.int64(52)) + _ONE64_BITS)
    e = fmadd(s, expm1_reduced64(r), s)
    s2 = x * x
    p = fmadd(-9.64399179425052238628e-1, s2, -9.92877231001918586564e1)
    p = fmadd(p, s2, -1.61468768441708447952e3)
    q = fmadd(s2 + 1.12811678491632931402e2, s2, 2.23548839060100448583e3)
    q = fmadd(q, s2, 4.84406305325125486048e3)
    small = ax < 0.625
    f = (p if small else 2.0) / (q if small else e + 1.0)
    return np.copysign(fmadd(ax * s2, f, ax) if small else 1.0 - f, x)  # on |x|: -0 stays -0


_TANH32_END = np.float32(8.086)  # the FMA-evaluated rational is exactly 1.0 here


@nb.njit(**INLINE)
def tanh32(x):
    """tanh in float32: x p(x^2) / q(x^2), Eigen's fast-tanh rational of degree 13/6, its
    coefficients fitted on [-7.9, 7.9], FMA-evaluated, x clamped at 8.086, where the value
    rounds to exactly 1. Checked over every float32 x >= 0 (odd by construction): rel 2.95e-7
    against float64 tanh, never above 1. x * (p / q), not x p / q, so subnormal x stay
    exact and -0 stays -0. No exp, one division. Without FMA (a numba target with -fma):
    rel 4e-7, and x beyond the clamp gives ±1 by a select."""
    c = _TANH32_END
    xc = c if x > c else x
    xc = -c if xc < -c else xc
    x2 = xc * xc
    p = fmadd(np.float32(-2.76076847742355e-16), x2, np.float32(2.00018790482477e-13))
    p = fmadd(p, x2, np.float32(-8.60467152213735e-11))
    p = fmadd(p, x2, np.float32(5.12229709037114e-08))
    p = fmadd(p, x2, np.float32(1.48572235717979e-05))
    p = fmadd(p, x2, np.float32(6.37261928875436e-04))
    p = fmadd(p, x2, np.float32(4.89352455891786e-03))
    q = fmadd(np.float32(1.19825839466702e-06), x2, np.float32(1.18534705686654e-04))
    q = fmadd(q, x2, np.float32(2.26843463243900e-03))
    q = fmadd(q, x2, np.float32(4.89352518554385e-03))
    r = xc * (p / q)
    if FMA:
        return r
    return np.copysign(np.float32(1.0), x) if np.abs(x) >= c else r


@nb.njit(**INLINE)
def erfc_pos32(a):
    """erfc(a) for a >= 0 in float32 (Numerical Recipes' erfcc Chebyshev fit: relative error
    1.2e-7 in exact arithmetic, so tails keep their relative accuracy)."""
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.5) * a)
    p = np.float32(0.17087277)
    p = p * t - np.float32(0.82215223)
    p = p * t + np.float32(1.48851587)
    p = p * t - np.float32(1.13520398)
    p = p * t + np.float32(0.27886807)
    p = p * t - np.float32(0.18628806)
    p = p * t + np.float32(0.09678418)
    p = p * t + np.float32(0.37409196)
    p = p * t + np.float32(1.00002368)
    p = p * t - np.float32(1.26551223)
    return t * exp32_accurate(p - a * a)


# --- generic scalar helpers: float32 -> polynomial, float64 -> libm ----------------------


def by_dtype(f32, f64, fallback):
    """A scalar function for jitted code that runs ``f32`` on a float32, ``f64`` on a float64
    and ``fallback`` (numpy's) on anything else, inlined (calling it from Python raises)."""

    def f(x):  # pragma: no cover - replaced by the overload inside jitted code
        raise NotImplementedError

    def pick(x):
        if x == types.float32:
            return lambda x: f32(x)
        if x == types.float64:
            return lambda x: f64(x)
        return lambda x: fallback(x)

    overload(f, inline="always")(pick)
    return f


fexp = by_dtype(exp32, exp64, np.exp)
ftanh = by_dtype(tanh32, tanh64, np.tanh)


def ferfc(x):  # pragma: no cover
    raise NotImplementedError


def fexpm1(x):  # pragma: no cover
    raise NotImplementedError


def like(x, c):  # pragma: no cover
    raise NotImplementedError


@overload(like, inline="always")
def _like(x, c):
    """The float constant c in x's precision: a float32 constant in a float64 kernel would be
    float32-rounded (2 sqrt(2/pi) off by 1e-8), a float64 one in a float32 kernel would make it
    compute in float64."""
    if x == types.float32:
        return lambda x, c: np.float32(c)
    return lambda x, c: c


@overload(ferfc, inline="always")
def _ferfc(x):
    if x == types.float32:

        def erfc32(x):
            c = erfc_pos32(np.abs(x))
            return np.float32(2.0) - c if x < np.float32(0.0) else c

        return erfc32
    import math

    return lambda x: math.erfc(x)


@nb.njit(**INLINE)
def expm1_32(x):
    """e**x - 1 in float32: Taylor near 0 (no cancellation), exp32_accurate(x) - 1 beyond."""
    p = np.float32(1.0 / 5040.0)
    p = p * x + np.float32(1.0 / 720.0)
    p = p * x + np.float32(1.0 / 120.0)
    p = p * x + np.float32(1.0 / 24.0)
    p = p * x + np.float32(1.0 / 6.0)
    p = p * x + np.float32(0.5)
    small = p * x * x + x
    big = exp32_accurate(x) - np.float32(1.0)
    return small if np.abs(x) < np.float32(0.35) else big


@overload(fexpm1, inline="always")
def _fexpm1(x):
    if x == types.float32:
        return lambda x: expm1_32(x)
    return lambda x: np.expm1(x)
