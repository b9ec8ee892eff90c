"""Decode attention alone: ``attend_gqa``'s kernel over one layer's KV cache, GB/s of K+V read.

    python benches/attention_decode.py [--against REF] [--n 1500,3500] [--repeat 7]

Shapes: SmolLM2-135M (3 KV heads, 3 query heads each, head_dim 64) and gemma-3-270m (1 KV
head, 4 query heads, head_dim 256); f16 (uint16 bits) and f32 caches; 1 thread
(``attend_serial``) and 2 threads (``attend_threaded`` with ``split_positions``' slices,
what ``attend_gqa`` runs on 2 threads); the cache resident in L3 (the same cache every call)
or from DRAM (calls rotate over distinct caches, ``--dram-mb`` of them in all). Cells are the
median over rounds of each round's mean per call, wall time and the process's CPU time (on a
loaded host CPU time shows the instruction cost; for 2 threads it is both threads' sum).

``--against REF`` times ``trueno/llm/attention.py`` as of the git ref REF (e.g. ``main``)
side by side, interleaved round by round, and adds the ratio old / new of the wall times."""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import print_table  # noqa: E402

from trueno.llm import attention  # noqa: E402

SHAPES = {"smollm2": (3, 3, 64), "gemma3": (1, 4, 256)}  # (KV heads, groups, head_dim)


def _module_at(ref: str):
    """trueno/llm/attention.py as of git ``ref``, imported as a separate module."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = subprocess.run(["git", "show", f"{ref}:trueno/llm/attention.py"], cwd=root,
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    folder = os.path.join(tempfile.gettempdir(), f"trueno_attention_{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "attention_" + "".join(c if c.isalnum() else "_" for c in ref))
    path += ".py"
    if not os.path.exists(path) or open(path).read() != src:
        with open(path, "w") as f:
            f.write(src)
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # numba's cache finds the module of a cached kernel by name
    spec.loader.exec_module(mod)
    return mod


def _caches(rng, n_kv, n, hd, half, count):
    out = []
    for _ in range(count):
        k = rng.standard_normal((n_kv, n, hd)).astype(np.float32)
        v = rng.standard_normal((n_kv, n, hd)).astype(np.float32)
        if half:
            k, v = k.astype(np.float16).view(np.uint16), v.astype(np.float16).view(np.uint16)
        out.append((k, v))
    return out


def _caller(mod, threads, out, q, n, groups):
    scale = 1 / np.sqrt(q.shape[1])
    if threads == 1:
        return lambda k, v: mod.attend_serial(out, q, k, v, 0, n, scale, groups, 0.0)
    parts = mod.split_positions(n, q.shape[0] // groups, threads)
    return lambda k, v: mod.attend_threaded(out, q, k, v, 0, n, scale, groups, parts, 0.0)


def _time(fns, caches, repeat, calls):
    """Per fn: (median wall s, median CPU s) per call; fns alternate round by round."""
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    for fn in fns:
        for k, v in caches:
            fn(k, v)
    gc.disable()
    try:
        for _ in range(repeat):
            for i, fn in enumerate(fns):
                c0, t0 = time.process_time(), time.perf_counter()
                for c in range(calls):
                    k, v = caches[c % len(caches)]
                    fn(k, v)
                wall[i].append((time.perf_counter() - t0) / calls)
                cpu[i].append((time.process_time() - c0) / calls)
    finally:
        gc.enable()
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(wall, cpu, strict=True)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", help="git ref whose attention.py to time side by side")
    ap.add_argument("--n", default="1500,3500", help="cache positions (comma list)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma list of " + "/".join(SHAPES))
    ap.add_argument("--threads", default="1,2", help="comma list of 1 and 2")
    ap.add_argument("--dtypes", default="f16,f32")
    ap.add_argument("--where", default="L3,DRAM", help="cache residency: L3, DRAM or both")
    ap.add_argument("--dram-mb", type=int, default=64, help="bytes of distinct caches for DRAM")
    ap.add_argument("--repeat", type=int, default=7, help="rounds per cell")
    ap.add_argument("--ms", type=float, default=15.0, help="about this much time per round")
    args = ap.parse_args(argv)
    sides = [("new", attention)]
    if args.against:
        sides.insert(0, (args.against, _module_at(args.against)))
    rng = np.random.default_rng(0)
    rows = []
    for shape in args.shapes.split(","):
        n_kv, groups, hd = SHAPES[shape]
        for n in (int(x) for x in args.n.split(",")):
            for dtype in args.dtypes.split(","):
                half = dtype == "f16"
                nbytes = 2 * n_kv * n * hd * (2 if half else 4)
                q = rng.standard_normal((n_kv * groups, hd)).astype(np.float32)
                for where in args.where.split(","):
                    count = 1 if where == "L3" else max(2, -(-args.dram_mb * 2**20 // nbytes))
                    caches = _caches(rng, n_kv, n, hd, half, count)
                    for threads in (int(x) for x in args.threads.split(",")):
                        outs = [np.empty_like(q) for _ in sides]
                        fns = [_caller(mod, threads, o, q, n, groups)
                               for (_, mod), o in zip(sides, outs, strict=True)]  # fmt: skip
                        t0 = time.perf_counter()
                        fns[-1](*caches[0])
                        once = time.perf_counter() - t0
                        calls = max(count, int(args.ms * 1e-3 / max(once, 1e-7)))
                        res = _time(fns, caches, args.repeat, calls)
                        if len(outs) > 1:
                            np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)
                        for (name, _), (w, c) in zip(sides, res, strict=True):
                            ratio = f"{res[0][0] / w:.2f}x" if len(sides) > 1 else ""
                            speed = [f"{w * 1e6:.0f}", f"{nbytes / w / 1e9:.1f}", f"{c * 1e6:.0f}"]
                            rows.append([shape, dtype, n, threads, where, name, *speed, ratio])
    head = ["shape", "cache", "n", "threads", "from", "side", "wall us", "GB/s", "cpu us"]
    print_table(head + ["old/new"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
