"""trueno on dask vs dask's own numpy expressions, same run, on a LocalCluster (issue 13).

    python benches/dask_ops.py [--mb 256] [--rounds 3] [--workers 2] [--ops sum,norm_l2]
                               [--no-trace] [--no-scaling] [--tree-scalar]

Three tables, all on the same float32 data (``--mb`` MB, 1024 columns, 16 row chunks):

1. trueno on dask vs dask's numpy expressions (softmax, gelu, layer_norm, sum, norm_l2) on
   ``--workers`` workers x 1 thread;
2. tracing on (inside ``trueno.trace.capture()``: every worker records its spans) vs off,
   same cluster, and what one capture's start and end (the workers' spans gathered) cost
   apart from the ops, "capture ms" (``--no-trace`` skips it);
3. 1 worker vs ``--workers`` workers, same data and chunks, trueno and dask's numpy
   expressions (the latter: what the host's cores and memory let any per-chunk code gain
   from a second worker); both clusters stay up and the rounds alternate between them
   (``--no-scaling`` skips it).

Data is generated on the workers and persisted; each op's result is reduced to a scalar on
the workers (only that comes back), by one flat ``sum`` over the 16 chunks on both sides
(``--tree-scalar``: dask's default 4-level tree, as before 2026-12-06; each level adds a
scheduler round trip and a transfer to both sides' times). The first line printed is the
per-``compute()`` floor: a graph of 16 no-op chunk tasks reduced the same way. Rounds
interleave the sides; best of 2 calls per round, median over rounds. The trueno worker
plugin sizes each worker's pool (pool x threads x workers on the host <= cores) and keeps
BLAS at 1 thread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

COLS = 1024
CHUNKS = 16


def np_softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_gelu(a):
    return 0.5 * a * (1 + np.tanh(np.float32(0.7978845608) * (a + 0.044715 * a**3)))


def np_layer_norm(a):
    m = a.mean(axis=-1, keepdims=True)
    return (a - m) / np.sqrt(a.var(axis=-1, keepdims=True) + np.float32(1e-5))


SPLIT: dict | None = {0: CHUNKS, 1: 2}  # the bench's scalar: one flat sum (None: dask's tree)


def scalar(y):
    """The bench's reduction of an op's output to a scalar on the workers (same both sides)."""
    return y.sum(split_every=SPLIT)


def cases(x, names: str) -> dict:
    """op -> (trueno on dask, dask's numpy expression), each reduced to a scalar."""
    import dask.array as da

    import trueno

    out = {
        "softmax": (
            lambda: scalar(trueno.softmax(x)),
            lambda: scalar(x.map_blocks(np_softmax)),
        ),
        "gelu": (lambda: scalar(trueno.gelu(x)), lambda: scalar(x.map_blocks(np_gelu))),
        "layer_norm": (
            lambda: scalar(trueno.layer_norm(x)),
            lambda: scalar(x.map_blocks(np_layer_norm)),
        ),
        "sum": (lambda: trueno.sum(x), lambda: x.sum()),
        "norm_l2": (lambda: trueno.norm_l2(x), lambda: da.sqrt((x * x).sum())),
    }
    if names:
        out = {k: v for k, v in out.items() if k in names.split(",")}
    return out


def best_of_2(side) -> float:
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        side().compute()
        best = min(best, time.perf_counter() - t0)
    return best


def cluster(workers: int, mb: int, pool: int | None = None):
    """A LocalCluster of ``workers`` x 1 thread with the plugin, and the persisted data;
    ``pool`` fixes trueno's pool per worker (TRUENO_NUM_THREADS in the workers)."""
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    import trueno.dask

    rows = mb * (1 << 20) // 4 // COLS
    env = {"TRUENO_NUM_THREADS": str(pool)} if pool else None
    lc = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, env=env)  # fmt: skip
    client = Client(lc)
    trueno.dask.register(client, warm=False)
    x = da.random.default_rng(0).standard_normal((rows, COLS), chunks=(rows // CHUNKS, COLS))
    x = x.astype(np.float32).persist()
    wait(x)
    return lc, client, x


def _noop(b):
    return b[:1, :1]


def floor(x, rounds: int) -> float:
    """Seconds per compute() of 16 trivial chunk tasks reduced to a scalar as the ops are:
    the scheduling and transfer cost both sides pay on every op."""
    side = lambda: scalar(x.map_blocks(_noop, chunks=(1, 1)))  # noqa: E731
    side().compute()
    return statistics.median(best_of_2(side) for _ in range(rounds))


def measure(x, ops: str, rounds: int, trace: bool) -> dict:
    """op -> {"trueno", "numpy", "traced"} medians of best-of-2 seconds."""
    import trueno

    table = cases(x, ops)
    for f, g in table.values():  # warm: JIT in the workers
        f().compute(), g().compute()
    out = {}
    for name, (f, g) in table.items():
        tt, tn, tr, tc = [], [], [], []
        for r in range(rounds):
            # traced and untraced alternate which goes first (after the previous round's
            # numpy calls); the capture's start and its gathering at exit are timed apart
            for side in ("off", "on") if r % 2 == 0 or not trace else ("on", "off"):
                if side == "off":
                    tt.append(best_of_2(f))
                elif trace:
                    t0 = time.perf_counter()
                    cap = trueno.trace.capture()  # the workers record; gathered at exit
                    cap.__enter__()
                    t1 = time.perf_counter()
                    try:
                        tr.append(best_of_2(f))
                    finally:
                        t2 = time.perf_counter()
                        cap.__exit__(None, None, None)
                        tc.append(t1 - t0 + time.perf_counter() - t2)
            tn.append(best_of_2(g))
        out[name] = {
            "trueno": statistics.median(tt),
            "numpy": statistics.median(tn),
            "traced": statistics.median(tr) if tr else None,
            "capture": statistics.median(tc) if tc else None,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ops", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--no-trace", action="store_true", help="skip the tracing-on table")
    ap.add_argument("--no-scaling", action="store_true", help="skip the 1-worker run")
    ap.add_argument(
        "--tree-scalar", action="store_true", help="reduce to the scalar by dask's default tree"
    )
    args = ap.parse_args()
    if args.tree_scalar:
        global SPLIT
        SPLIT = None

    rows = args.mb * (1 << 20) // 4 // COLS
    lc, client, x = cluster(args.workers, args.mb)
    try:
        fixed = floor(x, args.rounds)
        res = measure(x, args.ops, args.rounds, not args.no_trace)
    finally:
        client.close()
        lc.close()
    print(f"{args.mb} MB float32 ({rows}x{COLS}, {CHUNKS} chunks), "
          f"{args.workers} workers x 1 thread")  # fmt: skip
    how = "dask's default tree" if args.tree_scalar else "one flat sum"
    print(f"per-compute() floor (16 no-op chunk tasks, scalar by {how}): {fixed * 1e3:.1f} ms")
    print(f"{'op':<11}{'trueno s':>10}{'dask/numpy s':>14}{'speedup':>9}", end="")
    print(f"{'traced s':>10}{'trace cost':>11}{'capture ms':>11}" if not args.no_trace else "")
    for name, r in res.items():
        line = f"{name:<11}{r['trueno']:>10.3f}{r['numpy']:>14.3f}{r['numpy'] / r['trueno']:>8.2f}x"
        if r["traced"] is not None:
            line += f"{r['traced']:>10.3f}{(r['traced'] / r['trueno'] - 1) * 100:>10.1f}%"
            line += f"{r['capture'] * 1e3:>11.1f}"
        print(line)
    if args.no_scaling or args.workers == 1:
        return
    from trueno.dask.plugin import pool_size

    pool = pool_size(1, args.workers)  # each worker as strong as in the N-worker run
    one, many = cluster(1, args.mb, pool), cluster(args.workers, args.mb)
    try:
        res = scaling(one, many, args.ops, args.rounds)
    finally:
        for lc, client, _ in (one, many):
            client.close()
            lc.close()
    print(f"\n1 worker vs {args.workers} workers (same data and chunks, trueno pool {pool} per "
          "worker in both; both clusters up, rounds alternate between them); the dask/numpy "
          "columns are the physical reference (numpy per chunk, same graphs)")  # fmt: skip
    n = args.workers
    print(f"{'op':<11}{'1w trueno':>10}{f'{n}w trueno':>10}{'speedup':>9}"
          f"{'1w numpy':>10}{f'{n}w numpy':>10}{'speedup':>9}")  # fmt: skip
    for name, r in res.items():
        line = f"{name:<11}"
        for side in ("trueno", "numpy"):
            a, b = r[1][side], r[n][side]
            line += f"{a:>10.3f}{b:>10.3f}{a / b:>8.2f}x"
        print(line)


def scaling(one, many, ops: str, rounds: int) -> dict:
    """op -> {workers: {"trueno", "numpy"}} medians of best-of-2 seconds, the two clusters'
    calls alternating within each round (the host's load then weighs on both alike)."""
    sides = []
    for lc, client, x in (one, many):
        with client.as_current():
            table = cases(x, ops)
            for f, g in table.values():  # warm: JIT in the workers
                f().compute(), g().compute()
        sides.append((len(lc.workers), client, table))
    out: dict = {}
    for name in sides[0][2]:
        times: dict = {(w, k): [] for w, _, _ in sides for k in ("trueno", "numpy")}
        for r in range(rounds):
            for w, client, table in sides if r % 2 == 0 else sides[::-1]:
                f, g = table[name]
                with client.as_current():
                    times[w, "trueno"].append(best_of_2(f))
                    times[w, "numpy"].append(best_of_2(g))
        out[name] = {
            w: {k: statistics.median(times[w, k]) for k in ("trueno", "numpy")} for w, _, _ in sides
        }
    return out


if __name__ == "__main__":
    main()
