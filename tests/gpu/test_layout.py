"""The row-wise kernels' launch layout, run with numpy standing in for cupy."""

from __future__ import annotations

import numpy as np
import pytest

from trueno.backends.cuda.layout import as_rows, threads_per_row


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4), (1, 1, 7)], ids=str)
def test_rows_run_along_the_axis_and_restore(shape):
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    for axis in range(-max(a.ndim, 1), max(a.ndim, 1)):
        rows, restore = as_rows(np, a, axis)
        assert rows.ndim == 2 and rows.flags.c_contiguous
        if a.ndim:
            assert rows.shape[1] == a.shape[axis]
            # a row-wise op (here: subtract the row max) equals numpy's along the axis
            want = a - a.max(axis=axis, keepdims=True)
            got = restore(rows - rows.max(axis=1, keepdims=True))
        else:
            want, got = a * 2, restore(rows * 2)
        assert got.shape == a.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "n,want", [(1, 32), (128, 32), (129, 64), (896, 224), (4096, 1024), (10**6, 1024)]
)
def test_threads_per_row(n, want):
    assert threads_per_row(n) == want
    assert threads_per_row(n) % 32 == 0
