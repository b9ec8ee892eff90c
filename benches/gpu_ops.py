"""GPU benchmark: op parity, CPU<->GPU crossovers, quantized matvec bandwidth, torch baseline.

    python benches/gpu_ops.py [--quick]

1. parity: every cupy kernel against the numpy reference at the op's declared tolerance;
2. crossovers: per threshold class, host time (trueno AUTO on the CPU) vs GPU time for host
   data (copy in + op + copy out, what AUTO would pay) over sizes 2^10..2^24; prints the
   smallest size from which the GPU wins at every larger size: the values to write into
   ``dispatch.GPU_THRESHOLDS`` (None = the GPU never won);
3. quantized matvec GB/s (weight bytes / kernel time) for Q4_0, Q5_0, Q8_0, Q4_K, Q6_K against
   the card's device-to-device copy bandwidth measured in the same run;
4. if torch with CUDA is importable: the same matvecs with dequantized f16 weights in torch,
   and a decode-step bound (all weight matvecs of a model-shaped layer stack, tok/s).

Exits 0 with a message when there is no GPU (cupy missing or no device).
"""

# ruff: noqa: B023  (each timed closure runs inside the loop iteration that defines it)
from __future__ import annotations

import argparse
import sys
from time import perf_counter

import numpy as np

# model shapes for the decode-step bound: (name, d_model, d_ff, layers, vocab, q_dim, kv_dim)
MODELS = [
    ("gemma3-270m-like", 640, 2048, 18, 262144, 1024, 256),
    ("qwen2.5-0.5b-like", 896, 4864, 24, 151936, 896, 128),
]
CLASS_OPS = {
    "elementwise": "add",
    "transcendental": "gelu",
    "reduction": "sum",
    "rowwise": "softmax",
    "stats": "mean",
    "matrix": "matmul",
}


