"""Matrix kernels. matmul, matvec, eigh and friends call numpy (BLAS/LAPACK is at the hardware
limit; a numba loop would only be slower). convolve2d is a direct numba loop that
vectorizes along output columns."""

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


def convolve2d(img, k):
    img = np.ascontiguousarray(img)
    kf = np.ascontiguousarray(k[::-1, ::-1])
    out = np.empty((img.shape[0] - k.shape[0] + 1, img.shape[1] - k.shape[1] + 1), img.dtype)
    _conv2d_valid(out, img, kf)
    return out


KERNELS.update(
    matmul=ref.matmul,
    batched_matmul=ref.matmul,
    transpose=ref.transpose,
    matvec=ref.matvec,
    vecmat=ref.vecmat,
    embedding_lookup=ref.embedding_lookup,
    eigh=ref.eigh,
    convolve2d=convolve2d,
)
