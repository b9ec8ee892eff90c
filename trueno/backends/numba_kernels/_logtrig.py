"""Vectorizable log, log2, log10, sin, cos, tan, sinh, cosh, asin, acos, atan, asinh, acosh and
atanh in float32 and float64, for the kernels to inline (numba's np.log, np.sin ... are scalar
libm calls, which LLVM never vectorizes; numpy's are SIMD, so numba's scalar loops only tie
numpy on two threads).

- logs: x = 2**e (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)) from the exponent bits (subnormals
  scaled by 2**23 / 2**54 first). float32: Cephes' logf, log2f and log10f (f + f^3 P(f) with
  a degree-8 P, e's multiple of ln2 in two parts). float64: FreeBSD's e_log.c, e_log2.c and
  e_log10.c (s = f / (2 + f), log1p(f) = f - f^2/2 + s (f^2/2 + R(s^2)) with a degree-7 R;
  log2 and log10 multiply f's head and tail by the constant's head and tail).
- sin, cos, tan: x = j pi/2 + r with |r| <= pi/4, then polynomials of r picked by j mod 4.
  float32: pi/2 in three float32 parts by fused multiply-adds (as numpy's own SIMD sinf) and
  Cephes' sinf/cosf/tanf polynomials. float64: pi/2 in three parts (FreeBSD's __rem_pio2
  medium case, its three rounds always taken: exact for |x| < 2**20 pi/2) and
  __kernel_sin/__kernel_cos (tan: their quotient). Larger |x| need more bits of pi than a
  fixed reduction holds: the kernels give those elements to libm after the vector loop
  (:func:`trig_far`, ``TRIG_MAX32/64``).
- sinh, cosh: exp (float64: exp64; float32: Cephes' expf) with e^-a as its reciprocal, and
  (e^(a/2) / 2) e^(a/2) where e^a overflows first; below |x| = 1 sinh is (m + m / (m + 1)) / 2
  with m = e^|x| - 1 (float64) or its Taylor polynomial to x^11 (float32).
- atan: FreeBSD's s_atan.c (float64) and Cephes' atanf (float32), their range reductions by
  selects and one division; asin, acos: FreeBSD's e_asin.c/e_acos.c (rational, sqrt past 1/2)
  and Cephes' asinf/acosf.
- asinh, acosh, atanh: one log1p each (Goldberg's log(u) y / (u - 1), u = 1 + y, on the log
  above): y = a + a^2 / (1 + sqrt(1 + a^2)), t + sqrt(t (t + 2)) with t = x - 1, 2a / (1 - a);
  past 1e18 / 1e150 (where x^2 would overflow) log|x| + ln2.

Every branch of the originals is computed and one result selected, so the loops vectorize.
Special values as numpy: log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, sin/cos/tan(+-inf) =
NaN, asin/acos past +-1 NaN, sinh/cosh overflow to +-inf, odd functions keep -0, NaN stays NaN.
Max errors (tests/backends/test_numba_logtrig.py: dense grids and hypothesis over the whole
range) in ulps, float32 against the correctly rounded result, float64 against numpy: float32
log, log2 1; log10, sin, cos, sinh, cosh, atan, asin, acos, asinh, acosh 2; tan, atanh 3;
float64 1, but sinh, cosh, asinh, acosh 2 and tan, atanh 3.

numba's on-disk cache keys a kernel on its own file, not on the helpers it inlines: a change
here must come with a change to libm.py, or warm caches keep the old code.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from trueno.backends.numba_kernels._math import (
    INLINE,
    by_dtype,
    exp32_accurate,
    exp64,
    expm1_reduced64,
    f64_as_i64,
    fmadd,
    i64_as_f64,
)

_INF32 = np.float32(np.inf)
_NAN32 = np.float32(np.nan)


# --- logs, float32 (Cephes) -----------------------------------------------------------------


@intrinsic
def _frexp32(typingctx, x):
    """float32 x > 0, normal -> (m, e) as float32: x = m 2**e, m in [1/2, 1) (int32 bit
    operations in LLVM IR: numba would widen them to int64, twice the vector work)."""
    sig = types.UniTuple(types.float32, 2)(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        m = builder.or_(builder.and_(bits, i32(0x007FFFFF)), i32(0x3F000000))
        e = builder.sub(builder.and_(builder.lshr(bits, i32(23)), i32(0xFF)), i32(126))
        out = (builder.bitcast(m, ir.FloatType()), builder.sitofp(e, ir.FloatType()))
        return context.make_tuple(builder, signature.return_type, out)

    return sig, codegen


@nb.njit(**INLINE)
def _log_parts32(x):
    """x > 0 -> (f, e, z, y): x = 2**e (1 + f), 1 + f in [sqrt(1/2), sqrt(2)), and Cephes'
    f^3 P(f) - f^2 / 2 split as y (the polynomial term) and z = f^2."""
    sub = x < np.float32(1.17549435e-38)
    m, e = _frexp32(x * np.float32(8388608.0) if sub else x)
    e = e - np.float32(23.0) if sub else e
    small = m < np.float32(0.707106781186547524)
    e = e - np.float32(1.0) if small else e
    f = (m + m) - np.float32(1.0) if small else m - np.float32(1.0)  # exact
    z = f * f
    p = np.float32(7.0376836292e-2)
    p = fmadd(p, f, np.float32(-1.1514610310e-1))
    p = fmadd(p, f, np.float32(1.1676998740e-1))
    p = fmadd(p, f, np.float32(-1.2420140846e-1))
    p = fmadd(p, f, np.float32(1.4249322787e-1))
    p = fmadd(p, f, np.float32(-1.6668057665e-1))
    p = fmadd(p, f, np.float32(2.0000714765e-1))
    p = fmadd(p, f, np.float32(-2.4999993993e-1))
    p = fmadd(p, f, np.float32(3.3333331174e-1))
    return f, e, z, f * (z * p)


@nb.njit(**INLINE)
def _log_special32(x, r):
    """numpy's log at the edges: inf at inf, -inf at +-0, NaN below 0 and at NaN."""
    r = r if x < _INF32 else x
    return r if x > np.float32(0.0) else (-_INF32 if x == np.float32(0.0) else _NAN32)


