"""Every activation on -3..3, and softmax([2, 1, 0.1]) = [0.659, 0.242, 0.0986].

Run: python examples/activation_functions.py
"""

import numpy as np

import trueno

ACTIVATIONS = (
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "sigmoid",
    "tanh",
    "gelu",
    "silu",
    "swish",
    "hardswish",
    "mish",
)


def main() -> None:
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    print("x" + " " * 11, " ".join(f"{v:7.3f}" for v in x))
    for name in ACTIVATIONS:
        y = getattr(trueno, name)(x)
        print(f"{name:<12}", " ".join(f"{v:7.3f}" for v in y))
    print(f"{'gelu (erf)':<12}", " ".join(f"{v:7.3f}" for v in trueno.gelu(x, "none")))
    p = trueno.softmax(np.array([2.0, 1.0, 0.1], dtype=np.float32))
    print("softmax([2, 1, 0.1]) =", np.round(p, 4))
    assert np.allclose(p, [0.659, 0.242, 0.0986], atol=1e-3)
    print(
        "log_softmax          =",
        np.round(trueno.log_softmax(np.array([2.0, 1.0, 0.1], dtype=np.float32)), 4),
    )


if __name__ == "__main__":
    main()
