"""Prefill attention alone: ``attend_chunk`` on one layer's chunk, GFLOP/s against BLAS sgemm.

    python benches/attention_prefill.py [--shapes smollm2,gemma3] [--starts 0,1024,3000]
                                        [--chunk 512] [--rounds 5] [--caches f16,bf16]

A chunk of ``--chunk`` queries at positions start.. attends over a KV cache of each type in
``--caches`` (interleaved round by round; the last column is the speed against the first)
holding start + chunk positions (SmolLM2-135M: 3 KV heads, 3 query heads each, head_dim 64;
gemma-3-270m: 1 KV head, 4 query heads, head_dim 256; its global layers, no window). The
FLOPs are 4 x head_dim per (query head, key seen): the two products, not the softmax. The
ceiling is numpy's float32 matmul of 1024 x 1024 matrices on the same threads (the FMA rate
BLAS reaches here), taken before and after the kernel's cells (not between: OpenBLAS's
threads spin after a call and slow numba's). A cell is the median over rounds of the best of
3 calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import print_table  # noqa: E402

from trueno.floats import f32_to_bf16  # noqa: E402
from trueno.llm import prefill_attention  # noqa: E402

SHAPES = {"smollm2": (3, 3, 64), "gemma3": (1, 4, 256)}  # (KV heads, groups, head_dim)


def _best(fn, calls: int = 3) -> float:
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _sgemm(a, b, rounds: int) -> float:
    """GFLOP/s of a @ b, median of ``rounds`` best-of-3 (then a pause: BLAS's threads spin a
    while after a call, and would take the cores from numba's)."""
    t = statistics.median(_best(lambda: a @ b) for _ in range(rounds))
    time.sleep(0.2)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / t / 1e9


def _cache_bits(x: np.ndarray, cache_type: str) -> np.ndarray:
    """float32 cache entries as a ``cache_type`` cache holds them (KVCache's dtypes)."""
    if cache_type == "f16":
        return x.astype(np.float16).view(np.uint16)
    if cache_type == "bf16":
        return f32_to_bf16(x).view(np.int16)
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--starts", default="0,1024,3000", help="positions before the chunk")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--caches", default="f16,bf16", help="KV cache types, the first the base")
    args = ap.parse_args(argv)
    caches = args.caches.split(",")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    ceiling = [_sgemm(a, b, args.rounds)]
    rows: list[list] = []
    for shape in args.shapes.split(","):
        n_kv, groups, hd = SHAPES[shape]
        for start in (int(s) for s in args.starts.split(",")):
            T, ctx = args.chunk, start + args.chunk
            k = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
            v = rng.standard_normal((n_kv, ctx, hd)).astype(np.float32)
            q = rng.standard_normal((T, n_kv * groups * hd)).astype(np.float32)
            out = np.empty_like(q)
            scale = 1 / np.sqrt(hd)
            calls = {}
            for ct in caches:
                kc, vc = (_cache_bits(x, ct) for x in (k, v))

                def attend(q=q, k=kc, v=vc, out=out, start=start, groups=groups, scale=scale):
                    prefill_attention.attend_chunk(out, q, k, v, start, 0, scale, groups)

                attend()
                calls[ct] = attend
            keys = sum(start + t + 1 for t in range(T))
            flops = 4 * hd * n_kv * groups * keys
            times: dict[str, list[float]] = {ct: [] for ct in caches}
            for _ in range(args.rounds):  # interleaved: each round times every cache type
                for ct, attend in calls.items():
                    times[ct].append(_best(attend))
            for ct in caches:
                t_k = statistics.median(times[ct])
                vs = statistics.median(times[caches[0]]) / t_k
                rows.append([shape, start, T, ct, f"{t_k * 1e3:.2f}", flops / t_k / 1e9,
                             f"{vs:.2f}x"])  # fmt: skip
    ceiling.append(_sgemm(a, b, args.rounds))
    gf_b = statistics.median(ceiling)
    for row in rows:
        row[5] = f"{row[5]:.0f} ({row[5] / gf_b:.2f} of sgemm)"
    print(
        f"sgemm (numpy float32 1024 x 1024 x 1024, same threads) at start / end: "
        f"{ceiling[0]:.0f} / {ceiling[1]:.0f} GFLOP/s; ratios use their median"
    )
    print_table(["shape", "start", "queries", "cache", "ms", "GFLOP/s", f"vs {caches[0]}"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
