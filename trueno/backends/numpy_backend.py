"""The numpy backend: the executable specification of every op. Vectorized, complete, and the
reference every other backend is tested against. Kernels take validated arrays (same dtype,
shapes checked by trueno.ops) and compute in the input dtype."""

from __future__ import annotations

import math

import numpy as np

from trueno.errors import DivisionByZeroError, ShapeError

NAME = "numpy"


def available() -> bool:
    return True


def why_unavailable() -> str:
    return ""


KERNELS: dict = {}


def kernel(name: str):
    """Register ``fn`` as this backend's implementation of op ``name``."""

    def deco(fn):
        KERNELS[name] = fn
        return fn

    return deco


def _register_ufuncs() -> None:
    unary = {
        "abs": np.abs,
        "neg": np.negative,
        "signum": np.sign,
        "sqrt": np.sqrt,
        "exp": np.exp,
        "ln": np.log,
        "log2": np.log2,
        "log10": np.log10,
        "sin": np.sin,
        "cos": np.cos,
        "tan": np.tan,
        "asin": np.arcsin,
        "acos": np.arccos,
        "atan": np.arctan,
        "sinh": np.sinh,
        "cosh": np.cosh,
        "tanh": np.tanh,
        "asinh": np.arcsinh,
        "acosh": np.arccosh,
        "atanh": np.arctanh,
        "floor": np.floor,
        "ceil": np.ceil,
        "round": np.rint,
        "trunc": np.trunc,
    }
    binary = {
        "add": np.add,
        "sub": np.subtract,
        "mul": np.multiply,
        "div": np.divide,
        "minimum": np.minimum,
        "maximum": np.maximum,
        "copysign": np.copysign,
        "pow": np.power,
    }
    KERNELS.update(unary)
    KERNELS.update(binary)


_register_ufuncs()


# --- element-wise with parameters --------------------------------------------------------


@kernel("scale")
def scale(a, s):
    return a * a.dtype.type(s)


@kernel("clamp")
def clamp(a, lo, hi):
    t = a.dtype.type
    return np.minimum(np.maximum(a, t(lo)), t(hi))


@kernel("lerp")
def lerp(a, b, t):
    return a + a.dtype.type(t) * (b - a)


@kernel("fma")
def fma(a, b, c):
    return a * b + c


@kernel("recip")
def recip(a):
    return np.divide(a.dtype.type(1), a)


@kernel("fract")
def fract(a):
    return a - np.trunc(a)


# --- reductions -----------------------------------------------------------------------------


@kernel("dot")
def dot(a, b):
    return a.dtype.type(np.dot(a.ravel(), b.ravel()))


@kernel("sum")
def sum_(a):
    return a.sum(dtype=a.dtype)


@kernel("sum_kahan")
def sum_kahan(a):
    if a.dtype == np.float64:
        try:
            return np.float64(math.fsum(a.ravel()))
        except (ValueError, OverflowError):  # inf - inf, or an overflow: as a plain sum
            return a.sum()
    return a.dtype.type(a.sum(dtype=np.float64))


@kernel("sum_of_squares")
def sum_of_squares(a):
    a = a.ravel()
    return a.dtype.type(np.dot(a, a))


@kernel("max")
def max_(a):
    return a.max()


@kernel("min")
def min_(a):
    return a.min()


@kernel("argmax")
def argmax(a):
    return int(np.argmax(a))


@kernel("argmin")
def argmin(a):
    return int(np.argmin(a))


@kernel("norm_l1")
def norm_l1(a):
    return np.abs(a).sum(dtype=a.dtype)


@kernel("norm_l2")
def norm_l2(a):
    return np.sqrt(sum_of_squares(a))


@kernel("norm_linf")
def norm_linf(a):
    return np.abs(a).max()


@kernel("normalize")
def normalize(a):
    n = norm_l2(a)
    if n == 0:
        raise DivisionByZeroError("normalize: the vector has L2 norm 0; expected a non-zero vector")
    return a / n


# --- statistics -----------------------------------------------------------------------------


@kernel("mean")
def mean(a):
    return a.dtype.type(a.sum(dtype=a.dtype) / a.dtype.type(a.size))


def centre(a):
    """The mean as a[0] + mean(a - a[0]): exact for constant input, whatever the sum order."""
    a0 = a.reshape(-1)[0]
    return a.dtype.type(a0 + (a - a0).sum(dtype=a.dtype) / a.dtype.type(a.size))


@kernel("variance")
def variance(a, ddof=0):
    d = a - centre(a)
    return a.dtype.type(np.dot(d.ravel(), d.ravel()) / a.dtype.type(a.size - ddof))


@kernel("stddev")
def stddev(a, ddof=0):
    return np.sqrt(variance(a, ddof))


@kernel("covariance")
def covariance(a, b, ddof=0):
    da, db = a - centre(a), b - centre(b)
    return a.dtype.type(np.dot(da.ravel(), db.ravel()) / a.dtype.type(a.size - ddof))


@kernel("correlation")
def correlation(a, b):
    da, db = (a - centre(a)).ravel(), (b - centre(b)).ravel()
    den = np.sqrt(np.dot(da, da)) * np.sqrt(np.dot(db, db))
    if den == 0:
        raise DivisionByZeroError("correlation: an input has zero variance; expected both to vary")
    return a.dtype.type(np.dot(da, db) / den)


@kernel("zscore")
def zscore(a):
    m = centre(a)
    s = stddev(a)
    if s == 0:
        raise DivisionByZeroError(
            "zscore: standard deviation is 0 (constant input); expected values that vary"
        )
    return (a - m) / s


