"""Element-wise ops. Binary ops take two arrays of the same shape, or an array and a scalar;
results keep the input's dtype (float32 stays float32). Transcendentals run on numba as
vectorized polynomials (error bounds in trueno/backends/numba_kernels/_math.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trueno import dispatch
from trueno.ops import _fast
from trueno.ops._validate import as_float_array, operands, same_dtype, same_shape, scalar
from trueno.opspec import declare

if TYPE_CHECKING:
    from collections.abc import Callable

    from trueno.ops._types import Array, ArrayLike

EXACT = 0.0  # IEEE-exact ops: every backend returns numpy's bits
LIBM = 4e-6  # libm-class results (glibc vs numpy's SIMD math): a few ulp


def _unary(
    name: str,
    kind: str,
    rtol: float,
    doc: str,
    flops: float = 1.0,
    domain: tuple[float, float] | None = None,
    kind64: str | None = None,
) -> Callable[[ArrayLike], Array]:
    spec = declare(name, kind, rtol=rtol, flops=flops, doc=doc, args="x", domain=domain,
                   kind64=kind64)  # fmt: skip

    def op(a: ArrayLike) -> Array:
        a = as_float_array(a, name)
        return dispatch.run(spec, a.size, (a,))

    op = _fast.unary(spec, op)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"{doc} element-wise."
    return op


def _binary(name: str, kind: str, rtol: float, doc: str) -> Callable[[ArrayLike, ArrayLike], Array]:
    spec = declare(name, kind, rtol=rtol, doc=doc, args="xy")

    def op(a: ArrayLike, b: ArrayLike) -> Array:
        a, b = operands(a, b, name)
        n = a.size if a.ndim else b.size
        return dispatch.run(spec, n, (a, b))

    op = _fast.binary(spec, op)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"{doc} element-wise (arrays of one shape, or an array and a scalar)."
    return op


add = _binary("add", "elementwise", EXACT, "a + b")
sub = _binary("sub", "elementwise", EXACT, "a - b")
mul = _binary("mul", "elementwise", EXACT, "a * b")
div = _binary("div", "elementwise", EXACT, "a / b")
minimum = _binary("minimum", "elementwise", EXACT, "min(a, b) (NaN propagates)")
maximum = _binary("maximum", "elementwise", EXACT, "max(a, b) (NaN propagates)")
copysign = _binary("copysign", "compute", EXACT, "|a| with the sign of b")
pow = _binary("pow", "libm", LIBM, "a ** b")  # noqa: A001 (trueno's name)

abs = _unary("abs", "elementwise", EXACT, "|a|")  # noqa: A001
neg = _unary("neg", "elementwise", EXACT, "-a")
signum = _unary("signum", "compute", EXACT, "sign of a (-1, 0, 1; NaN stays NaN)")
recip = _unary("recip", "elementwise", EXACT, "1 / a")
sqrt = _unary("sqrt", "compute", EXACT, "square root of a")
floor = _unary("floor", "elementwise", EXACT, "floor of a")
ceil = _unary("ceil", "elementwise", EXACT, "ceiling of a")
round = _unary("round", "elementwise", EXACT, "a rounded half to even (numpy's rint)")  # noqa: A001
trunc = _unary("trunc", "elementwise", EXACT, "a rounded toward zero")
fract = _unary("fract", "compute", EXACT, "a - trunc(a)")
exp = _unary("exp", "transcendental", 2e-6, "e ** a", flops=12)
ln = _unary("ln", "log", LIBM, "natural log of a", flops=12, kind64="log64")
log2 = _unary("log2", "libm", LIBM, "base-2 log of a", flops=12)
log10 = _unary("log10", "libm", LIBM, "base-10 log of a", flops=12)
sin = _unary("sin", "trig", LIBM, "sine of a", flops=12, kind64="trig64")
cos = _unary("cos", "trig", LIBM, "cosine of a", flops=12, kind64="trig64")
tan = _unary("tan", "trig", LIBM, "tangent of a", flops=12)
asin = _unary("asin", "trig", LIBM, "arcsine of a", flops=12, domain=(-1.0, 1.0))
acos = _unary("acos", "trig", LIBM, "arccosine of a", flops=12, domain=(-1.0, 1.0))
atan = _unary("atan", "trig", LIBM, "arctangent of a", flops=12)
sinh = _unary("sinh", "hyperbolic", LIBM, "hyperbolic sine of a", flops=12)
cosh = _unary("cosh", "hyperbolic", LIBM, "hyperbolic cosine of a", flops=12)
tanh = _unary("tanh", "transcendental", 2e-6, "hyperbolic tangent of a", flops=14)
asinh = _unary("asinh", "hyperbolic", LIBM, "inverse hyperbolic sine of a", flops=12)
acosh = _unary(
    "acosh", "hyperbolic", LIBM, "inverse hyperbolic cosine of a", flops=12, domain=(1.0, 1e30)
)
atanh = _unary(
    "atanh", "hyperbolic", LIBM, "inverse hyperbolic tangent of a", flops=12, domain=(-1.0, 1.0)
)

SCALE = declare("scale", "elementwise", rtol=EXACT, doc="a * s", args="xs")
CLAMP = declare("clamp", "clip", rtol=EXACT, doc="a limited to [lo, hi]", args="xss")
LERP = declare("lerp", "compute", rtol=EXACT, flops=3, doc="a + t (b - a)", args="xys")
FMA = declare("fma", "fma", rtol=EXACT, flops=2, doc="a * b + c", args="xyz")


@_fast.with_floats(SCALE, 1, 1)
def scale(a: ArrayLike, s: float) -> Array:
    """a * s for a scalar s."""
    a = as_float_array(a, "scale")
    return dispatch.run(SCALE, a.size, (a, scalar(s, "scale", "s")))


@_fast.with_floats(CLAMP, 1, 2)
def clamp(a: ArrayLike, lo: float, hi: float) -> Array:
    """a limited to [lo, hi] element-wise (NaN stays NaN; lo > hi gives hi, as numpy.clip)."""
    a = as_float_array(a, "clamp")
    lo, hi = scalar(lo, "clamp", "lo"), scalar(hi, "clamp", "hi")
    return dispatch.run(CLAMP, a.size, (a, lo, hi))


clip = clamp


@_fast.with_floats(LERP, 2, 1)
def lerp(a: ArrayLike, b: ArrayLike, t: float) -> Array:
    """Linear interpolation a + t (b - a) between same-shape arrays."""
    a, b = same_dtype((a, b), "lerp")
    same_shape(a, b, "lerp")
    return dispatch.run(LERP, a.size, (a, b, scalar(t, "lerp", "t")))


@_fast.three_arrays(FMA)
def fma(a: ArrayLike, b: ArrayLike, c: ArrayLike) -> Array:
    """a * b + c element-wise (rounded like numpy's a * b + c, so results are reproducible)."""
    a, b, c = same_dtype((a, b, c), "fma")
    same_shape(a, b, "fma")
    same_shape(a, c, "fma")
    return dispatch.run(FMA, a.size, (a, b, c))


__all__ = [
    "abs",
    "acos",
    "acosh",
    "add",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "ceil",
    "clamp",
    "clip",
    "copysign",
    "cos",
    "cosh",
    "div",
    "exp",
    "floor",
    "fma",
    "fract",
    "lerp",
    "ln",
    "log10",
    "log2",
    "maximum",
    "minimum",
    "mul",
    "neg",
    "pow",
    "recip",
    "round",
    "scale",
    "signum",
    "sin",
    "sinh",
    "sqrt",
    "sub",
    "tan",
    "tanh",
    "trunc",
]
