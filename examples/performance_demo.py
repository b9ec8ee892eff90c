"""numpy vs trueno per op at 1e2 ... 1e6 elements, with the speedups.

Fixed repeat counts (no adaptive timing) keep the op sequence deterministic for the golden
trace. Run: python examples/performance_demo.py
"""

import time

import numpy as np

import trueno

OPS = {
    "add": (lambda a: trueno.add(a, a), lambda a: a + a),
    "exp": (trueno.exp, np.exp),
    "sum": (trueno.sum, np.sum),
    "softmax": (trueno.softmax, lambda a: np.exp(a - a.max()) / np.exp(a - a.max()).sum()),
    "tanh": (trueno.tanh, np.tanh),
}
SIZES = (100, 10_000, 1_000_000)


def best(fn, x, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    print(f"{'op':<8}{'n':>10}{'numpy us':>12}{'trueno us':>12}{'speedup':>9}")
    for name, (ours, ref) in OPS.items():
        for n in SIZES:
            x = np.linspace(-1, 1, n, dtype=np.float32)
            repeat = 5 if n >= 1_000_000 else 20
            ours(x)  # first call: numba compiles (or loads its cache)
            with trueno.trace.span(f"bench.{name}", category="example", n=n):
                t_ours = best(ours, x, repeat)
            t_ref = best(ref, x, repeat)
            print(
                f"{name:<8}{n:>10}{t_ref * 1e6:>12.1f}{t_ours * 1e6:>12.1f}{t_ref / t_ours:>8.2f}x"
            )


if __name__ == "__main__":
    main()
