"""Every op is declared once here, beside dispatch (which reads it): name, threshold class,
tolerance against the numpy reference (float32), and flops per element for traces. Backends
implement ops by name; the tests run every backend's kernel against numpy at the tolerance
written here. The public functions in :mod:`trueno.ops` declare themselves through it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OpSpec:
    name: str
    kind: str  # threshold class in dispatch.THRESHOLDS
    rtol: float = 1e-6  # float32 tolerance vs the numpy reference
    atol: float = 0.0
    flops: float = 1.0  # flops per input element (traces only)
    doc: str = ""
    # inputs, for the generic parity tests: "x" unary, "xy" two arrays, "xyz" three arrays,
    # "xs" array + scalar, "xss" array + two scalars, "xys" two arrays + scalar, "row" 1-D/2-D
    # along the last axis, "red" reduction to a scalar, "redxy" two-array reduction, "vec" a
    # 1-D array mapped through its own reduction (zscore, normalize), "mat" other
    args: str = "x"
    domain: tuple[float, float] | None = None  # valid input range (asin: (-1, 1))
    # threshold class of float64 inputs, where numpy's float64 kernel is another kind of code
    # than its float32 one (sin: scalar libm against SIMD); None: ``kind`` for both
    kind64: str | None = None


OPS: dict[str, OpSpec] = {}


def declare(
    name: str,
    kind: str,
    rtol: float = 1e-6,
    atol: float = 0.0,
    flops: float = 1.0,
    doc: str = "",
    args: str = "x",
    domain: tuple[float, float] | None = None,
    kind64: str | None = None,
) -> OpSpec:
    if name in OPS:
        raise ValueError(f"op {name!r} declared twice")
    spec = OpSpec(name, kind, rtol, atol, flops, doc, args, domain, kind64)
    OPS[name] = spec
    return spec