def gpu_time(fn, repeat: int) -> float:
    """Median seconds per call of ``fn`` on the GPU (CUDA events via cupyx.profiler)."""
    from cupyx.profiler import benchmark

    res = benchmark(fn, n_repeat=repeat, n_warmup=max(2, repeat // 10))
    return float(np.median(res.gpu_times[0]))


def wall_time(fn, repeat: int) -> float:
    """Median wall seconds per call (synchronous calls: numpy, or GPU with copies back)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = perf_counter()
        fn()
        times.append(perf_counter() - t0)
    return float(np.median(times))


def parity() -> list[tuple[str, float, float, bool]]:
    from trueno.backends import cupy_backend, numpy_backend
    from trueno.device import HostFallback, to_device, to_host
    from trueno.opspec import OPS

    rng = np.random.default_rng(0)
    rows = []
    for name, fn in sorted(dict.items(cupy_backend.KERNELS)):
        if isinstance(fn, HostFallback) or name not in OPS:
            continue
        x = rng.standard_normal((64, 1000)).astype(np.float32)
        y = rng.standard_normal((64, 1000)).astype(np.float32)
        if name in ("sqrt", "ln", "log2", "log10", "pow", "acosh"):
            x = np.abs(x) + 1.0
        if name in ("asin", "acos", "atanh"):
            x = np.tanh(x) * 0.99
        if name in ("matmul",):
            y = y.T.copy()
        if name in ("matvec",):
            y = y[0]
        if name == "vecmat":
            x, y = x[0], y.T.copy()
        binary = name in (
            "add",
            "sub",
            "mul",
            "div",
            "minimum",
            "maximum",
            "copysign",
            "pow",
            "dot",
            "matmul",
            "matvec",
            "vecmat",
        )
        if name == "dot":
            x, y = x.ravel(), y.ravel()
        args = (x, y) if binary else (x,)
        with np.errstate(all="ignore"):
            want = np.asarray(numpy_backend.KERNELS[name](*args), dtype=np.float64)
        got = np.asarray(to_host(fn(*(to_device(a) for a in args))), dtype=np.float64)
        spec = OPS[name]
        err = np.abs(got - want)
        ok = bool(
            np.all(
                (err <= spec.atol + max(spec.rtol, 2e-6) * np.abs(want))
                | (np.isnan(got) & np.isnan(want))
            )
        )
        rel = float(np.nanmax(err / np.maximum(np.abs(want), 1e-30))) if err.size else 0.0
        rows.append((name, rel, spec.rtol, ok))
    return rows


def crossovers(quick: bool) -> dict[str, tuple[int | None, list]]:
    import trueno
    from trueno.backends import cupy_backend
    from trueno.device import synchronize, to_device, to_host

    k = cupy_backend.KERNELS
    out = {}
    top = 22 if quick else 24
    for kind, op in CLASS_OPS.items():
        host_fn = getattr(trueno, op)
        table = []
        for p in range(10, top + 1, 2):
            n = 1 << p
            if kind == "matrix":
                m = int(round(n**0.5))
                a = np.random.default_rng(p).standard_normal((m, m)).astype(np.float32)
                args = (a, a)
            elif kind == "rowwise":
                args = (
                    np.random.default_rng(p).standard_normal((n // 1024, 1024)).astype(np.float32),
                )
            elif op == "add":
                a = np.random.default_rng(p).standard_normal(n).astype(np.float32)
                args = (a, a)
            else:
                args = (np.random.default_rng(p).standard_normal(n).astype(np.float32),)
            repeat = 5 if n >= 1 << 20 else 30
            t_host = wall_time(lambda: host_fn(*args), repeat)

            def on_gpu():
                out = k[op](*(to_device(a) for a in args))
                synchronize()
                return to_host(out)

            t_gpu = wall_time(on_gpu, repeat)
            table.append((n, t_host, t_gpu))
        threshold = None
        for i in range(len(table)):
            if all(t_gpu < t_host for _, t_host, t_gpu in table[i:]):
                threshold = table[i][0]
                break
        out[kind] = (threshold, table)
    return out


def copy_bandwidth(cp, nbytes: int = 1 << 30) -> float:
    """Device-to-device copy GB/s (read + write bytes) of an ``nbytes`` buffer."""
    src = cp.empty(nbytes, dtype=cp.uint8)
    dst = cp.empty_like(src)
    t = gpu_time(lambda: dst.__setitem__(slice(None), src), 20)
    return 2 * nbytes / t / 1e9


def random_blocks(t, rows: int, cols: int, rng) -> np.ndarray:
    from trueno.gguf.constants import BLOCK_LAYOUT, GGMLType

    f16 = {
        GGMLType.Q4_0: (0,),
        GGMLType.Q5_0: (0,),
        GGMLType.Q8_0: (0,),
        GGMLType.Q4_K: (0, 2),
        GGMLType.Q6_K: (208,),
    }
    elems, nbytes = BLOCK_LAYOUT[t]
    blocks = rng.integers(0, 256, (rows * cols // elems, nbytes), dtype=np.uint8)
    for off in f16[t]:
        blocks[:, off : off + 2] = (
            rng.uniform(-0.05, 0.05, len(blocks)).astype(np.float16).view(np.uint8).reshape(-1, 2)
        )
    return blocks.reshape(rows, -1)


def quant_bandwidth(cp, quick: bool, torch=None) -> list[tuple]:
    from gguf import GGMLQuantizationType, quants

    from trueno.quant.gpu import KERNEL_OF, prepare_gpu

    shapes = [(4096, 4096), (11008, 4096)] if not quick else [(4096, 4096)]
    rows_out = []
    rng = np.random.default_rng(0)
    for t in KERNEL_OF:
        for rows, cols in shapes:
            w = random_blocks(t, rows, cols, rng)
            mat = prepare_gpu(w, t, (rows, cols))
            x = cp.asarray(rng.standard_normal(cols).astype(np.float32))
            y = cp.empty(rows, dtype=cp.float32)
            sec = gpu_time(lambda: mat.matvec(x, out=y), 50)
            torch_sec = None
            if torch is not None:
                dense = quants.dequantize(w, GGMLQuantizationType(int(t)))
                wt = torch.from_numpy(dense).to("cuda", torch.float16)
                xt = torch.from_numpy(cp.asnumpy(x)).to("cuda", torch.float16)
                torch_sec = gpu_time(lambda: torch.mv(wt, xt), 50)
                del wt
            rows_out.append((t.name, rows, cols, mat.nbytes, sec, torch_sec))
    return rows_out


def decode_bound(cp, torch=None) -> list[tuple]:
    """tok/s if a decode step were only its weight matvecs (Q4_K_M-like: Q4_K, ffn_down and
    output Q6_K; Q5_0 / Q8_0 where a row is not whole 256-value super-blocks)."""
    from trueno.gguf.constants import GGMLType
    from trueno.quant.gpu import prepare_gpu

    def kind(t, cols):  # rows that are not whole super-blocks: llama.cpp's Q4_K_M fallbacks
        return (
            t
            if cols % 256 == 0
            else {GGMLType.Q4_K: GGMLType.Q5_0, GGMLType.Q6_K: GGMLType.Q8_0}[t]
        )

    rng = np.random.default_rng(1)
    out = []
    for name, d, ff, layers, vocab, qd, kvd in MODELS:
        per_layer = [
            (qd, d, GGMLType.Q4_K),
            (kvd, d, GGMLType.Q4_K),
            (kvd, d, GGMLType.Q4_K),
            (d, qd, GGMLType.Q4_K),
            (ff, d, GGMLType.Q4_K),
            (ff, d, GGMLType.Q4_K),
            (d, ff, GGMLType.Q6_K),
        ]
        per_layer = [(r, c, kind(t, c)) for r, c, t in per_layer]
        mats = {
            (r, c, t): prepare_gpu(random_blocks(t, r, c, rng), t, (r, c)) for r, c, t in per_layer
        }
        t_head = kind(GGMLType.Q6_K, d)
        head = prepare_gpu(random_blocks(t_head, vocab, d, rng), t_head, (vocab, d))
        xs = {c: cp.asarray(rng.standard_normal(c).astype(np.float32)) for c in (d, qd, ff)}

        def step():
            for _ in range(layers):
                for r, c, t in per_layer:
                    mats[(r, c, t)].matvec(xs[c])
            head.matvec(xs[d])

        sec = gpu_time(step, 10)
        torch_tps = None
        if torch is not None:
            wts = {
                key: torch.randn(key[0], key[1], device="cuda", dtype=torch.float16) for key in mats
            }
            wh = torch.randn(vocab, d, device="cuda", dtype=torch.float16)
            xt = {c: torch.randn(c, device="cuda", dtype=torch.float16) for c in xs}

            def torch_step():
                for _ in range(layers):
                    for r, c, t in per_layer:
                        torch.mv(wts[(r, c, t)], xt[c])
                torch.mv(wh, xt[d])

            torch_tps = 1.0 / gpu_time(torch_step, 10)
        out.append((name, 1.0 / sec, torch_tps))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and shapes")
    args = ap.parse_args(argv)

    from trueno.backends import cupy_backend

    if not cupy_backend.available():
        print(
            f"gpu_ops: no GPU here ({cupy_backend.why_unavailable()}); nothing measured. "
            "Run on a machine with an NVIDIA GPU and `pip install 'trueno[gpu]'`."
        )
        return 0
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    print(
        f"device: {props['name'].decode()}  ({props['totalGlobalMem'] / 2**30:.0f} GiB), "
        f"cupy {cp.__version__}"
    )
    try:
        import torch

        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None

    print("\n== parity vs numpy (float32) ==")
    bad = 0
    for name, rel, rtol, ok in parity():
        bad += not ok
        print(f"{name:16s} max rel err {rel:9.2e}  (rtol {rtol:.0e})  {'ok' if ok else 'FAIL'}")

    print("\n== CPU<->GPU crossover (host data: copy in + op + copy out) ==")
    suggested = {}
    for kind, (threshold, table) in crossovers(args.quick).items():
        suggested[kind] = threshold
        print(f"-- {kind} ({CLASS_OPS[kind]})")
        for n, th, tg in table:
            print(
                f"   n={n:>10d}  host {th * 1e6:10.1f} us  gpu {tg * 1e6:10.1f} us  {th / tg:6.2f}x"
            )
    print(f"suggested GPU_THRESHOLDS = {suggested}")

    print("\n== quantized matvec bandwidth ==")
    copy_bw = copy_bandwidth(cp)
    print(f"device-to-device copy: {copy_bw:.0f} GB/s")
    for name, rows, cols, nbytes, sec, tsec in quant_bandwidth(cp, args.quick, torch):
        gbs = nbytes / sec / 1e9
        extra = f"  torch f16 mv {tsec * 1e6:8.1f} us" if tsec else ""
        print(
            f"{name:5s} {rows:>6d}x{cols:<6d} {sec * 1e6:8.1f} us  {gbs:7.1f} GB/s  "
            f"{100 * gbs / copy_bw:5.1f}% of copy{extra}"
        )

    print("\n== decode-step bound (weight matvecs only, not a full forward) ==")
    for name, tps, torch_tps in decode_bound(cp, torch):
        extra = f"  torch f16: {torch_tps:8.1f} tok/s" if torch_tps else "  (torch CUDA absent)"
        print(f"{name:20s} trueno: {tps:8.1f} tok/s{extra}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
