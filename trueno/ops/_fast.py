"""Op functions with the common call decided before any Python code runs: float32/float64
ndarrays (of one shape and dtype for two operands), nothing forcing a backend, fewer elements
than ``dispatch.HOST_MAX`` says. :func:`unary` and :func:`binary` make each such op a
:class:`trueno.ops._cfast.FastOp` (trueno/ops/_cfast.c), a callable that tests the exact type,
the dtype (by identity: native float32/float64 only), the size against its live ``bound`` and,
for two operands, the second one's dtype and shape, then calls numpy's kernel directly (the one
bool test of tracing chooses ``traced`` instead). Every other call (array-likes, ints, scalars,
mixed dtypes, keyword arguments, dask or cupy arrays, forced backends, big inputs, GPU
thresholds) goes, untouched, to ``general``: the op's full path through
:mod:`trueno.ops._validate` and :func:`trueno.dispatch.run`, which gives the same answer. The
test is the one :func:`trueno.dispatch.run` makes.

A Python function cannot do this cheaply enough: on 8 elements its frame and attribute tests
cost about 150 ns (one array) and 300 ns (two: ``a.shape == b.shape`` alone builds two
tuples), 0.4-0.8x of numpy's own call; the C test costs a few ns.

The bounds are live: :func:`_bind` registers a setter per op (a FastOp's ``bound``, or a module
global of an op module) that dispatch calls whenever ``HOST_MAX`` changes (a forced backend, a
new threshold), so the hot path reads a plain int.

Ops with parameters (``scale(a, s)``, ``softmax(x, axis)``, ``layer_norm(x, gamma, beta,
eps)`` ...) make the same test in Python in their own bodies against a module-level bound kept
by :func:`bind_global`, and add the checks of their parameters; they run the fast path only
with tracing off and leave tracing to the general path."""

from __future__ import annotations

import functools
from collections.abc import Callable, MutableMapping
from time import perf_counter_ns
from typing import Any, TypeVar, cast

import numpy as np

from trueno import dispatch
from trueno.backends import Backend
from trueno.opspec import OpSpec
from trueno.trace import recorder

try:
    from trueno.ops._cfast import FastOp
except ImportError as exc:  # required, never replaced: say how to build it
    raise ImportError(
        "trueno.ops._cfast (trueno/ops/_cfast.c) is not built; build it with "
        "`pip install -e .` or `python setup.py build_ext --inplace` in the source tree"
    ) from exc

NDARRAY = np.ndarray
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)  # the dtypes of a fast path (singletons)
# the dtypes of a fast path, as a span names them
_NAMES: dict[np.dtype, str] = {F32: "float32", F64: "float64"}
_NUMPY = Backend.NUMPY.value  # the span's backend, as dispatch._record writes it
_FLAGS = vars(recorder)  # FastOp reads recorder.ENABLED from here

F = TypeVar("F", bound=Callable[..., Any])  # an op function: the fast path keeps its signature

# (kind, setter): each setter receives dispatch.HOST_MAX[kind] whenever it changes
_BOUNDS: list[tuple[str, Callable[[int], None]]] = []


def _push_bounds() -> None:
    host_max = dispatch.HOST_MAX
    for kind, put in _BOUNDS:
        put(host_max[kind])


def _bind(kind: str, put: Callable[[int], None]) -> None:
    _BOUNDS.append((kind, put))
    put(dispatch.HOST_MAX[kind])


def bind_global(namespace: MutableMapping[str, Any], name: str, spec: OpSpec) -> None:
    """Keep ``namespace[name]`` (an op module's ``globals()``) equal to ``HOST_MAX`` of
    ``spec``'s kind: inputs of a float dtype with fewer elements run numpy's kernel."""
    if spec.kind64 is not None:  # one bound here: the op's own test would miss float64's
        raise ValueError(f"{spec.name}: a global bound serves one threshold class")
    _bind(spec.kind, functools.partial(namespace.__setitem__, name))


dispatch.on_refresh(_push_bounds)


def reference(spec: OpSpec) -> Callable[..., Any]:
    """numpy's kernel of ``spec`` (the one the general path runs below the bound)."""
    return cast(Callable[..., Any], dispatch._NUMPY_KERNELS[spec.name])


CODES_PER_OP = 1024  # shapes whose span key code an op keeps (then it looks the key up)


