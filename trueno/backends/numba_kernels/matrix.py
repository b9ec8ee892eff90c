"""Matrix kernels. matmul, matvec, eigh and friends call numpy (BLAS/LAPACK is at the hardware
limit; a numba loop would only be slower). convolve2d is a direct numba loop that
vectorizes along output columns; transpose copies strips of 8 rows (numpy's strided copy is not
cache-blocked: 6x faster at 1024x1024)."""

from __future__ import annotations

import numba as nb
import numpy as np

from trueno.backends import numpy_backend as ref

JIT = dict(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
KERNELS: dict = {}


@nb.njit(**JIT)
def _conv2d_valid(out, img, kf):
    # kf is the flipped kernel: out[i, j] = sum_pq img[i + p, j + q] * kf[p, q]
    kh, kw = kf.shape
    oh, ow = out.shape
    for i in range(oh):
        o = out[i]
        for j in range(ow):
            o[j] = 0
        for p in range(kh):
            row = img[i + p]
            for q in range(kw):
                w = kf[p, q]
                src = row[q : q + ow]
                for j in range(ow):
                    o[j] += src[j] * w


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _transpose_strips(out, a):
    # strips of 8 input rows: each output row gets 8 contiguous values per strip, and the 8
    # input rows being read stay in L1 (larger square tiles thrash at power-of-two strides)
    n, m = a.shape
    for i0 in range(0, n, 8):
        i1 = min(i0 + 8, n)
        for j in range(m):
            o = out[j]
            for i in range(i0, i1):
                o[i] = a[i, j]


def transpose(a):
    out = np.empty((a.shape[1], a.shape[0]), dtype=a.dtype)
    _transpose_strips(out, np.ascontiguousarray(a))
    return out


def convolve2d(img, k):
    img = np.ascontiguousarray(img)
    kf = np.ascontiguousarray(k[::-1, ::-1])
    out = np.empty((img.shape[0] - k.shape[0] + 1, img.shape[1] - k.shape[1] + 1), img.dtype)
    _conv2d_valid(out, img, kf)
    return out


KERNELS.update(
    matmul=ref.matmul,
    batched_matmul=ref.matmul,
    transpose=transpose,
    matvec=ref.matvec,
    vecmat=ref.vecmat,
    embedding_lookup=ref.embedding_lookup,
    eigh=ref.eigh,
    convolve2d=convolve2d,
)
