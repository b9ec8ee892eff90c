"""int8 prefill matmul (trueno/quant/int8gemm.py, int8mm.py) against dequantize + sgemm.

``--matmul`` (default part 1): per GGML type, layer shape and T tokens, the time of
``PreparedWeight.matmul`` by dequantize + sgemm, by the int8 row-dot kernel (int8mm's
``rows_matmul_into``, what ``int8mm.TOKEN_RANGE`` is read from) and by the register-blocked
int8 GEMM (int8gemm), interleaved round by round (median of rounds), with the GEMM's GFLOP/s
and CPU time (process time of the best call: both threads); where the CPU has AMX, the GEMM on
AMX tiles (``TRUENO_QUANT_AMX=1``) is a fourth side, as a ratio to the VNNI GEMM.
``--gemma3``: gemma-3-270m's matrices with their types (fused q+k, v, o, fused gate+up, down)
instead of the 1B shapes.

``--prefill`` (part 2): prefill tok/s of a 128-token prompt with the int8 matmul off, by the
row dots (``int8mm.GEMM = False``) and by the GEMM,
interleaved, on the two registry models and on a Llama-3.2-1B-shaped stand-in (dim 2048,
16 layers, 32 query / 8 KV heads, FFN 8192, SmolLM2's vocabulary, random Q4_0 weights written
by the GGUF writer to a temp folder, ~580 MiB, never committed), beside
``llama-bench -p 128 -n 0 -t 2`` on the same files when the llama.cpp build is present.

    python benches/prefill_matmul.py [--matmul] [--prefill] [--quick] [--threads 2]
        [--types Q4_0,Q8_0] [--tokens 16,128] [--gemma3] [--no-standin]
        [--standin-dir /tmp/trueno-1b]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from standins import standin  # noqa: E402

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
SHAPES = [(2048, 2048), (8192, 2048), (2048, 8192)]  # (rows, cols): 1B attn, ffn up, ffn down
GEMMA3 = [  # gemma-3-270m Q4_K_M: (type, rows, cols) of one layer's prefill matmuls
    ("Q5_0", 1280, 640),  # attn q + k, fused
    ("Q8_0", 256, 640),  # attn v
    ("Q4_K", 640, 1024),  # attn output
    ("Q5_0", 4096, 640),  # ffn gate + up, fused
    ("Q6_K", 640, 2048),  # ffn down
]
TOKENS = [16, 32, 64, 128]
LLAMA_BENCH = Path("/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench")


def interleaved(fns: dict, rounds: int, calls: int = 2, cpu: dict | None = None) -> dict:
    """Median over rounds of the best of ``calls`` timed calls, each side once per round;
    ``cpu`` (when given) gets the median process time of the same best calls."""
    for fn in fns.values():
        fn()
    runs = {k: [] for k in fns}
    cpus = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            best, best_cpu = float("inf"), float("inf")
            for _ in range(calls):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                best = min(best, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
            runs[k].append(best)
            cpus[k].append(best_cpu)
    if cpu is not None:
        cpu.update({k: statistics.median(v) for k, v in cpus.items()})
    return {k: statistics.median(v) for k, v in runs.items()}


def matmul_main(args) -> None:
    import numpy as np
    from _common import print_table

    from trueno.quant import amx, int8gemm, int8mm, prepare, prepared, quantize

    with_amx = amx.available()  # the GEMM's AMX tiles (TRUENO_QUANT_AMX=1) as another side
    os.environ["TRUENO_QUANT_AMX"] = "0"
    rng = np.random.default_rng(0)
    rows_out = []
    if args.gemma3:
        cases = [c for c in GEMMA3 if c[0] in args.types or args.types == TYPES]
    else:
        cases = [(t, rows, cols) for t in args.types for rows, cols in SHAPES]
    for t, rows, cols in cases:
        base = quantize(rng.standard_normal((256, cols)).astype(np.float32), t)
        reps = -(-rows // 256)
        blocks = np.ascontiguousarray(np.tile(base, (reps, 1))[:rows])
        p = prepare(blocks, t, (rows, cols))
        for n in args.tokens:
            xs = rng.standard_normal((n, cols)).astype(np.float32)
            out = np.empty((n, rows), np.float32)

            def sgemm(p=p, xs=xs):
                saved, int8mm.ENABLED = int8mm.ENABLED, False
                try:
                    with prepared.single_threaded_blas():  # as prefill calls it
                        p.matmul(xs)
                finally:
                    int8mm.ENABLED = saved

            def rows_int8(p=p, xs=xs, out=out):
                assert int8mm.rows_matmul_into(p, xs, out)

            def gemm(p=p, xs=xs, out=out):
                assert int8gemm.matmul_into(p, xs, out)

            def gemm_amx(p=p, xs=xs, out=out):
                os.environ["TRUENO_QUANT_AMX"] = "1"
                try:
                    assert int8gemm.matmul_into(p, xs, out)
                finally:
                    os.environ["TRUENO_QUANT_AMX"] = "0"

            fns = {"sgemm": sgemm, "rows": rows_int8, "gemm": gemm}
            if with_amx:
                fns["amx"] = gemm_amx
            cpu: dict = {}
            med = interleaved(fns, 3 if args.quick else 5, cpu=cpu)
            flops = 2 * n * rows * cols
            best_old = min(med["sgemm"], med["rows"])
            rows_out.append(
                [
                    t,
                    f"{rows}x{cols}",
                    str(n),
                    f"{med['sgemm'] * 1e3:.2f}",
                    f"{med['rows'] * 1e3:.2f}",
                    f"{med['gemm'] * 1e3:.2f}",
                    f"{flops / med['gemm'] / 1e9:.0f}",
                    f"{cpu['gemm'] * 1e3:.2f} / {cpu['rows'] * 1e3:.2f}",
                    f"{best_old / med['gemm']:.2f}x",
                    f"{med['gemm'] / med['amx']:.2f}x" if with_amx else "n/a",
                ]
            )
            print(" | ".join(rows_out[-1]), file=sys.stderr, flush=True)
    print(f"threads={args.threads}, median of interleaved rounds (best of 2 calls each)")
    head = ["type", "rows x cols", "T", "sgemm ms", "int8 rows ms", "int8 GEMM ms"]
    head += ["GEMM GFLOP/s", "CPU ms GEMM / rows", "GEMM vs best other", "AMX tiles vs VNNI"]
    print_table(head, rows_out)
    if not with_amx:
        print(f"AMX tiles not measured: {amx.missing()}")


def llama_bench(path: Path, threads: int) -> float | None:
    """llama.cpp's prompt tok/s for 128 tokens (``llama-bench -p 128 -n 0``), or None."""
    if not LLAMA_BENCH.exists():
        return None
    cmd = [str(LLAMA_BENCH), "-m", str(path), "-p", "128", "-n", "0", "-t", str(threads)]
    cmd += ["-r", "3", "-o", "json"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
        return float(json.loads(res.stdout)[0]["avg_ts"])
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError, OSError) as exc:
        print(f"llama-bench failed on {path.name}: {exc}", file=sys.stderr)
        return None