@nb.njit(**INLINE)
def log32(x):
    f, e, z, y = _log_parts32(x)
    y = y + e * np.float32(-2.12194440e-4)
    y = y - np.float32(0.5) * z
    r = f + y
    r = r + e * np.float32(0.693359375)
    return _log_special32(x, r)


@nb.njit(**INLINE)
def log2_32(x):
    f, e, z, y = _log_parts32(x)
    y = y - np.float32(0.5) * z
    log2ea = np.float32(0.44269504088896340736)  # log2(e) - 1
    r = y * log2ea
    r = r + f * log2ea
    r = r + y
    r = r + f
    r = r + e
    return _log_special32(x, r)


@nb.njit(**INLINE)
def log10_32(x):
    f, e, z, y = _log_parts32(x)
    y = y - np.float32(0.5) * z
    r = (f + y) * np.float32(7.00731903251827651129e-4)  # log10(e) - 0.43359375
    r = r + y * np.float32(4.3359375e-1)
    r = r + f * np.float32(4.3359375e-1)
    r = r + e * np.float32(2.48745663981195213739e-4)  # log10(2) - 0.30078125
    r = r + e * np.float32(3.0078125e-1)
    return _log_special32(x, r)


# --- logs, float64 (FreeBSD msun) -------------------------------------------------------------
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_HI32 = np.int64(-4294967296)  # 0xFFFFFFFF00000000: keeps a double's high word


@nb.njit(**INLINE)
def _log_parts64(x):
    """x > 0 -> (f, k, hfsq, r): x = 2**k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)), hfsq =
    f^2 / 2 and r = s (hfsq + R(s^2)) with s = f / (2 + f) (k_log1p)."""
    sub = x < 2.2250738585072014e-308
    xs = x * 18014398509481984.0 if sub else x  # 2**54
    bits = f64_as_i64(xs)
    k = ((bits >> np.int64(52)) & np.int64(0x7FF)) - np.int64(1023)
    k = k - np.int64(54) if sub else k
    mant = bits & np.int64(0x000FFFFFFFFFFFFF)
    i = ((mant >> np.int64(32)) + np.int64(0x95F64)) & np.int64(0x100000)  # m >= sqrt(2)?
    m = i64_as_f64(mant | ((i ^ np.int64(0x3FF00000)) << np.int64(32)))
    k = k + (i >> np.int64(20))
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01
                                              + w * 1.531383769920937332e-01))  # fmt: skip
    t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01
              + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)))  # fmt: skip
    hfsq = 0.5 * f * f
    return f, np.float64(k), hfsq, s * (hfsq + (t2 + t1))


