"""Where the numba kernels' whole-array outputs come from: ``np.empty``, unless a layer above
installs an allocator for this process (``trueno.dask`` installs its buffer pool in a dask
worker, see :mod:`trueno.dask.buffers`). Not jitted: only the Python entry points call it."""

from __future__ import annotations

import numpy as np

ALLOCATOR = None  # (shape, dtype) -> a writable C-contiguous ndarray; None: np.empty


def empty(shape, dtype) -> np.ndarray:
    alloc = ALLOCATOR
    return np.empty(shape, dtype) if alloc is None else alloc(shape, dtype)


def install(alloc) -> None:
    """Use ``alloc`` for the kernels' outputs from now on (None: back to np.empty)."""
    global ALLOCATOR
    ALLOCATOR = alloc
