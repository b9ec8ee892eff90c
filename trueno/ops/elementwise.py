"""Element-wise ops. Binary ops take two arrays of the same shape (or an array and a scalar);
results keep the input's dtype (float32 stays float32)."""

from __future__ import annotations

from trueno import dispatch
from trueno.ops._validate import as_float_array, same_shape
from trueno.ops.spec import declare

ADD = declare("add", "elementwise", rtol=0.0, flops=1, doc="a + b")
EXP = declare("exp", "transcendental", rtol=2e-6, flops=10, doc="e**a")


def _binary(spec, a, b):
    a = as_float_array(a, spec.name)
    b = as_float_array(b, spec.name)
    same_shape(a, b, spec.name)
    return dispatch.run(spec, a.size, (a, b))


def _unary(spec, a):
    a = as_float_array(a, spec.name)
    return dispatch.run(spec, a.size, (a,))


def add(a, b):
    """a + b element-wise."""
    return _binary(ADD, a, b)


def exp(a):
    """e**a element-wise (numba: polynomial, max rel. error 2e-7 in float32)."""
    return _unary(EXP, a)