@nb.njit(**INLINE)
def _log_special64(x, r):
    r = r if x < np.inf else x
    return r if x > 0.0 else (-np.inf if x == 0.0 else np.nan)


@nb.njit(**INLINE)
def log64(x):
    f, k, hfsq, r = _log_parts64(x)
    return _log_special64(x, k * _LN2_HI - ((hfsq - (r + k * _LN2_LO)) - f))


@nb.njit(**INLINE)
def _head_tail64(f, hfsq, r):
    """log1p(f) as hi + lo, hi with its low 32 bits zero (a product with a 33-bit constant
    head is then exact)."""
    hi = i64_as_f64(f64_as_i64(f - hfsq) & _HI32)
    return hi, (f - hi) - hfsq + r


@nb.njit(**INLINE)
def log2_64(x):
    f, k, hfsq, r = _log_parts64(x)
    hi, lo = _head_tail64(f, hfsq, r)
    val_hi = hi * 1.44269504072144627571e00
    val_lo = (lo + hi) * 1.67517131648865118353e-10 + lo * 1.44269504072144627571e00
    w = k + val_hi
    val_lo = val_lo + ((k - w) + val_hi)
    return _log_special64(x, val_lo + w)


@nb.njit(**INLINE)
def log10_64(x):
    f, k, hfsq, r = _log_parts64(x)
    hi, lo = _head_tail64(f, hfsq, r)
    val_hi = hi * 4.34294481878168880939e-01
    y2 = k * 3.01029995663611771306e-01
    val_lo = (k * 3.69423907715893078616e-13 + (lo + hi) * 2.50829467116452752298e-11
              + lo * 4.34294481878168880939e-01)  # fmt: skip
    w = y2 + val_hi
    val_lo = val_lo + ((y2 - w) + val_hi)
    return _log_special64(x, val_lo + w)


# --- sin, cos and tan -------------------------------------------------------------------------
_INVPIO2 = 6.36619772367581382433e-01
_PIO2_1 = 1.57079632673412561417e00  # pi/2's first 33 bits
_PIO2_2 = 6.07710050630396597660e-11  # the next 33 bits, and so on
_PIO2_2T = 2.02226624879595063154e-21
_PIO2_3 = 2.02226624871116645580e-21
_PIO2_3T = 8.47842766036889956997e-32
TRIG_MAX32 = np.float32(71476.0)  # from here on the kernels hand a float32 element to libm
TRIG_MAX64 = 1647099.0  # 2**20 pi/2: the same for float64


_PIO2_HI32 = np.float32(float.fromhex("-0x1.921fb0p+00"))  # -pi/2 in three float32 parts,
_PIO2_MED32 = np.float32(float.fromhex("-0x1.5110b4p-22"))  # the first with 20 bits
_PIO2_LO32 = np.float32(float.fromhex("-0x1.846988p-48"))


@nb.njit(**INLINE)
def _quadrant32(x):
    """float32 x -> (j mod 4, r): x = j pi/2 + r, |r| <= pi/4, with pi/2 in three float32
    parts and a fused multiply-add each (Cody-Waite, as numpy's own SIMD sinf: r to a few
    ulp for |x| < TRIG_MAX32)."""
    fn = np.rint(x * np.float32(0.636619772367581343))
    r = fmadd(fn, _PIO2_HI32, x)
    r = fmadd(fn, _PIO2_MED32, r)
    r = fmadd(fn, _PIO2_LO32, r)
    return np.int32(fn) & np.int32(3), r


@nb.njit(**INLINE)
def _sin_poly32(r):  # Cephes' sinf on |r| <= pi/4
    z = r * r
    p = fmadd(np.float32(-1.9515295891e-4), z, np.float32(8.3321608736e-3))
    p = fmadd(p, z, np.float32(-1.6666654611e-1))
    return fmadd(p * z, r, r)


