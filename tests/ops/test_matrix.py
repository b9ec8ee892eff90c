"""Matrix ops on every backend against numpy and independent references: matmul (2-D,
batched 3-D/4-D attention shapes), transpose, matvec, vecmat, convolve2d (against a direct
loop), embedding lookup, eigh (descending, reconstruction)."""

from __future__ import annotations

import numpy as np
import pytest
from _ophelpers import BACKENDS, assert_close
from hypothesis import given
from hypothesis import strategies as st

import trueno

DIMS = st.integers(1, 40)


@pytest.fixture(params=BACKENDS)
def backend(request):
    with trueno.use_backend(request.param):
        yield request.param


def rand(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(m=DIMS, k=DIMS, n=DIMS, seed=st.integers(0, 2**32 - 1))
def test_matmul_matvec_vecmat(dtype, m, k, n, seed):
    rng = np.random.default_rng(seed)
    a, b = rand(rng, m, k, dtype=dtype), rand(rng, k, n, dtype=dtype)
    x, y = rand(rng, k, dtype=dtype), rand(rng, m, dtype=dtype)
    for be in BACKENDS:
        with trueno.use_backend(be):
            assert_close(trueno.matmul(a, b), a @ b, 1e-5, 1e-5, "matmul")
            assert_close(trueno.matmul(a[:, ::-1], b), a[:, ::-1] @ b, 1e-5, 1e-5, "strided")
            assert_close(trueno.matvec(a, x), a @ x, 1e-5, 1e-5, "matvec")
            assert_close(trueno.vecmat(y, a), y @ a, 1e-5, 1e-5, "vecmat")
            assert_close(trueno.transpose(a), a.T, 0.0, 0.0, "transpose")
            assert trueno.transpose(a).flags.c_contiguous


@pytest.mark.parametrize(
    "shapes",
    [
        ((4, 5, 6), (4, 6, 3)),
        ((2, 3, 7, 8), (2, 3, 8, 7)),
        ((2, 4, 16, 8), (8, 16)),
        ((1, 5, 6), (3, 6, 2)),
    ],
)
def test_batched_matmul_attention_shapes(backend, shapes):
    rng = np.random.default_rng(0)
    a, b = rand(rng, *shapes[0]), rand(rng, *shapes[1])
    want = np.matmul(a, b)
    assert_close(trueno.batched_matmul(a, b), want, 1e-5, 1e-5, "batched")
    assert_close(trueno.matmul(a, b), want, 1e-5, 1e-5, "matmul 3-D/4-D")


def _conv_loop(img, k):
    kf = k[::-1, ::-1]
    oh, ow = img.shape[0] - k.shape[0] + 1, img.shape[1] - k.shape[1] + 1
    out = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = np.sum(img[i : i + k.shape[0], j : j + k.shape[1]] * kf)
    return out


@given(
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_convolve2d_valid(h, w, kh, kw, seed):
    rng = np.random.default_rng(seed)
    img, k = rand(rng, h + kh, w + kw), rand(rng, kh, kw)
    want = _conv_loop(img.astype(np.float64), k.astype(np.float64)).astype(np.float32)
    for be in BACKENDS:
        with trueno.use_backend(be):
            assert_close(trueno.convolve2d(img, k), want, 1e-4, 1e-4, f"conv2d {be}")
            assert_close(
                trueno.convolve2d(img[::-1], k),
                _conv_loop(img[::-1].astype(np.float64), k).astype(np.float32),
                1e-4,
                1e-4,
                "strided",
            )


def test_convolve2d_large_goes_to_numba_and_matches():
    rng = np.random.default_rng(3)
    img, k = rand(rng, 200, 300), rand(rng, 5, 5)
    with trueno.use_backend("numpy"):
        want = trueno.convolve2d(img, k)
    assert_close(trueno.convolve2d(img, k), want, 1e-4, 1e-4)


def test_embedding_lookup(backend):
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    ids = np.array([[3, 0], [1, 1]])
    out = trueno.embedding_lookup(table, ids)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out, table[ids])


@pytest.mark.parametrize("n", [1, 2, 5, 32])
def test_eigh_descending_and_reconstructs(backend, n):
    rng = np.random.default_rng(n)
    a = rand(rng, n, n, dtype=np.float64)
    a = (a + a.T) / 2
    w, v = trueno.eigh(a)
    assert np.all(np.diff(w) <= 0)
    np.testing.assert_allclose(np.sort(w)[::-1], np.linalg.eigvalsh(a)[::-1], atol=1e-10)
    np.testing.assert_allclose(trueno.eigh_reconstruct(w, v), a, atol=1e-10)
    np.testing.assert_allclose(v.T @ v, np.eye(n), atol=1e-10)
    np.testing.assert_allclose(a @ v, v * w, atol=1e-9)
