"""Symmetric eigendecomposition: eigenvalues (descending), eigenvectors, reconstruction.

Run: python examples/symmetric_eigen.py
"""

import numpy as np

import trueno


def main() -> None:
    a = np.array([[4, 1, 2], [1, 3, 0], [2, 0, 5]], dtype=np.float32)
    w, v = trueno.eigh(a)
    print("eigenvalues (descending):", np.round(w, 4))
    print("eigenvectors (columns):\n", np.round(v, 4))
    back = trueno.eigh_reconstruct(w, v)
    print("max |V diag(w) V^T - A| =", float(np.abs(back - a).max()))
    assert np.allclose(back, a, atol=1e-4)
    assert np.all(np.diff(w) <= 0)
    rng = np.random.default_rng(1)
    m = rng.standard_normal((64, 64)).astype(np.float32)
    cov = trueno.matmul(m, trueno.transpose(m)) / np.float32(64)
    w2, _ = trueno.eigh(cov)
    print(f"64x64 covariance: largest eigenvalue {w2[0]:.3f}, smallest {w2[-1]:.5f}")
    assert np.allclose(w2, np.linalg.eigvalsh(cov)[::-1], rtol=1e-3, atol=1e-4)


if __name__ == "__main__":
    main()