@nb.njit(**INLINE)
def _cos_poly32(r):  # Cephes' cosf on |r| <= pi/4
    z = r * r
    p = fmadd(np.float32(2.443315711809948e-5), z, np.float32(-1.388731625493765e-3))
    p = fmadd(p, z, np.float32(4.166664568298827e-2))
    return fmadd(p * z, z, fmadd(np.float32(-0.5), z, np.float32(1.0)))


@nb.njit(**INLINE)
def _pick(q, s, c, shift):
    """sin (shift 0) or cos (shift 1) of j pi/2 + r from s = sin r, c = cos r, q = j mod 4
    (an integer of q's type)."""
    q = (q + shift) & 3
    v = c if (q & 1) == 1 else s
    return -v if q >= 2 else v


@nb.njit(**INLINE)
def sin32(x):
    q, r = _quadrant32(x)
    v = _pick(q, _sin_poly32(r), _cos_poly32(r), np.int32(0))
    return x if x == np.float32(0.0) else v  # sin(-0) = -0


@nb.njit(**INLINE)
def cos32(x):
    q, r = _quadrant32(x)
    return _pick(q, _sin_poly32(r), _cos_poly32(r), np.int32(1))


@nb.njit(**INLINE)
def _quadrant64(x):
    """x -> (j mod 4, y0, y1): x = j pi/2 + y0 + y1, |y0| <= pi/4, y1 y0's tail (FreeBSD's
    __rem_pio2 for |x| < 2**20 pi/2, its three rounds always taken)."""
    fn = np.rint(x * _INVPIO2)
    t = x - fn * _PIO2_1  # exact; each round below replaces the last one's tail constant
    w = fn * _PIO2_2
    r = t - w
    w = fn * _PIO2_2T - ((t - r) - w)
    t = r
    w = fn * _PIO2_3
    r = t - w
    w = fn * _PIO2_3T - ((t - r) - w)
    y0 = r - w
    return np.int64(fn) & np.int64(3), y0, (r - y0) - w


@nb.njit(**INLINE)
def _sin_poly64(x, y):  # FreeBSD's __kernel_sin(x, y, 1): sin(x + y), |x| <= pi/4
    z = x * x
    w = z * z
    r = 8.33333333332248946124e-03 + z * (-1.98412698298579493134e-04
                                          + z * 2.75573137070700676789e-06)  # fmt: skip
    r = r + z * w * (-2.50507602534068634195e-08 + z * 1.58969099521155010221e-10)
    v = z * x
    return x - ((z * (0.5 * y - v * r) - y) - v * -1.66666666666666324348e-01)


@nb.njit(**INLINE)
def _cos_poly64(x, y):  # FreeBSD's __kernel_cos(x, y): cos(x + y), |x| <= pi/4
    z = x * x
    w = z * z
    r = z * (4.16666666666666019037e-02 + z * (-1.38888888888741095749e-03
             + z * 2.48015872894767294178e-05))  # fmt: skip
    r = r + w * w * (-2.75573143513906633035e-07 + z * (2.08757232129817482790e-09
                     + z * -1.13596475577881948265e-11))  # fmt: skip
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + (z * r - x * y))


@nb.njit(**INLINE)
def sin64(x):
    q, y0, y1 = _quadrant64(x)
    v = _pick(q, _sin_poly64(y0, y1), _cos_poly64(y0, y1), np.int64(0))
    return x if x == 0.0 else v


@nb.njit(**INLINE)
def cos64(x):
    q, y0, y1 = _quadrant64(x)
    return _pick(q, _sin_poly64(y0, y1), _cos_poly64(y0, y1), np.int64(1))


