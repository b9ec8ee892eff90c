"""Op functions with the common call decided inline: float32/float64 ndarrays (of one shape
and dtype for two operands), nothing forcing a backend, fewer elements than ``dispatch.HOST_MAX``
says. Such a call costs a few attribute tests before numpy's kernel runs (no validation
helpers, no ``dispatch.run``); every other call (array-likes, ints, scalars, mixed dtypes,
dask or cupy arrays, forced backends, big inputs, GPU thresholds) takes ``general``, the
op's full path through :mod:`trueno.ops._validate` and :func:`trueno.dispatch.run`, which
gives the same answer. The inline test is the one :func:`trueno.dispatch.run` makes."""

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

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_NDARRAY = np.ndarray
_NUMPY = Backend.NUMPY.value  # the span's backend, as dispatch._record writes it

F = TypeVar("F", bound=Callable[..., Any])  # an op function: the fast path keeps its signature


def unary(spec: OpSpec, general: F, empty_ok: bool = True) -> F:
    """``op(a)``: the fast path for one float ndarray, else ``general(a)`` (which raises for
    an empty input unless ``empty_ok``)."""
    kind = spec.kind
    lo = 0 if empty_ok else 1
    ref = dispatch._NUMPY_KERNELS[spec.name]
    host_max, rec, clock = dispatch.HOST_MAX, recorder, perf_counter_ns
    name, per = spec.name, spec.flops

    def op(a: Any) -> Any:
        if type(a) is _NDARRAY:
            dt = a.dtype
            if dt is _F32 or dt is _F64:
                n = a.size
                if lo <= n < host_max[kind]:
                    if not rec.ENABLED:
                        return ref(a)
                    t0 = clock()
                    out = ref(a)
                    dur = clock() - t0
                    nbytes = a.nbytes + getattr(out, "nbytes", 0)
                    dtype = "float32" if dt is _F32 else "float64"
                    rec.record_op(name, _NUMPY, a.shape, dtype, nbytes, int(per * n), t0, dur)
                    return out
        return general(a)

    return cast(F, functools.wraps(general)(op))


def binary(spec: OpSpec, general: F) -> F:
    """``op(a, b)``: the fast path for two float ndarrays of one shape and dtype, else
    ``general(a, b)``."""
    kind = spec.kind
    ref = dispatch._NUMPY_KERNELS[spec.name]
    host_max, rec, clock = dispatch.HOST_MAX, recorder, perf_counter_ns
    name, per = spec.name, spec.flops

    def op(a: Any, b: Any) -> Any:
        if type(a) is _NDARRAY and type(b) is _NDARRAY:
            dt = a.dtype
            if (dt is _F32 or dt is _F64) and b.dtype is dt and a.shape == b.shape:
                n = a.size
                if n < host_max[kind]:
                    if not rec.ENABLED:
                        return ref(a, b)
                    t0 = clock()
                    out = ref(a, b)
                    dur = clock() - t0
                    nbytes = 2 * a.nbytes + getattr(out, "nbytes", 0)
                    dtype = "float32" if dt is _F32 else "float64"
                    rec.record_op(name, _NUMPY, a.shape, dtype, nbytes, int(per * n), t0, dur)
                    return out
        return general(a, b)

    return cast(F, functools.wraps(general)(op))


def one_array(spec: OpSpec, empty_ok: bool = True) -> Callable[[F], F]:
    """Decorator: the op function ``general(a)`` with :func:`unary`'s fast path in front."""
    return functools.partial(unary, spec, empty_ok=empty_ok)


def two_arrays(spec: OpSpec) -> Callable[[F], F]:
    """Decorator: the op function ``general(a, b)`` with :func:`binary`'s fast path in front."""
    return functools.partial(binary, spec)
