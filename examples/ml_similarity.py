"""Cosine similarity, L2 normalisation and k-nearest neighbours with trueno ops.

Run: python examples/ml_similarity.py
"""

import numpy as np

import trueno


def cosine(a, b) -> float:
    return float(trueno.dot(a, b)) / (float(trueno.norm_l2(a)) * float(trueno.norm_l2(b)))


def unit_rows(db: np.ndarray) -> np.ndarray:
    """L2-normalise every row in one call: rms_norm divides by sqrt(mean(x^2)), so scaling by
    1/sqrt(D) gives x / |x| (one batched op, not a Python loop of tiny ops)."""
    return trueno.scale(trueno.rms_norm(db, eps=0.0), 1.0 / np.sqrt(db.shape[1]))


def knn(db: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """Indices of the k rows of ``db`` most similar (cosine) to ``query``."""
    unit = unit_rows(db)
    scores = trueno.matvec(unit, trueno.normalize(query))
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def main() -> None:
    a = np.array([1, 2, 3], dtype=np.float32)
    b = np.array([2, 4, 6], dtype=np.float32)
    c = np.array([-3, 0, 1], dtype=np.float32)
    print(f"cosine(a, 2a) = {cosine(a, b):.4f}   cosine(a, c) = {cosine(a, c):.4f}")
    assert abs(cosine(a, b) - 1.0) < 1e-6
    u = trueno.normalize(a)
    print("normalize(a) =", np.round(u, 4), " |u| =", round(float(trueno.norm_l2(u)), 6))
    rng = np.random.default_rng(42)
    db = rng.standard_normal((200, 32)).astype(np.float32)
    query = db[17] + 0.05 * rng.standard_normal(32).astype(np.float32)
    with trueno.trace.span("knn", category="example", k=5):
        top = knn(db, query, 5)
    assert np.allclose(unit_rows(db)[3], trueno.normalize(db[3]), atol=1e-5)
    print("5 nearest neighbours of a noisy copy of row 17:", top)
    assert top[0] == 17


if __name__ == "__main__":
    main()
