"""trueno.ops._fast: the inline common case gives the general path's answer (values, dtype,
errors, spans), and steps aside whenever a backend is forced or a threshold changes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import trueno
from trueno import OPS, dispatch
from trueno.errors import EmptyInputError, SizeMismatchError

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FAST_ONE = [
    name
    for name in sorted(OPS)
    if getattr(getattr(trueno, name, None), "__wrapped__", None) is not None
    and OPS[name].args in ("x", "red", "vec")
]
FAST_TWO = ["add", "sub", "mul", "div", "minimum", "maximum", "copysign", "pow", "dot"]


def general(name, *args):
    """The op's general path: the undecorated function (validation + dispatch.run)."""
    return getattr(trueno, name).__wrapped__(*args)


def same(got, want) -> None:
    assert type(got) is type(want)
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_equal(got, want)


def test_the_fast_ops_are_wrapped():
    assert len(FAST_ONE) >= 40, FAST_ONE
    for name in FAST_TWO:
        assert getattr(trueno, name).__wrapped__ is not None


arrays = st.sampled_from([np.float32, np.float64]).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=9))
)


@given(x=arrays, name=st.sampled_from(FAST_ONE))
def test_one_array_matches_general_path(x, name):
    try:
        want = general(name, x)
    except trueno.TruenoError as exc:
        with pytest.raises(type(exc)):
            getattr(trueno, name)(x)
        return
    same(getattr(trueno, name)(x), want)


@given(x=arrays, name=st.sampled_from(FAST_TWO), data=st.data())
def test_two_arrays_match_general_path(x, name, data):
    y = data.draw(hnp.arrays(x.dtype, x.shape))
    same(getattr(trueno, name)(x, y), general(name, x, y))


@pytest.mark.parametrize("name", ["add", "dot"])
def test_inputs_off_the_fast_path(name):
    f = getattr(trueno, name)
    x32, x64 = np.arange(4, dtype=np.float32), np.arange(4, dtype=np.float64)
    same(f(x32, x64), general(name, x32, x64))  # mixed dtypes promote
    same(f(np.arange(4), x32), general(name, np.arange(4), x32))  # ints become float
    same(f([1.0, 2.0], [3.0, 4.0]), general(name, [1.0, 2.0], [3.0, 4.0]))
    with pytest.raises(SizeMismatchError):
        f(x32, np.ones(5, np.float32))
    with pytest.raises(SizeMismatchError):
        f(x32.reshape(2, 2), x32)


def test_empty_reductions_still_raise():
    for name in ("max", "argmin", "mean", "norm_linf"):
        with pytest.raises(EmptyInputError):
            getattr(trueno, name)(np.empty(0, np.float32))
    assert trueno.sum(np.empty(0, np.float32)) == 0


def test_fast_path_records_the_span_general_would():
    x = np.arange(8, dtype=np.float32)
    with trueno.trace.capture() as fast:
        trueno.add(x, x)
        trueno.exp(x)
        trueno.sum(x)
    with trueno.trace.capture() as slow:
        general("add", x, x)
        general("exp", x)
        general("sum", x)
    keys = ("name", "backend", "shape", "dtype", "bytes", "flops")
    got = [tuple(str(s[k]) for k in keys) for s in fast.spans if s["category"] == "op"]
    want = [tuple(str(s[k]) for k in keys) for s in slow.spans if s["category"] == "op"]
    assert got == want and len(got) == 3


@pytest.mark.skipif(dispatch.forced_backend() is not None, reason="TRUENO_BACKEND is set")
def test_host_max_follows_forcing_and_thresholds(monkeypatch):
    kind = OPS["add"].kind
    assert dispatch.HOST_MAX[kind] == dispatch.THRESHOLDS[kind]
    with trueno.use_backend("numpy"):
        assert dispatch.HOST_MAX[kind] == 0  # every call takes the general path
        with trueno.trace.capture() as t:
            trueno.add(np.ones(4, np.float32), np.ones(4, np.float32))
        assert [s["backend"] for s in t.spans] == ["numpy"]
    assert dispatch.HOST_MAX[kind] == dispatch.THRESHOLDS[kind]
    monkeypatch.setitem(dispatch.THRESHOLDS, kind, 16)
    assert dispatch.HOST_MAX[kind] == 16
    monkeypatch.setitem(dispatch.GPU_THRESHOLDS, kind, 1 << 20)
    assert dispatch.HOST_MAX[kind] == 0
    monkeypatch.undo()
    assert dispatch.HOST_MAX[kind] == dispatch.THRESHOLDS[kind]
