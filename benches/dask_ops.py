"""trueno on dask vs dask's own numpy expressions, same run, on a 2-worker LocalCluster.

    python benches/dask_ops.py [--mb 256] [--rounds 3] [--workers 2] [--ops sum,norm_l2]

Data is generated on the workers and persisted; each op's result is reduced to a scalar on
the workers (only that comes back). Rounds interleave the two sides; best of 2 calls per
round, median over rounds."""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ops", default="", help="comma-separated subset (default: all)")
    args = ap.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster, wait

    import trueno
    import trueno.dask

    cols = 1024
    rows = args.mb * (1 << 20) // 4 // cols
    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        trueno.dask.register(client, warm=False)
        chunk_rows = max(1, rows // (8 * args.workers))
        x = da.random.default_rng(0).standard_normal((rows, cols), chunks=(chunk_rows, cols))
        x = x.astype(np.float32).persist()
        wait(x)

        def np_softmax(a):
            e = np.exp(a - a.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)

        def np_gelu(a):
            return 0.5 * a * (1 + np.tanh(np.float32(0.7978845608) * (a + 0.044715 * a**3)))

        def np_layer_norm(a):
            m = a.mean(axis=-1, keepdims=True)
            return (a - m) / np.sqrt(a.var(axis=-1, keepdims=True) + np.float32(1e-5))

        cases = {
            "softmax": (lambda: trueno.softmax(x).sum(), lambda: x.map_blocks(np_softmax).sum()),
            "gelu": (lambda: trueno.gelu(x).sum(), lambda: x.map_blocks(np_gelu).sum()),
            "layer_norm": (
                lambda: trueno.layer_norm(x).sum(),
                lambda: x.map_blocks(np_layer_norm).sum(),
            ),
            "sum": (lambda: trueno.sum(x), lambda: x.sum()),
            "norm_l2": (lambda: trueno.norm_l2(x), lambda: da.sqrt((x * x).sum())),
        }
        if args.ops:
            cases = {k: v for k, v in cases.items() if k in args.ops.split(",")}
        for f, g in cases.values():  # warm: JIT in the workers
            f().compute(), g().compute()
        print(f"{args.mb} MB float32 ({rows}x{cols}), {args.workers} workers x 1 thread")
        print(f"{'op':<11}{'trueno s':>10}{'dask/numpy s':>14}{'speedup':>9}")
        for name, (f, g) in cases.items():
            tt, tn = [], []
            for _ in range(args.rounds):
                for side, out in ((f, tt), (g, tn)):
                    best = float("inf")
                    for _ in range(2):
                        t0 = time.perf_counter()
                        side().compute()
                        best = min(best, time.perf_counter() - t0)
                    out.append(best)
            a, b = statistics.median(tt), statistics.median(tn)
            print(f"{name:<11}{a:>10.3f}{b:>14.3f}{b / a:>8.2f}x")


if __name__ == "__main__":
    main()
