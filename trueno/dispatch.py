"""Backend dispatch: picks numpy, numba or cupy per call and records the op's span.

Policy (AUTO): inputs already on the GPU stay there; tiny inputs stay on numpy (a JIT call
costs more than it saves); from the size in ``THRESHOLDS`` on, numba runs the op. A user
forces a backend with ``TRUENO_BACKEND=numba`` or ``with trueno.use_backend("numba"):``.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from time import perf_counter_ns

import numpy as np

from trueno import backends, config
from trueno.backends import Backend
from trueno.opspec import OpSpec
from trueno.trace import recorder


class _Table(dict):
    """A threshold table that keeps ``HOST_MAX`` current when it is changed (a test's
    monkeypatch, a tuning script)."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        _refresh()

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        _refresh()

    def update(self, *args, **kwargs) -> None:
        super().update(*args, **kwargs)
        _refresh()


# Minimum number of input elements from which AUTO sends an op to numba, per threshold class.
# Measured by `python benches/dispatch_thresholds.py` (prints this table: the size from which
# numba's median stays below numpy's, forced backends, alternating rounds), then rounded on
# the side of numpy where the measurement was within noise (2-core machine shared by others).
THRESHOLDS: dict[str, int] = {
    # add, abs, scale ...: memory-bound; numba wins on its OpenMP team from 2^17 (Zen 4, 2
    # threads, vector_ops: 1.10-1.26x at 2^17, 1.13-1.25x at 1.6e5; at 1e5 binary ops 1.08x,
    # unary 0.87-0.97x, at 7e4 0.62-0.99x; one thread is numpy's speed)
    "elementwise": 1 << 17,
    # copysign, signum, sqrt, fract, lerp: numpy runs them well below memory speed (several
    # passes, or a slow loop); numba's serial kernel wins from 2^13-2^14 (Zen 4, float32 and
    # float64: 1.0-1.8x at 2^14, 1.5-3.2x at 2^16 on the team, 2.3-4.2x at 2^17)
    "compute": 1 << 14,
    # fma: numpy's two passes; numba's one wins from 2^16 (float32 0.80x at 2^15, 1.33x at
    # 2^16; float64 1.25x at 2^15)
    "fma": 1 << 16,
    # relu, clamp: numpy's maximum/minimum against a scalar are not vectorized (numpy 2.4: 25 us
    # against 9 us with an array operand at 64K); numba's kernel wins from 2K, 4-7x at 1e5, and
    # the op from 8K (below, numpy's fast path saves more than numba's kernel: ~1 us a call)
    "clip": 1 << 13,
    # exp, tanh: numba's one-thread polynomials beat numpy's SIMD ones (exp 1.4x at 2^14), its
    # OpenMP team from 2^15 more (exp 2.8x numpy at 2^16)
    "transcendental": 1 << 14,
    # sin, cos, tan, asin, acos, atan: numba's polynomials (_logtrig) on its OpenMP team; sin
    # and cos float32 0.90x numpy at 2^14 on one thread, 1.46-1.52x at 2^15 on the team, 2.0-
    # 2.2x at 2^18; the others 1.01-1.19x at 2^15, 1.39-2.27x at 2^18 (float64 1.32-1.61x,
    # 1.45-1.82x); sin and cos on float64 go by "trig64"
    "trig": 1 << 15,
    # sin, cos on float64: numpy's are scalar libm here (8.8 ns an element); numba's polynomial
    # wins from 2^9 (1.35x, 2.0x at 2^10, 4.7x at 2^14 on one thread, 12-16x on the team)
    "trig64": 1 << 9,
    # ln: float32 0.99x at 2^15, 1.19x at 2^16, 1.31x at 2^18 (the team)
    "log": 1 << 16,
    # ln on float64 (FreeBSD's log, a division per element): 0.94-1.10x at 1e5, 1.15x at 2^18,
    # 1.16x at 1e6
    "log64": 1 << 18,
    # sinh, cosh, asinh, acosh, atanh: float32 0.88-1.00x at 2^15, 1.04-1.30x at 2^16, 1.11-
    # 1.62x at 2^18 (the team); float64 1.02-1.30x at 2^15, 1.05-1.39x at 2^16
    "hyperbolic": 1 << 16,
    "fused": 1 << 10,  # sigmoid, gelu, silu, elu, mish, leaky_relu, hardswish: 1 pass vs 2-6
    # sum, mean, norm_l1, norm_linf, sum_kahan (3-5x: many accumulators); from 2^14 against
    # numpy's inline fast path (sum 0.78x at 2^12, 1.11x at 2^14; mean 0.91x, 1.13x)
    "reduction": 1 << 14,
    # dot, normalize: BLAS sdot is at the memory limit; numba's OpenMP team wins from 2^17 (Zen
    # 4, 2 threads: dot 0.79x at 1e5, 1.09x at 2^17, 1.36x at 2^18, 1.52x at 1e6; normalize
    # 1.12x at 2^17)
    "blas1": 1 << 17,
    # sum_of_squares, norm_l2: BLAS sdot too; numba's team wins from 2^17 (0.92x at 1e5, 1.15x
    # at 2^17, 1.03-1.26x at 1.6e5-2.2e5, 1.42x at 2^18; as "reduction" ops, numba ran them
    # from 2^13: 0.74x at 1e5)
    "sumsq": 1 << 17,
    # max, min: numpy's are SIMD too (numba's one thread 0.65x at 1e5); its team wins from 2^18
    # (0.77x at 2^17, 0.98x at 2.2e5, 1.13x at 2^18, 1.28x at 1e6, 1.6x at 4e6)
    "extrema": 1 << 18,
    # argmax, argmin: numba's block kernel is 0.65-0.75x numpy's SIMD one on one thread; on
    # its OpenMP team 0.96-1.07x at 2^18, 1.13-1.15x at 2^19, 1.18-1.22x at 1e6
    "argextrema": 1 << 19,
    "rowwise": 1 << 8,  # softmax, layer_norm, rms_norm (fused passes per row)
    "stats": 1 << 10,  # variance, zscore, covariance ... (two fused passes)
    "matrix": 1 << 62,  # matmul family: BLAS through numpy is at the hardware limit
    # log2, log10, pow: numba's log2 and log10 polynomials are still 0.72-0.85x numpy's float32
    # SIMD ones at 2^18 (float64 1.01-1.13x only there); pow is a scalar libm call (0.27x)
    "libm": 1 << 62,
    "conv": 1 << 10,  # convolve2d (n = image * kernel elements): 20x numpy's einsum
    "transpose": 1 << 16,  # numba copies 8-row strips; numpy's strided .T copy is 6x slower
    "gather": 1 << 62,  # embedding_lookup: numpy fancy indexing is a memcpy already
    "never": 1 << 62,  # ops only the reference implements well
}
THRESHOLDS = _Table(THRESHOLDS)  # measured values above; _Table keeps HOST_MAX current
# Minimum host-array elements from which AUTO copies to the GPU (None: never for host data).
# Filled from benches/gpu_ops.py on a machine with a GPU.
GPU_THRESHOLDS: dict[str, int | None] = _Table({kind: None for kind in THRESHOLDS})

