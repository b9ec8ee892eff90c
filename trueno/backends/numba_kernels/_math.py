"""Scalar math the kernels inline: vectorizable approximations of exp/tanh/erf (numba never
vectorizes libm calls) and LLVM intrinsics (NaN-propagating maximum/minimum, bit casts).

exp and tanh have float32 and float64 polynomials LLVM turns into SIMD; erfc and expm1 use
libm for float64. Max errors (float64: tests/backends/test_numba_math64.py, against numpy over
the whole range with hypothesis and dense grids, in ulps of the result):
- exp64: 1 ulp for normal results (Cody-Waite reduction, degree-13 Taylor polynomial, 2**k
  from exponent bits in two steps, so subnormal results round once and overflow gives inf).
- tanh64: 2 ulp (Cephes' rational form below |x| = 0.625, 1 - 2 / (exp64(2|x|) + 1) above).
float32 (measured over a dense grid incl. extremes in tests/backends):
- exp32:  rel 1.8e-7 on [-87.3, 88.7] (degree-5 polynomial); 0 below -104, inf above 88.73;
  subnormal results within 2 steps; NaN -> NaN.
- exp32_accurate: rel 8e-8 (Cephes expf, degree 7), inside expm1 and erfc (they amplify it).
- tanh32: rel 3.5e-7 (rational 13/6 approximation, no exp).
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
from numba.core import types
from numba.extending import intrinsic, overload

INLINE = dict(inline="always", error_model="numpy")


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


@nb.njit(**INLINE)
def _pow2_32(k):
    # 2**k for int32 k in [-254, 256] as the product of two normal powers of two
    k1 = k >> 1
    k2 = k - k1
    return i32_as_f32((k1 + np.int32(127)) << np.int32(23)), i32_as_f32(
        (k2 + np.int32(127)) << np.int32(23)
    )


@nb.njit(**INLINE)
def exp32_accurate(x):
    """e**x in float32, rel 8e-8 (Cephes expf polynomial, 2**k by exponent bits): for
    expm1 and erfc, which amplify exp's error."""
    hi = np.float32(89.0)
    lo = np.float32(-104.0)
    xc = hi if x > hi else x
    xc = lo if xc < lo else xc
    k = np.floor(xc * np.float32(1.44269504088896341) + np.float32(0.5))
    r = xc - k * np.float32(0.693359375)
    r = r + k * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * (r * r) + r + np.float32(1.0)
    s1, s2 = _pow2_32(np.int32(k))
    return p * s1 * s2


@nb.njit(**INLINE)
def exp32(x):
    """e**x in float32, rel 1.8e-7: e^r = 1 + r + r^2 q(r) with a degree-3 near-minimax q on
    |r| <= ln2/2 (Cody-Waite reduction, 2**k from exponent bits in two steps so subnormal
    results and overflow to inf come out right; NaN stays NaN)."""
    hi = np.float32(89.0)
    lo = np.float32(-104.0)
    xc = hi if x > hi else x
    xc = lo if xc < lo else xc
    k = np.floor(xc * np.float32(1.44269504088896341) + np.float32(0.5))
    r = xc - k * np.float32(0.693359375)
    r = r + k * np.float32(2.12194440e-4)
    p = np.float32(0.00831253)
    p = p * r + np.float32(0.04189012)
    p = p * r + np.float32(0.16667114)
    p = p * r + np.float32(0.49999232)
    p = p * (r * r) + r + np.float32(1.0)
    s1, s2 = _pow2_32(np.int32(k))
    return p * s1 * s2


_SHIFT64 = 6755399441055744.0  # 1.5 * 2**52: x + _SHIFT64 rounds x to an integer in the low bits
_SHIFT64_BITS = np.int64(np.array(_SHIFT64).view(np.int64))


@nb.njit(**INLINE)
def exp64(x):
    """e**x in float64 within 1 ulp: k = round(x / ln2) by the 1.5 * 2**52 shift (AVX2 has no
    float64 -> int64 conversion; a bit cast vectorizes), r = x - k ln2 in two parts (Cody-
    Waite, |r| <= ln2/2), e^r by its Taylor polynomial to degree 13 (truncation 4e-18), 2**k
    as two normal powers of two (subnormal results round once; above 709.79 inf, below
    -745.2 zero; NaN stays NaN)."""
    hi = 709.8
    lo = -745.2
    xc = hi if x > hi else x
    xc = lo if xc < lo else xc
    t = xc * 1.4426950408889634 + _SHIFT64
    k = t - _SHIFT64
    ki = f64_as_i64(t) - _SHIFT64_BITS
    r = xc - k * 6.93147180369123816490e-01  # ln2's high part: k * it is exact
    r = r - k * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = 1.0 + (r + (r * r) * p)
    k1 = ki >> np.int64(1)
    k2 = ki - k1
    s1 = i64_as_f64((k1 + np.int64(1023)) << np.int64(52))
    s2 = i64_as_f64((k2 + np.int64(1023)) << np.int64(52))
    return p * s1 * s2


@nb.njit(**INLINE)
def tanh64(x):
    """tanh in float64 within 2 ulp, branch-free (both forms computed, one selected): Cephes'
    x + x^3 P(x^2) / Q(x^2) below |x| = 0.625, 1 - 2 / (e^(2|x|) + 1) with exp64 above (|x|
    clamped at 22, where tanh is 1 to double precision), signed by x. NaN stays NaN."""
    ax = np.abs(x)
    a = 22.0 if ax > 22.0 else ax
    e = exp64(a + a)
    big = np.copysign(1.0 - 2.0 / (e + 1.0), x)
    s = x * x
    p = (-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s
    p = p - 1.61468768441708447952e3
    q = ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s
    q = q + 4.84406305325125486048e3
    small = np.copysign(ax + ax * s * (p / q), x)  # on |x|, so that -0 stays -0
    return small if ax < 0.625 else big


@nb.njit(**INLINE)
def tanh32(x):
    """tanh in float32: odd rational p(x)/q(x) of degree 13/6 on [-7.9, 7.9] (Eigen's fast
    tanh coefficients), saturating beyond; x itself below 4e-4. No exp, one division."""
    c = np.float32(7.90531110763549805)
    xc = c if x > c else x
    xc = -c if xc < -c else xc
    x2 = xc * xc
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    r = p * xc / q
    return x if np.abs(x) < np.float32(0.0004) else r


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


def fexp(x):  # pragma: no cover - replaced by the overload inside jitted code
    raise NotImplementedError


def ftanh(x):  # pragma: no cover
    raise NotImplementedError


def ferfc(x):  # pragma: no cover
    raise NotImplementedError


def fexpm1(x):  # pragma: no cover
    raise NotImplementedError


@overload(fexp, inline="always")
def _fexp(x):
    if x == types.float32:
        return lambda x: exp32(x)
    if x == types.float64:
        return lambda x: exp64(x)
    return lambda x: np.exp(x)


@overload(ftanh, inline="always")
def _ftanh(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    if x == types.float64:
        return lambda x: tanh64(x)
    return lambda x: np.tanh(x)


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
