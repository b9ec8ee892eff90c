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
from trueno.errors import ArgumentError, EmptyInputError, ShapeError, SizeMismatchError
from trueno.ops._cfast import FastOp

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
        trueno.fma(x, x, x)
    with trueno.trace.capture() as slow:
        general("add", x, x)
        general("exp", x)
        general("sum", x)
        general("fma", x, x, x)
    keys = ("name", "backend", "shape", "dtype", "bytes", "flops")
    got = [tuple(str(s[k]) for k in keys) for s in fast.spans if s["category"] == "op"]
    want = [tuple(str(s[k]) for k in keys) for s in slow.spans if s["category"] == "op"]
    assert got == want and len(got) == 4


def test_span_keys_past_the_kept_shapes(monkeypatch):
    from trueno.ops import _fast

    monkeypatch.setattr(_fast, "CODES_PER_OP", 2)  # shapes past 2 are looked up each time
    with trueno.trace.capture() as t:
        for n in (1, 2, 3, 4, 3):
            trueno.mul(np.ones(n), np.ones(n))
            trueno.neg(np.ones(n, np.float32))
    got = [(s["name"], s["shape"], s["dtype"]) for s in t.spans if s["category"] == "op"]
    want = [
        (op, [n], dt)
        for n in (1, 2, 3, 4, 3)
        for op, dt in (("mul", "float64"), ("neg", "float32"))
    ]
    assert got == want


def assert_bound(kind: str, bound: int) -> None:
    """HOST_MAX and every fast op function's copy of it (closure cell or module global) give
    ``bound``."""
    from trueno.ops import activations, stats

    assert dispatch.HOST_MAX[kind] == bound
    ops = [getattr(trueno, n) for n in OPS if OPS[n].kind == kind]
    fast = [op for op in ops if isinstance(op, FastOp)]
    assert len(fast) >= 8 and all(op.bound == bound for op in fast)
    kept = {
        (activations, "_FUSED"): "gelu",
        (activations, "_ROWWISE"): "softmax",
        (stats, "_STATS"): "variance",
        (stats, "_ROWWISE"): "layer_norm",
    }
    for (module, name), op in kept.items():
        want = bound if OPS[op].kind == kind else dispatch.HOST_MAX[OPS[op].kind]
        assert getattr(module, name) == want, (module.__name__, name)


def test_fast_path_takes_native_float_dtypes_only():
    """A byte-swapped float32, a float16 or an int array gets the general path's dtype rules
    (converted to a native float), never numpy's kernel on the raw input."""
    for x in (np.arange(4, dtype=">f4"), np.arange(4, dtype=np.float16), np.arange(4)):
        for name, args in (("neg", (x,)), ("sum", (x,)), ("add", (x, x)), ("dot", (x, x))):
            got = getattr(trueno, name)(*args)
            same(got, general(name, *args))
            assert got.dtype in (np.float32, np.float64) and got.dtype.isnative, (name, x.dtype)