_forced: ContextVar[Backend | None] = ContextVar("trueno_backend", default=None)
_ENV_FORCED: Backend | None = (
    backends.parse(config.FORCED_BACKEND) if config.FORCED_BACKEND else None
)
_kernels: dict[tuple[Backend, str], object] = {}
_NUMPY_KERNELS: dict = backends.load(Backend.NUMPY).KERNELS  # the reference: always there
_numba_ok: bool | None = None
_modules = sys.modules
_F64 = np.dtype(np.float64)

# HOST_MAX[kind]: host inputs with fewer elements run numpy's kernel, decided by one lookup
# (run() below; trueno.ops._fast keeps a copy of it per op function, pushed by the
# on_refresh listeners). It is THRESHOLDS[kind] while nothing forces a backend anywhere (no
# TRUENO_BACKEND, no use_backend block open in any thread) and no GPU threshold is set for the
# kind, else 0: every call then takes the general path through choose(). A block open in
# another thread only sends this thread down the general path, which gives the same answer.
HOST_MAX: dict[str, int] = {}
_listeners: list = []  # called (no arguments) after every change of HOST_MAX
_blocks_open = 0
_blocks_lock = threading.RLock()


def _refresh() -> None:
    with _blocks_lock:
        auto = _ENV_FORCED is None and _blocks_open == 0
        changed = False
        for kind, limit in THRESHOLDS.items():
            host = auto and GPU_THRESHOLDS.get(kind) is None
            bound = limit if host else 0
            if HOST_MAX.get(kind) != bound:
                HOST_MAX[kind] = bound
                changed = True
        if changed:
            for listener in _listeners:
                listener()


