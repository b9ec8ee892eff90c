"""Array-generic launch helpers of the row-wise kernels (``xp`` is cupy on the GPU, numpy in
the CPU tests): the (rows, n) view a one-block-per-row kernel needs, and its thread count."""

from __future__ import annotations


def threads_per_row(n: int) -> int:
    """Threads per row: about 4 values per thread, a multiple of 32, from 32 to 1024."""
    t = min(1024, max(32, -(-n // 4)))
    return (t + 31) // 32 * 32


def as_rows(xp, a, axis: int = -1):
    """``a`` as a C-contiguous (rows, n) array whose rows run along ``axis``, plus the function
    that turns a same-shaped (rows, n) result back into ``a``'s layout."""
    if a.ndim == 0:
        return xp.ascontiguousarray(a).reshape(1, 1), lambda out: out.reshape(())
    axis = axis % a.ndim
    moved = xp.moveaxis(a, axis, -1) if axis != a.ndim - 1 else a
    rows2d = xp.ascontiguousarray(moved).reshape(-1, a.shape[axis])

    def restore(out):
        out = out.reshape(moved.shape)
        return xp.moveaxis(out, -1, axis) if moved is not a else out

    return rows2d, restore