@nb.njit(**INLINE)
def tan32(x):
    """Cephes' tanf on the float32 reduction of sin32: r + r^3 P(r^2) with a degree-5 P, or
    -1 / that for odd j."""
    q, r = _quadrant32(x)
    z = r * r
    p = fmadd(np.float32(9.38540185543e-3), z, np.float32(3.11992232697e-3))
    p = fmadd(p, z, np.float32(2.44301354525e-2))
    p = fmadd(p, z, np.float32(5.34112807005e-2))
    p = fmadd(p, z, np.float32(1.33387994085e-1))
    p = fmadd(p, z, np.float32(3.33331568548e-1))
    t = fmadd(p * z, r, r)
    v = np.float32(-1.0) / t if (q & np.int32(1)) == np.int32(1) else t
    return x if x == np.float32(0.0) else v


@nb.njit(**INLINE)
def tan64(x):
    """sin(r) / cos(r), or -cos(r) / sin(r) for odd j, from __kernel_sin and __kernel_cos of
    the three-round reduction (one division; 3 ulp)."""
    q, y0, y1 = _quadrant64(x)
    s = _sin_poly64(y0, y1)
    c = _cos_poly64(y0, y1)
    odd = (q & np.int64(1)) == np.int64(1)
    v = (-c if odd else s) / (s if odd else c)
    return x if x == 0.0 else v


# --- sinh and cosh: exp, with an expm1 (float64) or Taylor (float32) form near 0 ---------------


@nb.njit(**INLINE)
def _expm1_below_one(a):
    """e**a - 1 for 0 <= a < 1: e^r - 1 of _math's exp64 (r = a, or a - ln2 with ln2 in two
    parts when a > ln2/2, then 2 (e^r - 1) + 1)."""
    big = a > 0.34657359027997264
    r = (a - _LN2_HI) - _LN2_LO if big else a
    m = expm1_reduced64(r)
    return (m + m) + 1.0 if big else m


@nb.njit(**INLINE)
def cosh64(x):
    """(e^a + e^-a) / 2, a = |x|; past 709 (where e^a overflows first) (e^(a/2) / 2) e^(a/2)."""
    a = np.abs(x)
    big = a > 709.0
    e = exp64(0.5 * a if big else a)
    return (0.5 * e) * e if big else 0.5 * e + 0.5 / e


@nb.njit(**INLINE)
def sinh64(x):
    """(m + m / (m + 1)) / 2 with m = e^a - 1 below a = |x| = 1 (no cancellation), (e^a -
    e^-a) / 2 above, (e^(a/2) / 2) e^(a/2) past 709; signed by x (-0 stays -0)."""
    a = np.abs(x)
    m = _expm1_below_one(a if a < 1.0 else 0.0)
    big = a > 709.0
    e = exp64(0.5 * a if big else a)
    v = 0.5 * (m + m / (m + 1.0)) if a < 1.0 else ((0.5 * e) * e if big else 0.5 * e - 0.5 / e)
    v = -v if x < 0.0 else v
    return x if x == 0.0 else v


@nb.njit(**INLINE)
def cosh32(x):
    """cosh64's forms in float32 on exp32_accurate (past 88.7, where e^a overflows first, the
    two halves' product)."""
    a = np.abs(x)
    big = a > np.float32(88.0)
    e = exp32_accurate(np.float32(0.5) * a if big else a)
    return (np.float32(0.5) * e) * e if big else np.float32(0.5) * e + np.float32(0.5) / e


@nb.njit(**INLINE)
def sinh32(x):
    """x + x^3 / 3! + ... + x^11 / 11! below |x| = 1 (truncation under 2e-8), cosh32's forms
    with the difference above; signed by x."""
    a = np.abs(x)
    z = a * a
    p = fmadd(np.float32(1.0 / 39916800.0), z, np.float32(1.0 / 362880.0))
    p = fmadd(p, z, np.float32(1.0 / 5040.0))
    p = fmadd(p, z, np.float32(1.0 / 120.0))
    p = fmadd(p, z, np.float32(1.0 / 6.0))
    small = fmadd(p * z, a, a)
    big = a > np.float32(88.0)
    e = exp32_accurate(np.float32(0.5) * a if big else a)
    large = (np.float32(0.5) * e) * e if big else np.float32(0.5) * e - np.float32(0.5) / e
    v = small if a < np.float32(1.0) else large
    v = -v if x < np.float32(0.0) else v
    return x if x == np.float32(0.0) else v


# --- atan, asin, acos ------------------------------------------------------------------------
_PIO2F = np.float32(1.5707963267948966)