def test_calls_the_c_test_passes_to_the_general_path():
    """Keyword arguments, wrong argument counts, 0-d, strided, Fortran-order and subclassed
    arrays: each gives the general path's answer or error."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    same(trueno.add(x, b=x), general("add", x, x))
    same(trueno.neg(a=x), general("neg", x))
    for bad in ((), (x, x, x)):
        with pytest.raises(TypeError):
            trueno.add(*bad)
    with pytest.raises(TypeError):
        trueno.neg(x, x)
    zero_d = np.float64(2.0) * np.ones((), np.float64)
    same(trueno.add(zero_d, zero_d), general("add", zero_d, zero_d))
    same(trueno.add(x[:, ::2], x[:, 1::2]), general("add", x[:, ::2], x[:, 1::2]))
    same(trueno.neg(np.asfortranarray(x)), general("neg", np.asfortranarray(x)))
    with pytest.raises(SizeMismatchError):
        trueno.add(x, x.T)  # same size, other shape
    with pytest.raises(SizeMismatchError):
        trueno.add(x, x.reshape(1, 3, 4))  # same size, other ndim
    m = np.ma.masked_array(x)  # a subclass: never numpy's kernel on it directly
    same(trueno.neg(m), general("neg", m))


def test_float_parameters_and_defaults():
    """Float parameters given or left to their defaults run the fast path; ints, numpy
    scalars and keywords take the general path; all give the general path's answer."""
    x = np.linspace(-2, 2, 9, dtype=np.float32)
    for call in (
        lambda f: f(x),
        lambda f: f(x, 0.2),
        lambda f: f(x, 2),
        lambda f: f(x, np.float64(0.2)),
        lambda f: f(x, alpha=0.2),
    ):
        for name in ("leaky_relu", "elu"):
            f = getattr(trueno, name)
            same(call(f), call(f.__wrapped__))
    same(trueno.leaky_relu(x), trueno.leaky_relu(x, 0.01))
    same(trueno.clamp(x, -1.0, 1.0), general("clamp", x, -1.0, 1.0))
    same(trueno.lerp(x, x[::-1].copy(), 0.25), general("lerp", x, x[::-1].copy(), 0.25))
    with pytest.raises(TypeError):
        trueno.clamp(x, -1.0)  # too few: the general path's TypeError
    with pytest.raises(TypeError):
        trueno.leaky_relu(x, 0.1, 0.2)
    with pytest.raises(SizeMismatchError):
        trueno.lerp(x, x[:4], 0.5)


def test_fast_ops_behave_as_functions():
    import inspect
    import pickle

    for name in ("add", "neg", "sum", "relu"):
        f = getattr(trueno, name)
        assert f.__name__ == name and f.__doc__ and f.__wrapped__ is not None
        assert pickle.loads(pickle.dumps(f)) is f
        assert list(inspect.signature(f).parameters) == list(
            inspect.signature(f.__wrapped__).parameters
        )

    class Holder:
        op = trueno.add  # not bound as a method

    x = np.ones(3, np.float32)
    same(Holder().op(x, x), general("add", x, x))


@pytest.mark.skipif(dispatch.forced_backend() is not None, reason="TRUENO_BACKEND is set")
def test_host_max_follows_forcing_and_thresholds(monkeypatch):
    kind = OPS["add"].kind
    assert_bound(kind, dispatch.THRESHOLDS[kind])
    with trueno.use_backend("numpy"):
        assert_bound(kind, 0)  # every call takes the general path
        with trueno.trace.capture() as t:
            trueno.add(np.ones(4, np.float32), np.ones(4, np.float32))
        assert [s["backend"] for s in t.spans] == ["numpy"]
    assert_bound(kind, dispatch.THRESHOLDS[kind])
    monkeypatch.setitem(dispatch.THRESHOLDS, kind, 16)
    assert_bound(kind, 16)
    monkeypatch.setitem(dispatch.GPU_THRESHOLDS, kind, 1 << 20)
    assert_bound(kind, 0)
    monkeypatch.undo()
    assert_bound(kind, dispatch.THRESHOLDS[kind])


def test_a_float64_class_moves_the_float64_bound_alone(monkeypatch):
    """sin: float64 calls by "trig64", float32 by "trig", each bound live and apart."""
    spec = OPS["sin"]
    assert (trueno.sin.bound, trueno.sin.bound64) == (
        dispatch.THRESHOLDS[spec.kind],
        dispatch.THRESHOLDS[spec.kind64],
    )
    monkeypatch.setitem(dispatch.THRESHOLDS, spec.kind64, 16)
    assert (trueno.sin.bound, trueno.sin.bound64) == (dispatch.THRESHOLDS[spec.kind], 16)
    monkeypatch.undo()
    assert trueno.sin.bound64 == dispatch.THRESHOLDS[spec.kind64]


def test_a_global_bound_refuses_a_float64_class():
    """An op testing its own bound in Python keeps one bound: a float64 class is refused."""
    from trueno.ops import _fast
    from trueno.opspec import OpSpec

    namespace: dict = {}
    with pytest.raises(ValueError, match="one threshold class"):
        _fast.bind_global(namespace, "BOUND", OpSpec("probe", "trig", kind64="trig64"))
    assert namespace == {}


