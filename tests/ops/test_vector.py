"""Vector and Matrix classes: trueno's method names, each equal to the functional op."""

from __future__ import annotations

import numpy as np
import pytest

import trueno
from trueno import Matrix, Vector


def test_vector_methods_match_functions():
    v = Vector.from_slice([3.0, -1.0, 2.0, 0.5])
    w = Vector.from_slice([1.0, 2.0, 3.0, 4.0])
    assert v.dtype == np.float32 and len(v) == 4
    assert v.dot(w) == pytest.approx(3 - 2 + 6 + 2)
    assert v.sum() == pytest.approx(4.5) and v.sum_kahan() == pytest.approx(4.5)
    assert v.max() == 3 and v.min() == -1 and v.argmax() == 0 and v.argmin() == 1
    assert v.norm_l1() == pytest.approx(6.5) and v.norm_linf() == 3
    assert v.norm_l2() == pytest.approx(np.sqrt(9 + 1 + 4 + 0.25))
    assert v.normalize().norm_l2() == pytest.approx(1.0)
    assert v.mean() == pytest.approx(1.125)
    assert v.variance() == pytest.approx(np.var(v.data)) and v.stddev() > 0
    assert v.correlation(w) == pytest.approx(np.corrcoef(v.data, w.data)[0, 1], rel=1e-5)
    np.testing.assert_allclose(v.softmax().data, trueno.softmax(v.data))
    np.testing.assert_allclose((v + w).data, v.data + w.data)
    np.testing.assert_allclose(v.add(1.0).data, v.data + 1)
    np.testing.assert_allclose(v.exp().data, trueno.exp(v.data))
    np.testing.assert_allclose(v.relu().data, [3, 0, 2, 0.5])
    np.testing.assert_allclose(v.clip(0, 1).data, [1, 0, 1, 0.5])
    np.testing.assert_allclose(v.maximum(w).data, np.maximum(v.data, w.data))
    assert v.gelu("none").data.dtype == np.float32
    assert Vector.from_slice([1, 2]) == Vector.from_slice([1, 2])
    assert "Vector([1.0, 2.0]" in repr(Vector.from_slice([1, 2]))


def test_matrix_methods():
    m = Matrix.from_vec(2, 3, [1, 2, 3, 4, 5, 6])
    assert m.shape == (2, 3) and m.rows == 2 and m.cols == 3 and m.get(1, 2) == 6
    np.testing.assert_allclose(m.transpose().data, m.data.T)
    np.testing.assert_allclose(m.matmul(m.transpose()).data, m.data @ m.data.T)
    np.testing.assert_allclose((m @ m.transpose()).data, m.data @ m.data.T)
    np.testing.assert_allclose(m.matvec(Vector.from_slice([1, 0, 1])).data, [4, 10])
    np.testing.assert_allclose(m.vecmat([1, 1]).data, [5, 7, 9])
    s = Matrix([[2.0, 1.0], [1.0, 2.0]])
    w, v = s.eigh()
    np.testing.assert_allclose(w.data, [3, 1], atol=1e-6)
    np.testing.assert_allclose(trueno.eigh_reconstruct(w.data, v.data), s.data, atol=1e-6)
    np.testing.assert_allclose(Matrix.identity(2).data, np.eye(2))
    with pytest.raises(trueno.SizeMismatchError):
        Matrix.from_vec(2, 2, [1, 2, 3])