def on_refresh(listener) -> None:
    """Call ``listener()`` after every change of ``HOST_MAX`` (the op functions' fast paths
    keep their bounds this way; ops import dispatch, never the reverse)."""
    with _blocks_lock:
        _listeners.append(listener)


def _count_block(delta: int) -> None:
    global _blocks_open
    with _blocks_lock:
        _blocks_open += delta
        _refresh()


_refresh()


@contextmanager
def use_backend(name: str | Backend):
    """Run the ops in this block on one backend (``"auto"`` restores the policy). Raises
    BackendUnavailableError at once if the backend cannot run here."""
    backend = backends.parse(name)
    if backend is not Backend.AUTO:
        backends.load(backend)
    token = _forced.set(None if backend is Backend.AUTO else backend)
    _count_block(1)
    try:
        yield backend
    finally:
        _forced.reset(token)
        _count_block(-1)


def forced_backend() -> Backend | None:
    """The backend forced by use_backend or TRUENO_BACKEND, or None for AUTO."""
    forced = _forced.get()
    return _ENV_FORCED if forced is None else forced


def _is_device_array(x) -> bool:
    return "cupy" in sys.modules and type(x).__module__.startswith("cupy")


def _is_dask_array(x) -> bool:
    return type(x).__module__.startswith("dask")


def _lazy_run(spec: OpSpec, args: tuple, kwargs: dict | None):
    """A dask graph calling ``spec``'s kernels per chunk (trueno.dask, found by name like the
    backends: imported only once a dask array arrives)."""
    import importlib

    return importlib.import_module("trueno.dask.array").run(spec, args, kwargs or {})


def kind_of(spec: OpSpec, args: tuple = ()) -> str:
    """The threshold class of a call: ``spec.kind64`` for a float64 first operand where the
    op has one, else ``spec.kind``."""
    if spec.kind64 is not None and args and getattr(args[0], "dtype", None) == _F64:
        return spec.kind64
    return spec.kind


def choose(spec: OpSpec, n: int, args: tuple = ()) -> Backend:
    """The backend AUTO (or a forced backend) picks for ``spec`` on ``n`` input elements."""
    forced = _forced.get() or _ENV_FORCED
    if forced is not None:
        return forced
    if "cupy" in sys.modules and any(_is_device_array(a) for a in args):
        return Backend.CUPY
    kind = kind_of(spec, args)
    gpu_min = GPU_THRESHOLDS.get(kind)
    if gpu_min is not None and n >= gpu_min and backends.is_available(Backend.CUPY):
        return Backend.CUPY
    if n >= THRESHOLDS[kind]:
        global _numba_ok
        if _numba_ok is None:
            _numba_ok = backends.is_available(Backend.NUMBA)
        if _numba_ok:
            return Backend.NUMBA
    return Backend.NUMPY


