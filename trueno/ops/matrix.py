"""Matrix ops: matmul (BLAS through numpy), batched matmul for attention shapes, transpose,
matvec/vecmat, valid 2-D convolution, embedding lookup, symmetric eigendecomposition."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trueno import dispatch
from trueno.errors import DTypeError, ShapeError, SizeMismatchError
from trueno.ops._validate import as_float_array, ndim_in, same_dtype
from trueno.opspec import declare

if TYPE_CHECKING:
    from trueno.ops._types import Array, ArrayLike

MATMUL = declare("matmul", "matrix", rtol=1e-5, atol=1e-5, doc="a @ b (2-D)", args="mat")
BATCHED = declare(
    "batched_matmul",
    "matrix",
    rtol=1e-5,
    atol=1e-5,
    doc="a @ b over leading batch axes (3-D, 4-D)",
    args="mat",
)
TRANSPOSE = declare("transpose", "transpose", rtol=0.0, doc="a.T (contiguous)", args="mat")
MATVEC = declare("matvec", "matrix", rtol=1e-5, atol=1e-5, flops=2, doc="A @ x", args="mat")
VECMAT = declare("vecmat", "matrix", rtol=1e-5, atol=1e-5, flops=2, doc="x @ A", args="mat")
CONV2D = declare(
    "convolve2d", "conv", rtol=1e-5, atol=1e-5, doc="valid 2-D convolution", args="mat"
)
EMBEDDING = declare("embedding_lookup", "gather", rtol=0.0, doc="table[ids]", args="mat")
EIGH = declare(
    "eigh", "never", rtol=1e-4, atol=1e-4, doc="symmetric eigendecomposition", args="mat"
)


def _mm_operands(a: ArrayLike, b: ArrayLike, op: str) -> tuple[Array, Array]:
    a, b = same_dtype((a, b), op)
    return a, b


def matmul(a: ArrayLike, b: ArrayLike) -> Array:
    """Matrix product a @ b of 2-D arrays (3-D/4-D inputs go to batched_matmul)."""
    a, b = _mm_operands(a, b, "matmul")
    if a.ndim > 2 or b.ndim > 2:
        return batched_matmul(a, b)
    ndim_in(a, (2,), "matmul", "a")
    ndim_in(b, (2,), "matmul", "b")
    if a.shape[1] != b.shape[0]:
        raise SizeMismatchError(
            "matmul", f"b with {a.shape[1]} rows (a is {a.shape})", f"b with shape {b.shape}"
        )
    return dispatch.run(MATMUL, a.size + b.size, (a, b))


def batched_matmul(a: ArrayLike, b: ArrayLike) -> Array:
    """a @ b over leading batch axes: (B, M, K) @ (B, K, N) or (B, H, M, K) @ (B, H, K, N);
    batch axes broadcast as numpy.matmul."""
    a, b = _mm_operands(a, b, "batched_matmul")
    ndim_in(a, (3, 4), "batched_matmul", "a")
    ndim_in(b, (2, 3, 4), "batched_matmul", "b")
    if a.shape[-1] != b.shape[-2]:
        raise SizeMismatchError(
            "batched_matmul",
            f"inner size {a.shape[-1]}",
            f"{b.shape[-2]} (a {a.shape}, b {b.shape})",
        )
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise SizeMismatchError(
            "batched_matmul", f"batch axes {a.shape[:-2]}", f"{b.shape[:-2]}"
        ) from None
    return dispatch.run(BATCHED, a.size + b.size, (a, b))


def transpose(a: ArrayLike) -> Array:
    """The transpose of a 2-D array, as a new contiguous array."""
    a = as_float_array(a, "transpose")
    ndim_in(a, (2,), "transpose")
    return dispatch.run(TRANSPOSE, a.size, (a,))


def matvec(a: ArrayLike, x: ArrayLike) -> Array:
    """A @ x for a (M, K) matrix and a (K,) vector."""
    a, x = same_dtype((a, x), "matvec")
    ndim_in(a, (2,), "matvec", "matrix")
    ndim_in(x, (1,), "matvec", "vector")
    if a.shape[1] != x.shape[0]:
        raise SizeMismatchError("matvec", (a.shape[1],), x.shape)
    return dispatch.run(MATVEC, a.size, (a, x))


def vecmat(x: ArrayLike, a: ArrayLike) -> Array:
    """x @ A for a (M,) vector and a (M, N) matrix."""
    x, a = same_dtype((x, a), "vecmat")
    ndim_in(x, (1,), "vecmat", "vector")
    ndim_in(a, (2,), "vecmat", "matrix")
    if a.shape[0] != x.shape[0]:
        raise SizeMismatchError("vecmat", (a.shape[0],), x.shape)
    return dispatch.run(VECMAT, a.size, (x, a))


def convolve2d(image: ArrayLike, kernel: ArrayLike) -> Array:
    """Valid 2-D convolution (kernel flipped, as scipy.signal.convolve2d(mode="valid")):
    output shape (H - kh + 1, W - kw + 1)."""
    image, kernel = same_dtype((image, kernel), "convolve2d")
    ndim_in(image, (2,), "convolve2d", "image")
    ndim_in(kernel, (2,), "convolve2d", "kernel")
    if kernel.size == 0 or any(k > s for k, s in zip(kernel.shape, image.shape, strict=True)):
        raise ShapeError(
            f"convolve2d: kernel {kernel.shape} must be non-empty and fit in the "
            f"image {image.shape}"
        )
    return dispatch.run(CONV2D, image.size * kernel.size, (image, kernel))


def embedding_lookup(table: ArrayLike, ids: ArrayLike) -> Array:
    """Rows of ``table`` (V, D) for integer ``ids`` of any shape: result ids.shape + (D,)."""
    table = as_float_array(table, "embedding_lookup")
    ndim_in(table, (2,), "embedding_lookup", "table")
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise DTypeError(f"embedding_lookup: ids have dtype {ids.dtype}; expected integers")
    return dispatch.run(EMBEDDING, ids.size * table.shape[1], (table, ids))


def eigh(a: ArrayLike) -> tuple[Array, Array]:
    """Eigen-decomposition of a symmetric matrix (its lower triangle is read, as numpy):
    returns (eigenvalues in descending order, eigenvectors as columns)."""
    a = as_float_array(a, "eigh")
    ndim_in(a, (2,), "eigh")
    if a.shape[0] != a.shape[1] or a.size == 0:
        raise ShapeError(f"eigh: expected a non-empty square matrix, got shape {a.shape}")
    return dispatch.run(EIGH, a.size, (a,))


def eigh_reconstruct(eigenvalues: ArrayLike, eigenvectors: ArrayLike) -> Array:
    """V diag(w) V^T: the symmetric matrix an eigh result came from."""
    w, v = same_dtype((eigenvalues, eigenvectors), "eigh_reconstruct")
    ndim_in(v, (2,), "eigh_reconstruct", "eigenvectors")
    if w.shape != (v.shape[1],):
        raise SizeMismatchError("eigh_reconstruct", (v.shape[1],), w.shape)
    return (v * w) @ v.T


__all__ = [
    "batched_matmul",
    "convolve2d",
    "eigh",
    "eigh_reconstruct",
    "embedding_lookup",
    "matmul",
    "matvec",
    "transpose",
    "vecmat",
]
