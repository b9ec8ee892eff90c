"""Output buffers that stay mapped between a dask worker's tasks.

distributed's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, so glibc gives
every large freed block back to the kernel and the next allocation maps fresh pages: each
chunk's output (16-64 MB for dask's usual chunks) then pays one page fault per 4 KB page,
as long as the kernel itself took on a 2-core VM. The pool keeps a few freed output buffers
of trueno's kernels mapped and hands them to the next output of the same size.

A buffer returns to the pool only when no array uses it any more: the arrays are built
through ``__array_interface__`` on a :class:`_Lease`, which every view keeps alive as its
base; the lease's finalizer gives the buffer back. Idle buffers are bounded (``max_bytes``),
and small outputs (below ``min_bytes``) come from ``np.empty`` as before.
"""

from __future__ import annotations

import threading

import numpy as np

MIN_BYTES = 1 << 20
MAX_BYTES = 256 << 20  # idle bytes kept mapped per worker process


class _Lease:
    """The owner of a pooled buffer while arrays use it (their ``base``)."""

    def __init__(self, pool: OutputPool, buf: np.ndarray, shape: tuple, dtype: np.dtype):
        self._pool, self._buf = pool, buf
        self.__array_interface__ = {
            "data": (buf.ctypes.data, False),
            "shape": tuple(shape),
            "typestr": dtype.str,
            "descr": dtype.descr,
            "version": 3,
        }

    def __del__(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._give_back(self._buf)


class OutputPool:
    """``empty(shape, dtype)`` for trueno's kernels (see ``numba_kernels._out``)."""

    def __init__(self, min_bytes: int = MIN_BYTES, max_bytes: int = MAX_BYTES) -> None:
        self.min_bytes, self.max_bytes = int(min_bytes), int(max_bytes)
        self._free: dict[int, list[np.ndarray]] = {}
        self._idle = 0
        self._lock = threading.Lock()
        self.reused = self.fresh = 0  # counters, for tests and traces

    @property
    def idle_bytes(self) -> int:
        return self._idle

    def empty(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        shape = tuple(int(d) for d in (shape if isinstance(shape, tuple) else (shape,)))
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < self.min_bytes or dtype.hasobject:
            return np.empty(shape, dtype)
        buf = None
        with self._lock:
            free = self._free.get(nbytes)
            if free:
                buf = free.pop()
                self._idle -= nbytes
        if buf is None:
            buf = np.empty(nbytes, np.uint8)
            self.fresh += 1
        else:
            self.reused += 1
        return np.asarray(_Lease(self, buf, shape, dtype))

    def _give_back(self, buf: np.ndarray) -> None:
        n = buf.nbytes
        with self._lock:
            if self._idle + n > self.max_bytes:
                return  # freed for real
            self._free.setdefault(n, []).append(buf)
            self._idle += n

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._idle = 0


POOL: OutputPool | None = None  # this process's, once installed


def install() -> OutputPool:
    """Make trueno's kernels in this process take their outputs from one pool (idempotent)."""
    global POOL
    from trueno.backends.numba_kernels import _out

    if POOL is None:
        POOL = OutputPool()
    _out.install(POOL.empty)
    return POOL