def kernel(backend: Backend, name: str):
    """The implementation of op ``name`` on ``backend``; a backend without it uses numpy's,
    except cupy, which must not silently move data back to the host."""
    key = (backend, name)
    fn = _kernels.get(key)
    if fn is None:
        table = backends.load(backend).KERNELS
        fn = table.get(name)
        if fn is None:
            if backend is Backend.CUPY:
                from trueno.errors import UnsupportedError

                raise UnsupportedError(
                    f"op {name!r} has no cupy kernel; move the data to the "
                    "host with trueno.to_host() or allow a host fallback"
                )
            fn = backends.load(Backend.NUMPY).KERNELS[name]
            fn = _Fallback(fn, backend)
        _kernels[key] = fn
    return fn


class _Fallback:
    """A reference kernel standing in for a backend that lacks the op. Any kernel with a
    ``fallback_from`` attribute (this one, cupy's host fallback) is labelled so in traces."""

    __slots__ = ("fn", "fallback_from")

    def __init__(self, fn, wanted: Backend) -> None:
        self.fn, self.fallback_from = fn, wanted.value

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def run(spec: OpSpec, n: int, args: tuple, kwargs: dict | None = None):
    """Run ``spec`` on validated ``args`` (``n`` = input elements) on the chosen backend."""
    kind = spec.kind if spec.kind64 is None else kind_of(spec, args)
    if (
        n < HOST_MAX[kind] and "cupy" not in _modules and "dask" not in _modules
    ):  # the common small-input case, decided inline (same answer as choose())
        backend = Backend.NUMPY
        fn = _NUMPY_KERNELS[spec.name]
    else:
        if "dask" in _modules and any(_is_dask_array(a) for a in args):
            return _lazy_run(spec, args, kwargs)
        if recorder.ENABLED:  # the op's span includes loading its backend (numba's import)
            return _run_recorded(spec, n, args, kwargs)
        backend = choose(spec, n, args)
        fn = kernel(backend, spec.name)
    if not recorder.ENABLED:
        return fn(*args, **kwargs) if kwargs else fn(*args)
    return traced(spec, backend, fn, n, args, kwargs)


def traced(spec: OpSpec, backend: Backend, fn, n: int, args: tuple, kwargs: dict | None = None):
    """``fn(*args)`` timed, its op span recorded (tracing is on)."""
    t0 = perf_counter_ns()
    out = fn(*args, **kwargs) if kwargs else fn(*args)
    dur = perf_counter_ns() - t0
    _record(spec, backend, fn, n, args, out, t0, dur)
    return out


def _run_recorded(spec, n, args, kwargs):
    t0 = perf_counter_ns()
    backend = choose(spec, n, args)
    fn = kernel(backend, spec.name)
    out = fn(*args, **kwargs) if kwargs else fn(*args)
    dur = perf_counter_ns() - t0
    _record(spec, backend, fn, n, args, out, t0, dur)
    return out


_BACKEND_NAMES: dict = {}
_DTYPE_NAMES: dict = {}


def _record(spec, backend, fn, n, args, out, t0, dur) -> None:
    key = (backend, fn)
    name = _BACKEND_NAMES.get(key)
    if name is None:
        wanted = getattr(fn, "fallback_from", None)
        name = f"numpy(fallback from {wanted})" if wanted else backend.value
        _BACKEND_NAMES[key] = name
    first = args[0] if args else None
    shape = getattr(first, "shape", ())
    dt = getattr(first, "dtype", None)
    dtype = _DTYPE_NAMES.get(dt)
    if dtype is None:
        dtype = _DTYPE_NAMES[dt] = "" if dt is None else str(dt)
    nbytes = getattr(out, "nbytes", 0)
    for a in args:
        nbytes += getattr(a, "nbytes", 0)
    # JIT work the op triggered (numba import, kernel cache load or compile) is its child
    sid = recorder.claim_jit(t0) if recorder.jit_pending else 0
    recorder.record_op(spec.name, name, shape, dtype, nbytes, int(spec.flops * n), t0, dur, sid)
