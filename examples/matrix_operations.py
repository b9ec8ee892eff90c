"""Matrix operations: matmul, transpose, matvec, vecmat, a linear layer, batched matmul.

Run: python examples/matrix_operations.py
"""

import numpy as np

import trueno


def main() -> None:
    a = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)  # (2, 3)
    b = np.array([[7, 8], [9, 10], [11, 12]], dtype=np.float32)  # (3, 2)
    c = trueno.matmul(a, b)
    print("A (2x3) @ B (3x2) =\n", c)
    assert np.array_equal(c, [[58, 64], [139, 154]])
    print("A^T =\n", trueno.transpose(a))
    x = np.array([1, 0, -1], dtype=np.float32)
    print("A @ x   =", trueno.matvec(a, x))  # (2,)
    y = np.array([1, 1], dtype=np.float32)
    print("y @ A   =", trueno.vecmat(y, a))  # (3,)

    rng = np.random.default_rng(0)
    with trueno.trace.span("linear_layer", category="example"):
        w = rng.standard_normal((64, 128)).astype(np.float32)
        bias = rng.standard_normal(64).astype(np.float32)
        batch = rng.standard_normal((16, 128)).astype(np.float32)
        h = trueno.add(trueno.matmul(batch, trueno.transpose(w)), np.broadcast_to(bias, (16, 64)))
        h = trueno.relu(h)
    assert np.allclose(h, np.maximum(batch @ w.T + bias, 0), atol=1e-4)
    print("linear layer (16x128 -> 16x64) + relu matches numpy")

    q = rng.standard_normal((2, 4, 8, 16)).astype(np.float32)  # (B, H, T, D)
    k = rng.standard_normal((2, 4, 16, 8)).astype(np.float32)  # (B, H, D, T)
    scores = trueno.batched_matmul(q, k)  # (B, H, T, T)
    assert np.allclose(scores, q @ k, atol=1e-4)
    print("batched matmul (2, 4, 8, 16) @ (2, 4, 16, 8) ->", scores.shape)


if __name__ == "__main__":
    main()