@nb.njit(**INLINE)
def _atan_poly32(t):  # Cephes' atanf on |t| <= tan(pi/8)
    z = t * t
    p = fmadd(np.float32(8.05374449538e-2), z, np.float32(-1.38776856032e-1))
    p = fmadd(p, z, np.float32(1.99777106478e-1))
    p = fmadd(p, z, np.float32(-3.33329491539e-1))
    return fmadd(p * z, t, t)


@nb.njit(**INLINE)
def atan32(x):
    """Cephes' atanf, branch-free: |x| > tan(3pi/8): pi/2 + atan(-1/|x|); > tan(pi/8): pi/4 +
    atan((|x| - 1) / (|x| + 1)); one division for the three forms; signed by x."""
    a = np.abs(x)
    big = a > np.float32(2.414213562373095)
    mid = a > np.float32(0.4142135623730950)
    num = np.float32(-1.0) if big else (a - np.float32(1.0) if mid else a)
    den = a if big else (a + np.float32(1.0) if mid else np.float32(1.0))
    base = 1.5707963267948966 if big else (0.7853981633974483 if mid else 0.0)
    v = np.float32(base + np.float64(_atan_poly32(num / den)))  # pi/4 and pi/2 unrounded
    return x if x == np.float32(0.0) else (-v if x < np.float32(0.0) else v)


@nb.njit(**INLINE)
def _asin_reduced32(a):
    """0 <= a <= 1 -> (far, asin(t)) by Cephes' asinf polynomial, t = a up to 1/2 and
    sqrt((1 - a) / 2) past it (far): asin(a) = pi/2 - 2 asin(t) there."""
    far = a > np.float32(0.5)
    z = np.float32(0.5) * (np.float32(1.0) - a) if far else a * a
    t = np.sqrt(z) if far else a
    p = fmadd(np.float32(4.2163199048e-2), z, np.float32(2.4181311049e-2))
    p = fmadd(p, z, np.float32(4.5470025998e-2))
    p = fmadd(p, z, np.float32(7.4953002686e-2))
    p = fmadd(p, z, np.float32(1.6666752422e-1))
    return far, fmadd(p * z, t, t)


@nb.njit(**INLINE)
def asin32(x):
    far, r = _asin_reduced32(np.abs(x))  # NaN past |x| = 1 (sqrt of a negative), and at NaN
    v = _PIO2F - (r + r) if far else r
    v = v if np.abs(x) <= np.float32(1.0) else _NAN32
    return x if x == np.float32(0.0) else (-v if x < np.float32(0.0) else v)


@nb.njit(**INLINE)
def acos32(x):
    """Cephes' acosf: pi - 2 asin(sqrt((1 + x) / 2)) below -1/2, 2 asin(sqrt((1 - x) / 2))
    above 1/2, pi/2 - asin(x) between (float64 for the last subtraction: no cancellation)."""
    a = np.abs(x)
    far, r32 = _asin_reduced32(a)
    r = np.float64(r32)
    if_far = 3.141592653589793 - (r + r) if x < np.float32(0.0) else r + r
    near = 1.5707963267948966 - (r if x >= np.float32(0.0) else -r)
    v = np.float32(if_far if far else near)
    return v if a <= np.float32(1.0) else _NAN32


_AT = (3.33333333333329318027e-01, -1.99999999998764832476e-01, 1.42857142725034663711e-01,
       -1.11111104054623557880e-01, 9.09088713343650656196e-02, -7.69187620504482999495e-02,
       6.66107313738753120669e-02, -5.83357013379057348645e-02, 4.97687799461593236017e-02,
       -3.65315727442169155270e-02, 1.62858201153657823623e-02)  # fmt: skip


