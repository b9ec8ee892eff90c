"""Typed errors: each asserts the exception type (and its builtin base) and that the message
names what was found and what was expected."""

from __future__ import annotations

import numpy as np
import pytest
from _ophelpers import BACKENDS

import trueno
from trueno.errors import (
    ArgumentError,
    DivisionByZeroError,
    DTypeError,
    EmptyInputError,
    ShapeError,
    SizeMismatchError,
    TruenoError,
)

F32 = np.float32


@pytest.fixture(params=BACKENDS)
def backend(request):
    with trueno.use_backend(request.param):
        yield request.param


@pytest.mark.parametrize(
    "op", ["add", "sub", "mul", "div", "minimum", "maximum", "dot", "covariance", "correlation"]
)
def test_size_mismatch(backend, op):
    with pytest.raises(SizeMismatchError) as err:
        getattr(trueno, op)(np.ones(3, F32), np.ones(4, F32))
    assert isinstance(err.value, ValueError) and isinstance(err.value, TruenoError)
    assert "expected (3,)" in str(err.value) and "got (4,)" in str(err.value)
    assert op in str(err.value)


def test_size_mismatch_matrix(backend):
    with pytest.raises(SizeMismatchError, match="matvec: size mismatch, expected \\(3,\\)"):
        trueno.matvec(np.ones((2, 3), F32), np.ones(4, F32))
    with pytest.raises(SizeMismatchError, match="matmul"):
        trueno.matmul(np.ones((2, 3), F32), np.ones((4, 2), F32))
    with pytest.raises(SizeMismatchError, match="layer_norm"):
        trueno.layer_norm(np.ones((2, 3), F32), np.ones(4, F32))


@pytest.mark.parametrize(
    "op",
    [
        "max",
        "min",
        "argmax",
        "argmin",
        "norm_linf",
        "normalize",
        "mean",
        "variance",
        "stddev",
        "zscore",
        "minmax_normalize",
        "softmax",
        "log_softmax",
        "layer_norm",
        "rms_norm",
    ],
)
def test_empty_input(backend, op):
    with pytest.raises(EmptyInputError, match=f"{op}: empty input") as err:
        getattr(trueno, op)(np.array([], F32))
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("op", ["sum", "sum_kahan", "dot", "norm_l1", "norm_l2"])
def test_empty_sums_are_zero(backend, op):
    args = (np.array([], F32),) * (2 if op == "dot" else 1)
    assert getattr(trueno, op)(*args) == 0


def test_division_by_zero(backend):
    with pytest.raises(DivisionByZeroError, match="normalize: the vector has L2 norm 0") as e:
        trueno.normalize(np.zeros(5, F32))
    assert isinstance(e.value, ZeroDivisionError) and isinstance(e.value, ValueError)
    with pytest.raises(DivisionByZeroError, match="max == min == 3.0"):
        trueno.minmax_normalize(np.full(7, 3, F32))
    with pytest.raises(DivisionByZeroError, match="standard deviation is 0"):
        trueno.zscore(np.full(100_000, 0.1, F32))
    with pytest.raises(DivisionByZeroError, match="zero variance"):
        trueno.correlation(np.ones(4, F32), np.arange(4, dtype=F32))


def test_invalid_shape(backend):
    with pytest.raises(ShapeError, match="softmax: input must be 1-D or 2-D, got 3-D"):
        trueno.softmax(np.ones((2, 2, 2), F32))
    with pytest.raises(ShapeError, match="axis 2 is out of range"):
        trueno.softmax(np.ones((2, 2), F32), axis=2)
    with pytest.raises(ShapeError, match="transpose: input must be 2-D"):
        trueno.transpose(np.ones(3, F32))
    with pytest.raises(ShapeError, match="square matrix, got shape \\(2, 3\\)"):
        trueno.eigh(np.ones((2, 3), F32))
    with pytest.raises(ShapeError, match="kernel \\(4, 1\\) must be non-empty and fit"):
        trueno.convolve2d(np.ones((3, 3), F32), np.ones((4, 1), F32))
    with pytest.raises(ShapeError, match="id 5 out of range; expected 0 <= id < 3"):
        trueno.embedding_lookup(np.ones((3, 2), F32), np.array([0, 5]))
    with pytest.raises(ArgumentError, match="approximate='fast'"):
        trueno.gelu(np.ones(2, F32), approximate="fast")
    with pytest.raises(ShapeError, match="Vector: expected 1-D"):
        trueno.Vector(np.ones((2, 2)))


def test_dtype_errors():
    with pytest.raises(DTypeError, match="unsupported dtype complex128; expected float32") as e:
        trueno.exp(np.ones(2, complex))
    assert isinstance(e.value, TypeError)
    with pytest.raises(DTypeError, match="ids have dtype float64; expected integers"):
        trueno.embedding_lookup(np.ones((3, 2), F32), np.array([0.0]))
    with pytest.raises(DTypeError, match="s must be a real number"):
        trueno.scale(np.ones(2, F32), "2")


def test_nan_and_inf_propagate(backend):
    x = np.array([1.0, np.nan, -np.inf, 4.0], F32)
    assert np.isnan(trueno.sum(x)) and np.isnan(trueno.max(x)) and np.isnan(trueno.min(x))
    assert trueno.argmax(x) == 1 and trueno.argmin(x) == 1
    assert np.isnan(trueno.softmax(x)).all()
    y = np.array([1.0, np.inf, 3.0], F32)
    assert trueno.max(y) == np.inf and trueno.argmax(y) == 1 and trueno.norm_l2(y) == np.inf
    np.testing.assert_array_equal(trueno.exp(np.array([np.inf, -np.inf], F32)), [np.inf, 0])
