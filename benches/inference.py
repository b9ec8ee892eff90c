"""LLM inference speed for the two registry models: decode tok/s (64 tokens after a short
prompt), prefill tok/s (128-token prompt), warm time to first token and peak RSS, beside the
bandwidth floor (matrix bytes / BLAS sgemv read bandwidth measured in this run) and beside
llama.cpp (llama-cpp-python, f32 KV cache) on the same file in the same run when it is
installed, else llama.cpp's numbers from shared/testdata (another 2-core AVX2 machine).
Speeds are medians of 5 repetitions (1 with --quick).

With ``--depth``: the long-context table instead: decode tok/s of 64 tokens after 1,500 and
3,500 tokens of context (both sides; a reply's first tokens after a long prefill run slower
while the caches refill: 16 tokens read 10-20% below steady state here) and prefill tok/s
of a 3,500- vs a 512-token prompt, trueno with an f16, a bf16 and an f32 KV cache beside
llama.cpp with an f16 KV cache (its default), interleaved round by round
(median of rounds), and decode's share of the bandwidth floor counted over weights plus the
KV bytes one token reads. llama.cpp's side is its ``llama-bench`` binary when found
(``--llama-bench PATH``; default ``$TRUENO_LLAMA_CPP/build/bin/llama-bench``), one call per
row and round, as ``llama-bench -d DEPTH -ctk f16 -ctv f16 -p 0 -n N -t THREADS -r 1 -o json``
(prefill: ``-d 0 -p N -n 0``), its ``avg_ts`` parsed from the JSON; else llama-cpp-python.

    python benches/inference.py [--quick] [--threads N] [--depth] [--llama-bench PATH]
                                [--llama-bench-decode PATH] [--model GGUF ...] [--moe]
                                [--depths 1500,3500] [--rounds 3] [--cache-types f16,bf16,f32]
                                [--kernel-by-kernel]

``--depths``, ``--rounds`` and ``--cache-types`` set the depth table's rows, rounds and
trueno sides; ``--kernel-by-kernel`` adds the f16 side once more with decode's layer regions
off (``TRUENO_DECODE_REGIONS=0``: every kernel its own call), interleaved with the rest.

Without ``--depth``, ``--llama-bench`` puts that binary on llama.cpp's side of the main table
too (``-p 128 -n 0`` and ``-p 0 -n 64``, f16 KV cache, median of the repetitions) instead of
llama-cpp-python; ``--llama-bench-decode`` takes the decode column from a second build.

With ``--moe``: the mixture-of-experts row (``benches/moe.py``): decode of a tiny MoE stand-in
against a dense model with the same active parameters, each beside its bandwidth floor counted
over the bytes of the experts actually read.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, set_threads, sgemv_bandwidth_gbs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared/testdata/llamacpp/reference_outputs.json"
PROMPT = "The capital of France is"
LLAMA_CPP = Path(
    os.environ.get("TRUENO_LLAMA_CPP", "/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp")
)  # llama.cpp's source tree, as tests/llm/llm_archs.py finds it


def find_models(paths=None):
    """(name, llama.cpp reference name, path) of the registry models, or of ``paths``."""
    from trueno.llm.packaged import gemma3_path, smollm2_path

    if paths:
        return [(Path(p).stem, Path(p).stem, Path(p)) for p in paths]
    out = []
    for name, ref_name, find in (
        ("SmolLM2-135M Q4_1", "SmolLM2-135M-Instruct.Q4_1", smollm2_path),
        ("gemma-3-270m Q4_K_M", "gemma-3-270m-q4_k_m", lambda: gemma3_path(ROOT / "models")),
    ):
        path = find()
        if path is None:
            print(f"skip {name}: model package not installed", file=sys.stderr)
            continue
        out.append((name, ref_name, path))
    return out


def bench_model(path, n_decode: int, n_prefill: int, repeat: int) -> dict:
    from trueno.llm import Model, Sampler
    from trueno.llm.generate import generate_tokens

    t0 = time.perf_counter()
    model = Model.load(path, ctx_size=512, cache_type="f32")  # as llama.cpp's below
    model.warmup()
    tok = model.tokenizer
    ids = tok.encode(PROMPT, add_special=True, parse_special=True)
    first = next(iter(generate_tokens(model, ids, max_tokens=1, temperature=0)))
    ttft = time.perf_counter() - t0
    del first
    greedy = Sampler(temperature=0)
    decode, prefill = [], []
    for _ in range(repeat):
        gen = generate_tokens(model, ids, max_tokens=n_decode, sampler=greedy, stop_at_eog=False)
        list(gen)
        decode.append(gen.stats.decode_tok_s)
        long_prompt = (ids * (n_prefill // len(ids) + 1))[:n_prefill]
        model.reset()
        t = time.perf_counter()
        model.prefill(long_prompt)
        prefill.append(n_prefill / (time.perf_counter() - t))
    return {
        "decode": statistics.median(decode),
        "prefill": statistics.median(prefill),
        "ttft": ttft,
        "weight_bytes": model.weights.nbytes,
        "kv_bytes": model.state.cache.nbytes,
    }


def bench_llama_cpp(path, n_decode: int, n_prefill: int, repeat: int, threads: int):
    """llama.cpp (llama-cpp-python) on the same file in the same run, f32 KV cache, the same
    prompt; wall time of its eval calls. None when llama-cpp-python is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None
    llm = llama_cpp.Llama(
        str(path),
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=512,
        verbose=False,
        type_k=0,
        type_v=0,
    )  # GGML type 0 = F32 KV
    ids = llm.tokenize(PROMPT.encode(), add_bos=True)
    long_prompt = (ids * (n_prefill // len(ids) + 1))[:n_prefill]
    llm.reset()
    llm.eval(ids)  # warm up
    decode, prefill = [], []
    for _ in range(repeat):
        llm.reset()
        t = time.perf_counter()
        llm.eval(long_prompt)
        prefill.append(n_prefill / (time.perf_counter() - t))
        llm.reset()
        llm.eval(ids)
        token = ids[-1]
        t = time.perf_counter()
        for _ in range(n_decode):
            llm.eval([token])
            token = int(llm.scores[llm.n_tokens - 1].argmax())  # greedy, as ours
        decode.append(n_decode / (time.perf_counter() - t))
    return {"decode": statistics.median(decode), "prefill": statistics.median(prefill)}


DEPTHS = (1500, 3500)
DEPTH_PREFILL = (512, 3500)
DEPTH_CTX = 4096


def _depth_prompt(tok_ids, n: int) -> list[int]:
    return (tok_ids * (n // len(tok_ids) + 1))[:n]


class _TruenoDepth:
    def __init__(self, path, cache_type: str, regions: bool = True) -> None:
        # regions=False: decode kernel by kernel (the model builds its layer regions, none
        # with TRUENO_DECODE_REGIONS=0, at its first decode, in warmup below)
        saved = os.environ.get("TRUENO_DECODE_REGIONS")
        if not regions:
            os.environ["TRUENO_DECODE_REGIONS"] = "0"
        try:
            self._load(path, cache_type)
        finally:
            if saved is None:
                os.environ.pop("TRUENO_DECODE_REGIONS", None)
            else:
                os.environ["TRUENO_DECODE_REGIONS"] = saved

    def _load(self, path, cache_type: str) -> None:
        from trueno.llm import Model

        self.model = Model.load(path, ctx_size=DEPTH_CTX, cache_type=cache_type)
        self.model.warmup()
        self.ids = self.model.tokenizer.encode(PROMPT * 400, add_special=True)
        c = self.model.config
        self.kv_elem = 2 * c.n_kv_heads * c.head_dim * self.model.state.cache.itemsize
        self.windows = [c.layer_window(i) for i in range(c.n_layers)]
        # load what warmup() leaves for first use: a long prompt's path (dequantize + BLAS)
        # and the threaded decode attention (a deep cache), so no round times a kernel load
        self.decode(DEPTH_PREFILL[0], 2)

    def kv_bytes(self, depth: int) -> int:
        """KV bytes one decode token at ``depth`` reads (sliding-window layers: the window)."""
        return sum(self.kv_elem * (min(depth, w) if w > 0 else depth) for w in self.windows)

    def prefill(self, n: int) -> float:
        self.model.reset()
        t = time.perf_counter()
        self.model.prefill(_depth_prompt(self.ids, n))
        return n / (time.perf_counter() - t)

    def decode(self, depth: int, n: int) -> float:
        self.model.reset()
        self.model.prefill(_depth_prompt(self.ids, depth))
        t = time.perf_counter()
        for i in range(n):
            self.model.decode(self.ids[i % len(self.ids)])
        return n / (time.perf_counter() - t)


class _LlamaDepth:
    def __init__(self, path, threads: int) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(
            str(path), n_threads=threads, n_threads_batch=threads, n_ctx=DEPTH_CTX,
            n_batch=512, verbose=False, type_k=1, type_v=1,
        )  # fmt: skip  # GGML type 1 = F16 KV, llama.cpp's default
        self.ids = self.llm.tokenize((PROMPT * 400).encode(), add_bos=True)

    def prefill(self, n: int) -> float:
        self.llm.reset()
        t = time.perf_counter()
        self.llm.eval(_depth_prompt(self.ids, n))
        return n / (time.perf_counter() - t)

    def decode(self, depth: int, n: int) -> float:
        self.llm.reset()
        self.llm.eval(_depth_prompt(self.ids, depth))
        t = time.perf_counter()
        for i in range(n):
            self.llm.eval([self.ids[i % len(self.ids)]])
        return n / (time.perf_counter() - t)


class _LlamaBenchDepth:
    """llama.cpp's own ``llama-bench`` binary, one run per call (``-r 1``; it warms up first):
    its default settings but the f16 KV cache named explicitly, tok/s from its JSON."""

    def __init__(self, binary: Path, path, threads: int) -> None:
        self.binary, self.path, self.threads = binary, path, threads

    def run(self, depth: int, n_prompt: int, n_gen: int) -> float:
        cmd = [str(self.binary), "-m", str(self.path), "-d", str(depth), "-p", str(n_prompt),
               "-n", str(n_gen), "-ctk", "f16", "-ctv", "f16", "-t", str(self.threads),
               "-r", "1", "-o", "json"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
        return parse_llama_bench(proc.stdout, depth, n_prompt, n_gen)

    def prefill(self, n: int) -> float:
        return self.run(0, n, 0)

    def decode(self, depth: int, n: int) -> float:
        return self.run(depth, 0, n)


def bench_llama_bench(args, path, n_decode: int, n_prefill: int, repeat: int) -> dict:
    """llama-bench (``--llama-bench``) on the same file: prefill of ``n_prefill`` tokens and
    decode of ``n_decode``, medians of ``repeat`` runs; decode by ``--llama-bench-decode``
    when given (a build whose prompt path cannot run here, e.g. llama.cpp's native AMX build
    on a VM that faults on AMX prompts, still decodes)."""
    prompt = _LlamaBenchDepth(Path(args.llama_bench), path, args.threads)
    decode = _LlamaBenchDepth(Path(args.llama_bench_decode or args.llama_bench), path,
                              args.threads)  # fmt: skip
    return {
        "prefill": statistics.median(prompt.prefill(n_prefill) for _ in range(repeat)),
        "decode": statistics.median(decode.decode(0, n_decode) for _ in range(repeat)),
    }


def parse_llama_bench(text: str, depth: int, n_prompt: int, n_gen: int) -> float:
    """``avg_ts`` (tokens/s) of the test with these sizes in ``llama-bench -o json`` output."""
    for row in json.loads(text):
        if (row["n_depth"], row["n_prompt"], row["n_gen"]) == (depth, n_prompt, n_gen):
            return float(row["avg_ts"])
    raise ValueError(f"no llama-bench result for depth {depth}, pp {n_prompt}, tg {n_gen}")


def llama_side(path, args):
    """llama.cpp's side of the depth table: llama-bench if found, else llama-cpp-python."""
    binary = Path(args.llama_bench) if args.llama_bench else LLAMA_CPP / "build/bin/llama-bench"
    if binary.is_file() and os.access(binary, os.X_OK):
        return _LlamaBenchDepth(binary, path, args.threads)
    if args.llama_bench:
        raise SystemExit(f"--llama-bench {binary}: not an executable file")
    try:
        return _LlamaDepth(path, args.threads)
    except ImportError:
        print(f"skip llama.cpp: no {binary} and llama-cpp-python not installed", file=sys.stderr)
        return None


def depth_main(args, bw: float) -> int:
    n_decode, rounds = (8, 1) if args.quick else (64, args.rounds)
    depths = tuple(int(d) for d in args.depths.split(","))
    rows = []
    for name, _, path in find_models(args.model):
        sides = {f"trueno {ct}": _TruenoDepth(path, ct) for ct in args.cache_types.split(",")}
        if args.kernel_by_kernel:  # the same f16 model with decode's regions off (A/B)
            sides["trueno f16, kernel by kernel"] = _TruenoDepth(path, "f16", regions=False)
        llama = llama_side(path, args)
        if llama is not None:
            sides["llama.cpp f16"] = llama
            print(
                f"llama.cpp side: {getattr(llama, 'binary', 'llama-cpp-python')}", file=sys.stderr
            )
        runs = {(s, k): [] for s in sides for k in depths + tuple(f"p{n}" for n in DEPTH_PREFILL)}
        for _ in range(rounds):  # interleaved: each round runs every side once per row
            for depth in depths:
                for side, impl in sides.items():
                    runs[side, depth].append(impl.decode(depth, n_decode))
            for n in DEPTH_PREFILL:
                for side, impl in sides.items():
                    runs[side, f"p{n}"].append(impl.prefill(n))
        med = {key: statistics.median(v) for key, v in runs.items()}
        llama = "llama.cpp f16" if "llama.cpp f16" in sides else None
        weights = next(iter(sides.values())).model.weights.nbytes
        for side in sides:
            cells = [name, side]
            for depth in depths:
                tok_s = med[side, depth]
                cells.append(f"{tok_s:.1f}")
                if side.startswith("trueno"):
                    floor = bw * 1e9 / (weights + sides[side].kv_bytes(depth))
                    cells.append(f"{100 * tok_s / floor:.0f}%")
                else:
                    cells.append("")
                cells.append(f"{tok_s / med[llama, depth]:.2f}x" if llama else "")
            p512, p3500 = med[side, "p512"], med[side, "p3500"]
            cells += [f"{p512:.0f}", f"{p3500:.0f}", f"{p3500 / p512:.2f}"]
            rows.append(cells)
    print(
        f"threads={args.threads}  sgemv read bandwidth {bw:.1f} GB/s  ctx {DEPTH_CTX}, "
        f"decode {n_decode} tokens after the context, median of {rounds} interleaved rounds"
    )
    head = ["model", "side"]
    for depth in depths:
        head += [f"decode @{depth}", "of floor", "vs llama.cpp"]
    print_table(head + ["prefill 512 tok/s", "prefill 3500 tok/s", "3500/512"], rows)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repetition, 32 decode tokens")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", action="store_true", help="the long-context table")
    ap.add_argument("--depths", default=",".join(map(str, DEPTHS)), help="its context depths")
    ap.add_argument("--rounds", type=int, default=3, help="its interleaved rounds")
    ap.add_argument("--cache-types", default="f16,bf16,f32", help="its trueno KV cache sides")
    ap.add_argument(
        "--kernel-by-kernel",
        action="store_true",
        help="its f16 side again with decode's layer regions off (A/B)",
    )
    ap.add_argument("--llama-bench", help="llama.cpp's llama-bench binary (else llama-cpp-python)")
    ap.add_argument(
        "--llama-bench-decode", help="another llama-bench binary for the decode column only"
    )
    ap.add_argument(
        "--moe", action="store_true", help="the mixture-of-experts row (benches/moe.py's table)"
    )
    ap.add_argument(
        "--model", action="append", help="a GGUF file instead of the registry models (repeatable)"
    )
    args = ap.parse_args()
    if args.moe:  # a MoE stand-in vs a dense model with its active parameters, floor over
        import moe  # the experts actually read

        return moe.main(["--threads", str(args.threads), *(["--quick"] if args.quick else [])])
    set_threads(args.threads)
    ref = json.loads(REFERENCE.read_text())["models"] if REFERENCE.exists() else {}
    bw = sgemv_bandwidth_gbs(256 << 20 if args.quick else 512 << 20)
    if args.depth:
        return depth_main(args, bw)
    n_decode = 32 if args.quick else 64
    rows = []
    for name, ref_name, path in find_models(args.model):
        repeat = 1 if args.quick else 5
        r = bench_model(path, n_decode, 128, repeat)
        floor = bw * 1e9 / r["weight_bytes"]
        if args.llama_bench:  # llama.cpp's own binaries, medians of ``repeat`` runs each
            live = bench_llama_bench(args, path, n_decode, 128, repeat)
        else:
            live = bench_llama_cpp(path, n_decode, 128, repeat, args.threads)
        if live is None:  # llama.cpp's numbers from the reference machine (not this run)
            speed = ref.get(ref_name, {}).get("speed", {})
            live = {
                "decode": speed.get("decode64_tok_per_s", float("nan")),
                "prefill": speed.get("prompt_tok_per_s", float("nan")),
            }
            source = "reference json"
        else:
            source = "this run" if not args.llama_bench else "llama-bench"
        rows.append(
            [
                name,
                f"{r['decode']:.1f}",
                f"{floor:.0f}",
                f"{100 * r['decode'] / floor:.0f}%",
                f"{live['decode']:.1f} ({source})",
                f"{r['decode'] / live['decode']:.2f}x",
                f"{r['prefill']:.0f}",
                f"{live['prefill']:.0f}",
                f"{r['prefill'] / live['prefill']:.2f}x",
                f"{r['ttft']:.2f}",
                f"{os.path.getsize(path) / 2**20:.0f}",
                f"{r['kv_bytes'] / 2**20:.0f}",
            ]
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"threads={args.threads}  sgemv read bandwidth {bw:.1f} GB/s  "
        f"decode {n_decode} tokens, prefill 128 tokens, ctx 512"
    )
    print_table(
        [
            "model",
            "decode tok/s",
            "floor tok/s",
            "of floor",
            "llama.cpp decode",
            "decode ratio",
            "prefill tok/s",
            "llama.cpp prefill",
            "prefill ratio",
            "load+first token s",
            "file MiB",
            "KV MiB",
        ],
        rows,
    )
    print(f"peak RSS of this process (both models, bandwidth probe included): {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
