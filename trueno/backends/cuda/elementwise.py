"""Element-wise ops as ONE expression each, written in the common subset of CUDA C++ and Python.

The same text becomes a fused ``cupy.ElementwiseKernel`` body (``y = <expr>``, ``T`` the
element type) on the GPU, and runs with numpy standing in for cupy in the tests
(:func:`evaluate`), where it is checked against the numpy reference backend. Constants are
written ``T(0.5)`` (a functional cast in C++, a numpy scalar in Python) so float32 stays float32;
functions come from a fixed set that both languages provide (:data:`FUNCTIONS`).

No cupy import here: this module is plain data plus two small helpers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Functions an expression may call. CUDA: the math API's float/double overloads plus ``where``
# from :data:`PREAMBLE`. Python: the array namespace's function of the same meaning.
FUNCTIONS = (
    "exp",
    "log",
    "tanh",
    "sqrt",
    "erf",
    "fabs",
    "sin",
    "cos",
    "floor",
    "ceil",
    "trunc",
    "where",
)

PREAMBLE = """
template <typename U> __device__ __forceinline__ U where(bool c, U a, U b) { return c ? a : b; }
"""


@dataclass(frozen=True)
class Expr:
    """One element-wise op: argument names (each of type ``T``) and the result expression."""

    name: str
    args: tuple[str, ...]
    expr: str

    @property
    def in_params(self) -> str:
        return ", ".join(f"T {a}" for a in self.args)


_GELU_2C = "T(1.5957691216057308)"  # 2 sqrt(2 / pi)

# ops that are a single array-module function with the same name in numpy and cupy (one
# kernel already): registered directly, nothing to fuse
UFUNCS: dict[str, str] = {
    "signum": "sign",
    "log2": "log2",
    "log10": "log10",
    "tan": "tan",
    "asin": "arcsin",
    "acos": "arccos",
    "atan": "arctan",
    "sinh": "sinh",
    "cosh": "cosh",
    "asinh": "arcsinh",
    "acosh": "arccosh",
    "atanh": "arctanh",
    "round": "rint",
    "minimum": "minimum",
    "maximum": "maximum",
    "copysign": "copysign",
    "pow": "power",
}

EXPRESSIONS: dict[str, Expr] = {
    e.name: e
    for e in (
        Expr("add", ("a", "b"), "a + b"),
        Expr("sub", ("a", "b"), "a - b"),
        Expr("mul", ("a", "b"), "a * b"),
        Expr("div", ("a", "b"), "a / b"),
        Expr("neg", ("x",), "-x"),
        Expr("abs", ("x",), "fabs(x)"),
        Expr("recip", ("x",), "T(1) / x"),
        Expr("sqrt", ("x",), "sqrt(x)"),
        Expr("exp", ("x",), "exp(x)"),
        Expr("ln", ("x",), "log(x)"),
        Expr("sin", ("x",), "sin(x)"),
        Expr("cos", ("x",), "cos(x)"),
        Expr("floor", ("x",), "floor(x)"),
        Expr("ceil", ("x",), "ceil(x)"),
        Expr("trunc", ("x",), "trunc(x)"),
        Expr("tanh", ("x",), "tanh(x)"),
        Expr("sigmoid", ("x",), "T(1) / (T(1) + exp(-x))"),
        Expr("silu", ("x",), "x * (T(1) / (T(1) + exp(-x)))"),
        Expr("relu", ("x",), "where(x < T(0), T(0), x)"),  # NaN stays NaN, as np.maximum
        # 0.5 x (1 + tanh(u)) written as x * sigmoid(2u): no cancellation for large negative x
        Expr("gelu", ("x",), f"x / (T(1) + exp(-({_GELU_2C} * (x + T(0.044715) * x * x * x))))"),
        Expr("gelu_erf", ("x",), "T(0.5) * x * (T(1) + erf(x * T(0.7071067811865476)))"),
    )
}


# Gated MLP activations of the transformer block (not public ops): act(g) * u in one kernel,
# as trueno.llm.kernels.silu_mul / gelu_tanh_mul compute them.
GATED: dict[str, Expr] = {
    e.name: e
    for e in (
        Expr("silu_mul", ("g", "u"), "g / (T(1) + exp(-g)) * u"),
        # gelu_tanh(g) = 0.5 g (1 + tanh(v)) = g * sigmoid(2 v): no cancellation for g << 0
        Expr(
            "gelu_tanh_mul",
            ("g", "u"),
            f"g / (T(1) + exp(-({_GELU_2C} * (g + T(0.044715) * g * g * g)))) * u",
        ),
    )
}


def namespace(xp, dtype) -> dict:
    """The names an expression sees when evaluated with array module ``xp`` (numpy or cupy)."""
    ns = {
        name: getattr(xp, name)
        for name in ("exp", "log", "tanh", "sqrt", "sin", "cos", "floor", "ceil", "trunc", "where")
    }
    ns["fabs"] = xp.abs
    ns["erf"] = _erf(xp, dtype)
    ns["T"] = xp.dtype(dtype).type
    return ns


def _erf(xp, dtype):
    if hasattr(xp, "erf"):
        return xp.erf
    vec = xp.vectorize(math.erf, otypes=[dtype])  # numpy has no erf ufunc; exact per element
    return lambda v: vec(v).astype(dtype, copy=False)


def evaluate(name: str, xp, *arrays):
    """Run op ``name``'s expression with array module ``xp`` (numpy in the CPU tests)."""
    e = EXPRESSIONS[name] if name in EXPRESSIONS else GATED[name]
    if len(arrays) != len(e.args):
        raise TypeError(f"{name} takes {len(e.args)} arrays, got {len(arrays)}")
    ns = namespace(xp, arrays[0].dtype)
    ns.update(zip(e.args, arrays, strict=True))
    out = eval(e.expr, {"__builtins__": {}}, ns)  # noqa: S307 (our own constant table)
    return xp.asarray(out, dtype=arrays[0].dtype)


def cuda_check_source() -> str:
    """A standalone .cu with one kernel per expression and dtype, shaped like the code cupy's
    ElementwiseKernel generates (a namespace-scope ``typedef ... T``, then the preamble, then
    the kernel); the nvcc test compiles it to catch C++ errors without a GPU."""
    parts = [
        "// generated by trueno.backends.cuda.elementwise.cuda_check_source",
        "typedef float T;  // cupy emits the type placeholders before the preamble",
        PREAMBLE,
    ]
    for e in (*EXPRESSIONS.values(), *GATED.values()):
        for suffix, ctype in (("f32", "float"), ("f64", "double")):
            params = ", ".join(f"const {ctype}* _in_{a}" for a in e.args)
            loads = " ".join(f"const T {a} = _in_{a}[i];" for a in e.args)
            parts.append(
                f'extern "C" __global__ void ew_{e.name}_{suffix}({params}, {ctype}* _out_y, '
                "long long n) {\n"
                f"    typedef {ctype} T;\n"
                "    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
                "    if (i >= n) return;\n"
                f"    {loads}\n"
                "    T y;\n"
                f"    y = {e.expr};\n"
                "    _out_y[i] = y;\n"
                "}"
            )
    return "\n".join(parts) + "\n"