@kernel("minmax_normalize")
def minmax_normalize(a):
    lo, hi = a.min(), a.max()
    if hi == lo:
        raise DivisionByZeroError(
            f"minmax_normalize: max == min == {lo} (constant input); expected values that vary"
        )
    return (a - lo) / (hi - lo)


@kernel("layer_norm")
def layer_norm(x, gamma=None, beta=None, eps=1e-5):
    t = x.dtype.type
    x0 = x[..., :1]  # shifted mean: exact for constant rows, whatever the sum order
    m = x0 + (x - x0).sum(axis=-1, keepdims=True, dtype=x.dtype) / t(x.shape[-1])
    d = x - m
    var = (d * d).mean(axis=-1, keepdims=True, dtype=x.dtype)
    y = d / np.sqrt(var + t(eps))
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


@kernel("rms_norm")
def rms_norm(x, weight=None, eps=1e-6):
    t = x.dtype.type
    ms = (x * x).mean(axis=-1, keepdims=True, dtype=x.dtype)
    y = x / np.sqrt(ms + t(eps))
    return y * weight if weight is not None else y


# --- activations ----------------------------------------------------------------------------


@kernel("relu")
def relu(x):
    return np.maximum(x, x.dtype.type(0))


@kernel("leaky_relu")
def leaky_relu(x, alpha=0.01):
    return np.where(x < 0, x * x.dtype.type(alpha), x)


@kernel("elu")
def elu(x, alpha=1.0):
    t = x.dtype.type
    with np.errstate(over="ignore"):
        return np.where(x < 0, t(alpha) * np.expm1(np.minimum(x, t(0))), x)


SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


@kernel("selu")
def selu(x):
    t = x.dtype.type
    return t(SELU_SCALE) * elu(x, SELU_ALPHA)


@kernel("sigmoid")
def sigmoid(x):
    t = x.dtype.type
    with np.errstate(over="ignore"):
        return t(1) / (t(1) + np.exp(-x))


@kernel("gelu")
def gelu(x, approximate="tanh"):
    t = x.dtype.type
    if approximate == "tanh":
        # 0.5 x (1 + tanh(u)) == x * sigmoid(2u): no cancellation for large negative x
        u = t(2 * 0.7978845608028654) * (x + t(0.044715) * x * x * x)
        with np.errstate(over="ignore"):
            return x / (t(1) + np.exp(-u))
    return (t(0.5) * x * erfc(-x.astype(np.float64) / math.sqrt(2.0))).astype(x.dtype)


@kernel("silu")
def silu(x):
    return x * sigmoid(x)


@kernel("hardswish")
def hardswish(x):
    t = x.dtype.type
    return x * np.minimum(np.maximum(x + t(3), t(0)), t(6)) / t(6)


@kernel("mish")
def mish(x):
    t = x.dtype.type
    # softplus(x) = log1p(exp(-|x|)) + max(x, 0), stable for all x
    sp = np.log1p(np.exp(-np.abs(x))) + np.maximum(x, t(0))
    return x * np.tanh(sp)


@kernel("softmax")
def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True, dtype=x.dtype)


@kernel("log_softmax")
def log_softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True, dtype=x.dtype))


def erfc(x: np.ndarray) -> np.ndarray:
    """erfc in float64 to 1e-11 relative: Taylor series of erf for |x| < 2.5, a continued
    fraction (evaluated bottom-up, fixed depth) for erfc(|x|) beyond. Vectorized."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    small = ax < 2.5
    out = np.empty_like(x)
    xs = np.where(small, x, 0.0)
    term, acc = xs.copy(), xs.copy()
    x2 = xs * xs
    for n in range(1, 60):  # erf(x) = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1))
        term = -term * x2 / n
        acc += term / (2 * n + 1)
    out[small] = 1.0 - (2.0 / math.sqrt(math.pi)) * acc[small]
    xl = np.where(small, 3.0, ax)
    f = np.zeros_like(xl)  # erfc(z) = exp(-z^2)/sqrt(pi) * 1/(z + 1/2/(z + 1/(z + 3/2/(z + ...
    for k in range(80, 0, -1):
        f = (k / 2.0) / (xl + f)
    with np.errstate(invalid="ignore", over="ignore"):
        tail = np.exp(-xl * xl) / math.sqrt(math.pi) / (xl + f)
    tail = np.where(np.isinf(xl), 0.0, tail)
    big = ~small
    out[big] = np.where(x[big] > 0, tail[big], 2.0 - tail[big])
    out[np.isnan(x)] = np.nan
    return out


# --- matrix ---------------------------------------------------------------------------------


@kernel("matmul")
def matmul(a, b):
    return np.matmul(a, b)


KERNELS["batched_matmul"] = matmul


@kernel("transpose")
def transpose(a):
    return np.ascontiguousarray(a.T)


@kernel("matvec")
def matvec(a, x):
    return a @ x


@kernel("vecmat")
def vecmat(x, a):
    return x @ a


@kernel("convolve2d")
def convolve2d(img, k):
    """Valid 2-D convolution (the kernel flipped, as scipy.signal.convolve2d mode='valid')."""
    win = np.lib.stride_tricks.sliding_window_view(img, k.shape)
    return np.einsum("ijkl,kl->ij", win, k[::-1, ::-1]).astype(img.dtype, copy=False)


@kernel("embedding_lookup")
def embedding_lookup(table, ids):
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        bad = ids[(ids < 0) | (ids >= table.shape[0])].ravel()[0]
        raise ShapeError(
            f"embedding_lookup: id {bad} out of range; expected 0 <= id < "
            f"{table.shape[0]} (table rows)"
        )
    return table[ids]


@kernel("eigh")
def eigh(a):
    w, v = np.linalg.eigh(a)
    return w[::-1].copy(), v[:, ::-1].copy()
