"""numba's first-call work as trace spans (category ``jit``).

A kernel's first call with new argument types goes through its dispatcher's
``_compile_for_args``: numba types the arguments, then loads the machine code from its on-disk
cache (``numba.cache_load``) or compiles it (``numba.compile``, marked by numba's
``numba:compile`` event). Both are start-up cost, not the op's compute. A wrapper around
``Dispatcher._compile_for_args`` (the C dispatcher looks the method up by name; outermost call
per thread) times it; the span names the kernel and waits in the recorder until the op that
triggered it claims it as a child (:func:`trueno.trace.recorder.claim_jit`). Installed once,
when the numba backend loads; with tracing off the wrapper costs one flag test per first call.
"""

from __future__ import annotations

import threading
from time import perf_counter_ns

from numba.core import dispatcher, event

from trueno.trace import recorder

_installed = False
_local = threading.local()


class _CompileListener(event.Listener):
    """Marks that the dispatcher call in progress on this thread compiled (a cache miss)."""

    def on_start(self, ev) -> None:
        _local.compiled = True

    def on_end(self, ev) -> None:
        pass


def _wrap(compile_for_args):
    def _compile_for_args(self, *args, **kws):
        if not recorder.ENABLED or getattr(_local, "depth", 0):
            return compile_for_args(self, *args, **kws)
        _local.depth, _local.compiled = 1, False
        t0 = perf_counter_ns()
        try:
            return compile_for_args(self, *args, **kws)
        finally:
            dur = perf_counter_ns() - t0
            _local.depth = 0
            fn = getattr(self, "py_func", None)
            kernel = f"{fn.__module__}.{fn.__qualname__}" if fn is not None else ""
            name = "numba.compile" if _local.compiled else "numba.cache_load"
            recorder.jit_event(name, t0, dur, kernel=kernel)

    _compile_for_args.__wrapped__ = compile_for_args
    return _compile_for_args


def install() -> None:
    """Time numba's first calls for the life of the process (idempotent). Also types one
    array now: numba's first ``typeof`` of an ndarray sets up its typing (~0.1 s), which would
    otherwise land in the first kernel call, outside any JIT span (the C dispatcher types the
    arguments before it calls ``_compile_for_args``)."""
    global _installed
    if _installed:
        return
    _installed = True
    import numpy as np
    from numba import typeof

    typeof(np.empty((1, 1), np.float32))
    cls = dispatcher.Dispatcher
    cls._compile_for_args = _wrap(cls._compile_for_args)
    event.register("numba:compile", _CompileListener())