@nb.njit(**INLINE)
def atan64(x):
    """FreeBSD's s_atan.c, branch-free: |x| reduced by one of atan(1/2), atan(1), atan(3/2),
    pi/2 (head and tail each) through one division, then its degree-11 odd polynomial."""
    a = np.abs(x)
    r0 = a < 0.4375
    r1 = a < 0.6875
    r2 = a < 1.1875
    r3 = a < 2.4375
    num = a if r0 else (2.0 * a - 1.0 if r1 else (a - 1.0 if r2 else (a - 1.5 if r3 else -1.0)))
    den = 1.0 if r0 else (2.0 + a if r1 else (a + 1.0 if r2 else (1.0 + 1.5 * a if r3 else a)))
    hi = 4.63647609000806093515e-01 if r1 else (7.85398163397448278999e-01 if r2 else (
        9.82793723247329054082e-01 if r3 else 1.57079632679489655800e00))  # fmt: skip
    lo = 2.26987774529616870924e-17 if r1 else (3.06161699786838301793e-17 if r2 else (
        1.39033110312309984516e-17 if r3 else 6.12323399573676603587e-17))  # fmt: skip
    t = num / den
    z = t * t
    w = z * z
    s1 = z * (_AT[0] + w * (_AT[2] + w * (_AT[4] + w * (_AT[6] + w * (_AT[8] + w * _AT[10])))))
    s2 = w * (_AT[1] + w * (_AT[3] + w * (_AT[5] + w * (_AT[7] + w * _AT[9]))))
    v = t - t * (s1 + s2) if r0 else hi - ((t * (s1 + s2) - lo) - t)
    return x if x == 0.0 else (-v if x < 0.0 else v)


_PIO2_HI = 1.57079632679489655800e00
_PIO2_LO = 6.12323399573676603587e-17
_PIO4_HI = 7.85398163397448278999e-01


@nb.njit(**INLINE)
def _asin_rational64(t):
    """FreeBSD's e_asin.c R(t) = P(t) / Q(t), asin(x) = x + x R(x^2) near 0."""
    p = t * (1.66666666666666657415e-01 + t * (-3.25565818622400915405e-01 + t * (
        2.01212532134862925881e-01 + t * (-4.00555345006794114027e-02 + t * (
            7.91534994289814532176e-04 + t * 3.47933107596021167570e-05)))))  # fmt: skip
    q = 1.0 + t * (-2.40339491173441421878e00 + t * (2.02094576023350569471e00 + t * (
        -6.88283971605453293030e-01 + t * 7.70381505559019352791e-02)))  # fmt: skip
    return p / q


@nb.njit(**INLINE)
def asin64(x):
    """FreeBSD's e_asin.c, branch-free: x + x R(x^2) below |x| = 1/2; above, with t = (1 -
    |x|) / 2 and s = sqrt(t), pi/2 - 2 (s + s R(t)) (s's head and tail split below 0.975)."""
    a = np.abs(x)
    small = a < 0.5
    t = a * a if small else 0.5 * (1.0 - a)
    r = _asin_rational64(t)
    s = np.sqrt(t)
    near_one = _PIO2_HI - (2.0 * (s + s * r) - _PIO2_LO)
    head = i64_as_f64(f64_as_i64(s) & _HI32)
    c = (t - head * head) / (s + head) if t > 0.0 else 0.0
    p = 2.0 * s * r - (_PIO2_LO - 2.0 * c)
    q = _PIO4_HI - 2.0 * head
    middle = _PIO4_HI - (p - q)
    v = a + a * r if small else (near_one if a >= 0.975 else middle)
    v = v if a <= 1.0 else np.nan
    return x if x == 0.0 else (-v if x < 0.0 else v)


@nb.njit(**INLINE)
def acos64(x):
    """FreeBSD's e_acos.c, branch-free: pi/2 - (x + x R(x^2)) below |x| = 1/2; pi - 2 (s +
    s R(t)) below -1/2 and 2 (head + tail) above 1/2, t = (1 - |x|) / 2, s = sqrt(t)."""
    a = np.abs(x)
    small = a < 0.5
    t = x * x if small else 0.5 * (1.0 - a)
    r = _asin_rational64(t)
    s = np.sqrt(t)
    inner = _PIO2_HI - (x - (_PIO2_LO - x * r))
    negative = 3.14159265358979311600e00 - 2.0 * (s + (r * s - _PIO2_LO))
    head = i64_as_f64(f64_as_i64(s) & _HI32)
    c = (t - head * head) / (s + head) if t > 0.0 else 0.0  # x = 1: 0, not 0 / 0
    positive = 2.0 * (head + (r * s + c))
    v = inner if small else (negative if x < 0.0 else positive)
    return v if a <= 1.0 else np.nan


