"""Op functions with the common call decided inline: float32/float64 ndarrays (of one shape
and dtype for two operands), nothing forcing a backend, fewer elements than ``dispatch.HOST_MAX``
says. Such a call costs a type test and one dict lookup (``dispatch.HOST_LIMITS``: dtype and
size together) before numpy's kernel runs (no validation helpers, no ``dispatch.run``); every
other call (array-likes, ints, scalars, mixed dtypes, dask or cupy arrays, forced backends, big
inputs, GPU thresholds) takes ``general``, the op's full path through
:mod:`trueno.ops._validate` and :func:`trueno.dispatch.run`, which gives the same answer. The
inline test is the one :func:`trueno.dispatch.run` makes.

Ops with parameters (``scale(a, s)``, ``softmax(x, axis)``, ``layer_norm(x, gamma, beta,
eps)`` ...) make the same test in their own bodies with :func:`limits` and :func:`reference`
and add the checks of their parameters; they run the fast path only with tracing off and
leave tracing to the general path."""

from __future__ import annotations

import functools
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any, TypeVar, cast

import numpy as np

from trueno import dispatch
from trueno.backends import Backend
from trueno.opspec import OpSpec
from trueno.trace import recorder

NDARRAY = np.ndarray
# the dtypes of a fast path, as a span names them
_NAMES: dict[np.dtype, str] = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
_NUMPY = Backend.NUMPY.value  # the span's backend, as dispatch._record writes it

F = TypeVar("F", bound=Callable[..., Any])  # an op function: the fast path keeps its signature


def limits(spec: OpSpec) -> dict[np.dtype, int]:
    """The live ``{float32: bound, float64: bound}`` of ``spec``'s kind: an input of one of
    these dtypes with fewer elements runs numpy's kernel; any other dtype gets 0."""
    return dispatch.HOST_LIMITS[spec.kind]


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


def unary(spec: OpSpec, general: F, empty_ok: bool = True) -> F:
    """``op(a)``: the fast path for one float ndarray, else ``general(a)`` (which raises for
    an empty input unless ``empty_ok``)."""
    ref, lims = reference(spec), limits(spec)
    rec, clock = recorder, perf_counter_ns
    code, (num, den) = _codes(spec), _flops(spec)

    def traced(a: Any) -> Any:
        t0 = clock()
        out = ref(a)
        dur = clock() - t0
        nbytes = a.nbytes + getattr(out, "nbytes", 0)
        rec.record_coded(code(a.dtype, a.shape), nbytes, num * a.size // den, t0, dur)
        return out

    # two bodies: the size test of an op that takes empty input is one comparison
    if empty_ok:

        def op(a: Any) -> Any:
            if type(a) is NDARRAY and a.size < lims.get(a.dtype, 0):
                return traced(a) if rec.ENABLED else ref(a)
            return general(a)

    else:

        def op(a: Any) -> Any:
            if type(a) is NDARRAY and 0 < a.size < lims.get(a.dtype, 0):
                return traced(a) if rec.ENABLED else ref(a)
            return general(a)

    return cast(F, functools.wraps(general)(op))


def binary(spec: OpSpec, general: F) -> F:
    """``op(a, b)``: the fast path for two float ndarrays of one shape and dtype, else
    ``general(a, b)``."""
    ref, lims = reference(spec), limits(spec)
    rec, clock = recorder, perf_counter_ns
    code, (num, den) = _codes(spec), _flops(spec)

    def op(a: Any, b: Any) -> Any:
        if type(a) is NDARRAY and type(b) is NDARRAY:
            dt = a.dtype
            n = a.size
            if n < lims.get(dt, 0) and b.dtype is dt and a.shape == b.shape:
                if not rec.ENABLED:
                    return ref(a, b)
                t0 = clock()
                out = ref(a, b)
                dur = clock() - t0
                nbytes = 2 * a.nbytes + getattr(out, "nbytes", 0)
                rec.record_coded(code(dt, a.shape), nbytes, num * n // den, t0, dur)
                return out
        return general(a, b)

    return cast(F, functools.wraps(general)(op))


def one_array(spec: OpSpec, empty_ok: bool = True) -> Callable[[F], F]:
    """Decorator: the op function ``general(a)`` with :func:`unary`'s fast path in front."""
    return functools.partial(unary, spec, empty_ok=empty_ok)


def two_arrays(spec: OpSpec) -> Callable[[F], F]:
    """Decorator: the op function ``general(a, b)`` with :func:`binary`'s fast path in front."""
    return functools.partial(binary, spec)
