"""The element-wise expressions the cupy backend compiles into ElementwiseKernels, run with
numpy standing in for cupy and compared with the numpy reference backend at each op's
declared tolerance. Same text, so a formula error shows up here without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from trueno.backends import numpy_backend
from trueno.backends.cuda import elementwise
from trueno.opspec import OPS

SPECIAL = np.array(
    [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        3.0,
        -3.0,
        20.0,
        -20.0,
        88.0,
        -88.0,
        1e-30,
        -1e-30,
        1e30,
        -1e30,
        np.inf,
        -np.inf,
        np.nan,
    ]
)


def reference(name: str):
    """(numpy reference kernel, tolerance) for expression ``name``."""
    if name == "gelu_erf":
        return (lambda x: numpy_backend.KERNELS["gelu"](x, approximate="erf")), OPS["gelu"]
    return numpy_backend.KERNELS[name], OPS[name]


def check(name: str, *arrays):
    ref_fn, spec = reference(name)
    with np.errstate(all="ignore"):
        got = elementwise.evaluate(name, np, *arrays)
        want = ref_fn(*arrays)
    assert got.dtype == want.dtype == arrays[0].dtype
    # float32 gets the op's tolerance; float64 a tighter one (both compute the same formula)
    rtol = max(spec.rtol, 1e-6) if arrays[0].dtype == np.float32 else 1e-12
    atol = max(spec.atol, 1e-30)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


UNARY = [n for n, e in elementwise.EXPRESSIONS.items() if len(e.args) == 1]
BINARY = [n for n, e in elementwise.EXPRESSIONS.items() if len(e.args) == 2]


def test_every_expression_has_a_reference_op():
    for name in elementwise.EXPRESSIONS:
        assert name == "gelu_erf" or name in numpy_backend.KERNELS, name
        assert name == "gelu_erf" or name in OPS, name
    for name in elementwise.UFUNCS:
        assert name in numpy_backend.KERNELS, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", UNARY)
def test_unary_special_values(name, dtype):
    check(name, SPECIAL.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", BINARY)
def test_binary_special_values(name, dtype):
    a, b = np.meshgrid(SPECIAL, SPECIAL)
    check(name, a.ravel().astype(dtype), b.ravel().astype(dtype))


finite32 = st.floats(-60, 60, width=32)


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float32, st.integers(0, 64), elements=finite32), name=st.sampled_from(UNARY))
def test_unary_random(x, name):
    check(name, x)


@settings(max_examples=40, deadline=None)
@given(
    ab=st.integers(0, 64).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float32, n, elements=finite32),
            hnp.arrays(np.float32, n, elements=finite32),
        )
    ),
    name=st.sampled_from(BINARY),
)
def test_binary_random(ab, name):
    check(name, *ab)


def test_float32_stays_float32_in_constants():
    x = np.float32([1.0, 2.0])
    for name in UNARY:
        with np.errstate(all="ignore"):
            assert elementwise.evaluate(name, np, x).dtype == np.float32, name


def test_wrong_arity_is_a_clear_error():
    with pytest.raises(TypeError, match="add takes 2 arrays, got 1"):
        elementwise.evaluate("add", np, np.zeros(2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gated_activations_match_their_formulas(dtype):
    small = SPECIAL[np.abs(SPECIAL) <= 88]  # products stay finite in float32
    g, u = (a.ravel().astype(dtype) for a in np.meshgrid(small, small))
    with np.errstate(all="ignore"):
        silu = elementwise.evaluate("silu_mul", np, g, u)
        gelu = elementwise.evaluate("gelu_tanh_mul", np, g, u)
        g64, u64 = g.astype(np.float64), u.astype(np.float64)
        want_silu = g64 / (1 + np.exp(-g64)) * u64
        want_gelu = 0.5 * g64 * (1 + np.tanh(0.7978845608028654 * (g64 + 0.044715 * g64**3))) * u64
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(silu, want_silu, rtol=rtol, atol=1e-30, equal_nan=True)
    np.testing.assert_allclose(gelu, want_gelu, rtol=rtol, atol=1e-30, equal_nan=True)