# ops with parameters make the _fast test in their own bodies; under use_backend("numpy")
# every call takes the validated general path to the same numpy kernel
PARAM_CALLS = {
    "scale": lambda x, y, z, p: (x, p),
    "clamp": lambda x, y, z, p: (x, -p, p),
    "lerp": lambda x, y, z, p: (x, y, p),
    "fma": lambda x, y, z, p: (x, y, z),
    "leaky_relu": lambda x, y, z, p: (x, p),
    "elu": lambda x, y, z, p: (x, p),
    "gelu": lambda x, y, z, p: (x, "none" if p == 0.5 else "tanh"),
    "softmax": lambda x, y, z, p: (x, -1),
    "log_softmax": lambda x, y, z, p: (x, -1),
    "variance": lambda x, y, z, p: (x, 1 if p == 0.5 else 0),
    "stddev": lambda x, y, z, p: (x, 1 if p == 0.5 else 0),
    "covariance": lambda x, y, z, p: (x, y, 1 if p == 0.5 else 0),
    "correlation": lambda x, y, z, p: (x, y),
    "layer_norm": lambda x, y, z, p: (x, y.reshape(-1)[: x.shape[-1]] if x.ndim else None, None, p),
    "rms_norm": lambda x, y, z, p: (x, None, p),
}


def outcome(f, args):
    try:
        return f(*args)
    except trueno.TruenoError as exc:
        return type(exc)


@given(
    x=arrays,
    name=st.sampled_from(sorted(PARAM_CALLS)),
    p=st.sampled_from([0.5, 2.0, 1e-5, 3]),  # 3: an int, off the fast path
    data=st.data(),
)
def test_ops_with_parameters_match_general_path(x, name, p, data):
    y = data.draw(hnp.arrays(x.dtype, x.shape))
    z = data.draw(hnp.arrays(x.dtype, x.shape))
    args = PARAM_CALLS[name](x, y, z, p)
    f = getattr(trueno, name)
    got = outcome(f, args)
    with trueno.use_backend("numpy"):
        want = outcome(f, args)
    if isinstance(want, type):
        assert got is want
    else:
        same(got, want)


def test_ops_with_parameters_off_the_fast_path():
    x = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)
    gamma = np.ones(3, np.float64)  # another dtype: converted on the general path
    with trueno.use_backend("numpy"):
        want = trueno.layer_norm(x, gamma)
    same(trueno.layer_norm(x, gamma), want)
    with pytest.raises(SizeMismatchError):
        trueno.layer_norm(x, np.ones(2, np.float32))
    with pytest.raises(SizeMismatchError):
        trueno.covariance(x, np.ones(5, np.float32))
    with pytest.raises(ShapeError):
        trueno.softmax(x.reshape(1, 2, 3))
    with pytest.raises(ShapeError):
        trueno.rms_norm(np.float32(1.0))
    with pytest.raises(EmptyInputError):
        trueno.variance(np.empty(0, np.float32))
    with pytest.raises(ArgumentError):
        trueno.gelu(x, "erf")
    same(trueno.softmax(x, 0), trueno.softmax(x.T).T)  # another axis: the general path
    same(trueno.scale(x, 2), trueno.scale(x, 2.0))  # an int parameter: the general path


def test_ops_with_parameters_are_traced():
    x = np.arange(8, dtype=np.float32)
    with trueno.trace.capture() as t:
        trueno.scale(x, 2.0)
        trueno.softmax(x)
        trueno.variance(x)
    assert [s["name"] for s in t.spans if s["category"] == "op"] == [
        "scale",
        "softmax",
        "variance",
    ]


def test_ops_with_parameters_take_the_fast_path(monkeypatch):
    def general_path(*args, **kwargs):
        raise AssertionError("the common call went to dispatch.run")

    monkeypatch.setattr(dispatch, "run", general_path)
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    y, z = x[::-1].copy(), x * 2
    for name, make in PARAM_CALLS.items():
        getattr(trueno, name)(*make(x, y, z, 0.5))
