"""Quickstart: a few trueno ops on float32 vectors, checked against numpy.

Run: python examples/quickstart.py   (TRUENO_TRACE=1 or `trueno trace run` to trace it)
"""

import numpy as np

import trueno


def main() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    b = np.array([5.0, 6.0, 7.0, 8.0], dtype=np.float32)
    print("a + b      =", trueno.add(a, b))
    print("a * b      =", trueno.mul(a, b))
    print("dot(a, b)  =", float(trueno.dot(a, b)))
    print("sum(a)     =", float(trueno.sum(a)))
    print("norm_l2(a) =", round(float(trueno.norm_l2(a)), 4))
    print("softmax(a) =", np.round(trueno.softmax(a), 4))
    assert float(trueno.dot(a, b)) == 70.0
    big = np.linspace(-1, 1, 1 << 20, dtype=np.float32)  # large enough for numba (AUTO)
    with trueno.trace.span("quickstart.big", category="example"):
        out = trueno.exp(big)
    assert np.allclose(out, np.exp(big), rtol=1e-5)
    print(f"exp over {big.size} elements matches numpy")


if __name__ == "__main__":
    main()