# --- asinh, acosh, atanh: logs of 1 + y --------------------------------------------------------


def _inverse_hyperbolic(log, half, one, two, ln2, big):
    """asinh, acosh and atanh of one precision on its ``log`` (constants of that precision;
    ``big``: past it x^2 would overflow, and log|x| + ln2 is the result to the last bit)."""

    @nb.njit(**INLINE)
    def log1p(y):
        """log(1 + y), y >= 0 or y > -1: Goldberg's log(u) y / (u - 1) with u = 1 + y rounded
        (the factor undoes u's rounding); y itself where u is 1, inf at inf."""
        u = one + y
        d = u - one
        v = log(u) * (y / d)
        return y if d == 0 else (u if u == u + u else v)  # u + u == u: u is inf

    @nb.njit(**INLINE)
    def asinh(x):
        """log1p(a + a^2 / (1 + sqrt(1 + a^2))), a = |x|; log(a) + ln2 past ``big``, where
        a^2 would overflow (one log either way)."""
        a = np.abs(x)
        z = a * a
        far = a > big
        v = log1p(a if far else a + z / (one + np.sqrt(one + z)))
        v = v + ln2 if far else v
        v = -v if x < 0 else v
        return x if x == 0 else v

    @nb.njit(**INLINE)
    def acosh(x):
        """log(x + sqrt(x^2 - 1)) as log1p(t + sqrt(t (t + 2))), t = x - 1 (exact): one form
        for every x; log(x) + ln2 past ``big``; NaN below 1."""
        t = x - one
        far = x > big
        v = log1p(x if far else t + np.sqrt(t * (t + two)))
        v = v + ln2 if far else v
        return v if x >= one else (x - x) / (x - x)  # NaN below 1 (and at NaN)

    @nb.njit(**INLINE)
    def atanh(x):
        """log1p(2 a / (1 - a)) / 2, a = |x|: inf at 1, NaN past it."""
        a = np.abs(x)
        v = half * log1p((a + a) / (one - a))
        v = v if a <= one else (x - x) / (x - x)
        v = -v if x < 0 else v
        return x if x == 0 else v

    return asinh, acosh, atanh


asinh32, acosh32, atanh32 = _inverse_hyperbolic(
    log32, np.float32(0.5), np.float32(1.0), np.float32(2.0), np.float32(0.6931471805599453),
    np.float32(1e18),
)  # fmt: skip
asinh64, acosh64, atanh64 = _inverse_hyperbolic(log64, 0.5, 1.0, 2.0, 0.6931471805599453, 1e150)


# --- generic forms: the kernels call these; the dtype picks the polynomial ------------------
flog = by_dtype(log32, log64, np.log)
flog2 = by_dtype(log2_32, log2_64, np.log2)
flog10 = by_dtype(log10_32, log10_64, np.log10)
fsin = by_dtype(sin32, sin64, np.sin)
fcos = by_dtype(cos32, cos64, np.cos)
ftan = by_dtype(tan32, tan64, np.tan)
fsinh = by_dtype(sinh32, sinh64, np.sinh)
fcosh = by_dtype(cosh32, cosh64, np.cosh)
fatan = by_dtype(atan32, atan64, np.arctan)
fasin = by_dtype(asin32, asin64, np.arcsin)
facos = by_dtype(acos32, acos64, np.arccos)
fasinh = by_dtype(asinh32, asinh64, np.arcsinh)
facosh = by_dtype(acosh32, acosh64, np.arccosh)
fatanh = by_dtype(atanh32, atanh64, np.arctanh)


def trig_far(x):  # pragma: no cover - replaced by the overload inside jitted code
    raise NotImplementedError


@overload(trig_far, inline="always")
def _trig_far(x):
    """Whether x is finite and past the reduction's range: fsin/fcos of it are libm's job."""
    if x == types.float32:  # & of two compares: no branch (vectorizes)
        return lambda x: (np.abs(x) >= TRIG_MAX32) & (np.abs(x) < _INF32)
    return lambda x: (np.abs(x) >= TRIG_MAX64) & (np.abs(x) < np.inf)