def _codes(spec: OpSpec) -> Callable[[np.dtype, tuple], int]:
    """The span key code of ``spec`` on numpy for (dtype, shape), kept per shape (bounded): a
    traced fast call records its span without building and hashing the whole key."""
    name = spec.name
    kept: dict[np.dtype, dict[tuple, int]] = {dt: {} for dt in _NAMES}

    def code(dt: np.dtype, shape: tuple) -> int:
        by_shape = kept[dt]
        c = by_shape.get(shape)
        if c is None:
            c = recorder.op_code(name, _NUMPY, shape, _NAMES[dt])
            if len(by_shape) < CODES_PER_OP:
                by_shape[shape] = c
        return c

    return code


def _flops(spec: OpSpec) -> tuple[int, int]:
    """``spec.flops`` as an exact ratio: a span's flops are ``num * n // den`` (integers)."""
    return float(spec.flops).as_integer_ratio()


def arrays(
    spec: OpSpec,
    general: F,
    arity: int,
    empty_ok: bool = True,
    floats: int = 0,
    defaults: tuple[float, ...] = (),
) -> F:
    """``op(a, ..., p, ...)`` on ``arity`` arrays (1 to 3) and ``floats`` float parameters
    (the last ones may be left to ``defaults``): the fast path for float ndarrays of one shape
    and dtype (non-empty unless ``empty_ok``) and parameters given as Python floats, else
    ``general(...)`` with the call's arguments as they came."""
    ref = reference(spec)
    rec, clock = recorder, perf_counter_ns
    code, (num, den) = _codes(spec), _flops(spec)

    def record(a: Any, out: Any, t0: int, dur: int) -> None:
        nbytes = arity * a.nbytes + getattr(out, "nbytes", 0)
        rec.record_coded(code(a.dtype, a.shape), nbytes, num * a.size // den, t0, dur)

    # the span of the common arities is recorded inline (a call and a tuple less per span)
    def traced(*args: Any) -> Any:
        t0 = clock()
        out = ref(*args)
        record(args[0], out, t0, clock() - t0)
        return out

    def traced1(a: Any) -> Any:
        t0 = clock()
        out = ref(a)
        dur = clock() - t0
        nbytes = a.nbytes + getattr(out, "nbytes", 0)
        rec.record_coded(code(a.dtype, a.shape), nbytes, num * a.size // den, t0, dur)
        return out

    def traced2(a: Any, b: Any) -> Any:
        t0 = clock()
        out = ref(a, b)
        dur = clock() - t0
        nbytes = 2 * a.nbytes + getattr(out, "nbytes", 0)
        rec.record_coded(code(a.dtype, a.shape), nbytes, num * a.size // den, t0, dur)
        return out

    if not floats and arity < 3:
        traced = traced1 if arity == 1 else traced2
    op = FastOp(ref, general, traced, _FLAGS, arity, empty_ok, floats, defaults)
    functools.update_wrapper(op, general)  # __wrapped__, __name__, __doc__ ... in its __dict__
    _bind(spec.kind, functools.partial(setattr, op, "bound"))
    _bind(spec.kind64 or spec.kind, functools.partial(setattr, op, "bound64"))
    return cast(F, op)


def unary(spec: OpSpec, general: F, empty_ok: bool = True) -> F:
    """``op(a)``: :func:`arrays` on one array."""
    return arrays(spec, general, 1, empty_ok)


def binary(spec: OpSpec, general: F) -> F:
    """``op(a, b)``: :func:`arrays` on two arrays."""
    return arrays(spec, general, 2)


def one_array(spec: OpSpec, empty_ok: bool = True) -> Callable[[F], F]:
    """Decorator: the op function ``general(a)`` with :func:`unary`'s fast path in front."""
    return functools.partial(unary, spec, empty_ok=empty_ok)


def two_arrays(spec: OpSpec) -> Callable[[F], F]:
    """Decorator: the op function ``general(a, b)`` with :func:`binary`'s fast path in front."""
    return functools.partial(binary, spec)


def three_arrays(spec: OpSpec) -> Callable[[F], F]:
    """Decorator: the op function ``general(a, b, c)`` with the fast path in front."""
    return functools.partial(arrays, spec, arity=3)


def with_floats(spec: OpSpec, arity: int, floats: int, *defaults: float) -> Callable[[F], F]:
    """Decorator: the op function ``general(a, ..., p, ...)`` (``arity`` arrays, ``floats``
    float parameters, the last ones defaulting to ``defaults``) with the fast path in front."""
    return functools.partial(arrays, spec, arity=arity, floats=floats, defaults=defaults)