def prefill_main(args) -> None:
    from _common import print_table
    from gpu_inference import real_models

    from trueno.llm import Model
    from trueno.quant import int8mm

    models = {k: v for k, v in real_models().items() if v is not None}
    if not args.no_standin:
        models["Llama-3.2-1B stand-in Q4_0"] = standin("1b", Path(args.standin_dir))
    rows = []
    for name, path in models.items():
        model = Model.load(path, ctx_size=512, cache_type="f32")
        model.warmup()
        ids = [(7 * i + 3) % 1000 + 10 for i in range(128)]

        def run(on: bool, gemm: bool, model=model, ids=ids):
            int8mm.ENABLED, int8mm.GEMM = on, gemm
            model.reset()
            model.prefill(ids)

        sides = {
            "off": lambda: run(False, False),
            "rows": lambda: run(True, False),
            "gemm": lambda: run(True, True),
        }
        med = interleaved(sides, 3 if args.quick else 5, 1)
        int8mm.ENABLED, int8mm.GEMM = True, True
        off, old, on = (128 / med[k] for k in ("off", "rows", "gemm"))
        ref = llama_bench(path, args.threads)
        rows.append(
            [
                name,
                f"{off:.0f}",
                f"{old:.0f}",
                f"{on:.0f}",
                f"{on / max(off, old):.2f}x",
                f"{ref:.0f}" if ref else "n/a",
                f"{on / ref:.2f}x" if ref else "",
            ]
        )
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
        del model
    print(f"threads={args.threads}, prefill of 128 tokens, median of interleaved rounds")
    head = ["model", "sgemm tok/s", "int8 rows tok/s", "int8 GEMM tok/s", "GEMM / best other"]
    head += ["llama.cpp tok/s", "vs llama"]
    print_table(head, rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matmul", action="store_true", help="the per-type matmul table")
    ap.add_argument("--prefill", action="store_true", help="the model prefill table")
    ap.add_argument("--quick", action="store_true", help="fewer rounds and token counts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", type=lambda s: s.split(","), default=TYPES)
    ap.add_argument("--tokens", type=lambda s: [int(v) for v in s.split(",")], default=TOKENS)
    ap.add_argument("--gemma3", action="store_true", help="gemma-3-270m's matmuls (--matmul)")
    ap.add_argument("--no-standin", action="store_true", help="the registry models only")
    ap.add_argument("--standin-dir", default="/tmp/trueno-1b-standin")
    args = ap.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if not (args.matmul or args.prefill):
        args.matmul = True
    if args.matmul:
        matmul_main(args)
    if args.prefill:
        prefill_main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
