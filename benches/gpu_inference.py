"""Decode speed of the two registry models on a GPU: trueno (``device="gpu"``: quantized
weights, KV cache and every activation on the device; each decode step replayed as one CUDA
graph, and also without graphs) against PyTorch on the same card
(transformers' own GGUF loader: the same file dequantized to float16 / float32 weights,
its KV cache, greedy decoding), plus trueno on the host CPU in the same run.

    python benches/gpu_inference.py [--device gpu|cpu] [--tokens 64] [--runs 3]
                                     [--torch-dtype float16] [--standin] [--no-torch]
    python benches/gpu_inference.py --write-shapes      # refresh model_shapes.json

Where a real file is not installed (a lent GPU machine reaches no registry and takes only 64 MiB
of files), the model is rebuilt with the real file's shapes, tensor types and metadata
(``model_shapes.json``, written from the real files by ``--write-shapes``) and random weights:
decode speed depends on shapes and types, not on the values. The report says which was used.

Each speed is the median over ``--runs`` of ``--tokens`` greedy decode steps after an
8-token prompt (one untimed warm-up run first). ``floor`` is the weight bytes read per token
over the device-to-device copy bandwidth measured in this run. Exits 0 with a message when the
device is missing, and prints each baseline's failure instead of stopping.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table  # noqa: E402

HERE = Path(__file__).resolve().parent
SHAPES = HERE / "model_shapes.json"
PROMPT = [1, 450, 7483, 310, 3444, 338, 263, 4996]  # 8 ids below every vocabulary size


def real_models() -> dict[str, Path | None]:
    from trueno.llm.packaged import gemma3_path, smollm2_path

    return {"SmolLM2-135M Q4_1": smollm2_path(), "gemma-3-270m Q4_K_M": gemma3_path()}


# ---- model_shapes.json: what a same-shape stand-in needs ------------------------------------


def describe(path: Path) -> dict:
    """Scalar metadata (and their GGUF value types), the vocabulary size and every tensor's
    (shape, type) of a real file: a few KB."""
    from trueno import gguf

    gf = gguf.load(path)
    md, types = {}, {}
    for key, value in gf.metadata.items():
        if isinstance(value, (bool, int, float, str)) and key != "tokenizer.chat_template":
            md[key] = value
            t = gf.metadata_types.get(key)
            types[key] = int(t) if t is not None else None
    n_vocab = len(gf.metadata["tokenizer.ggml.tokens"])
    tensors = {n: [list(t.shape), t.ggml_type.name] for n, t in gf.tensors.items()}
    return {
        "file": path.name,
        "metadata": md,
        "types": types,
        "n_vocab": n_vocab,
        "tensors": tensors,
    }


def build_standin(desc: dict, folder: Path) -> Path:
    """A GGUF file with ``desc``'s metadata, shapes and types and random weights."""
    from trueno.gguf.constants import GGMLType, GGUFValueType
    from trueno.gguf.writer import write_gguf
    from trueno.quant import quantize

    path = folder / f"standin-{desc['file']}"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    md = dict(desc["metadata"])
    types = {k: GGUFValueType(v) for k, v in desc["types"].items() if v is not None}
    n = desc["n_vocab"]
    md["tokenizer.ggml.tokens"] = [f"<t{i}>" for i in range(n)]
    md["tokenizer.ggml.token_type"] = np.ones(n, dtype=np.int32)
    md["tokenizer.ggml.scores"] = np.zeros(n, dtype=np.float32)
    tensors = {}
    for name, (shape, type_name) in desc["tensors"].items():
        t = GGMLType[type_name]
        if len(shape) == 1:  # norm weights: ones (gemma files store 1 + w)
            tensors[name] = np.ones(shape, np.float32)
            continue
        w = (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)).astype(np.float32)
        tensors[name] = w if t == GGMLType.F32 else (quantize(w, t), t, tuple(shape))
    write_gguf(path, md, tensors, metadata_types=types)
    return path


# ---- timing -------------------------------------------------------------------------------------


def decode_speed(step, first_token: int, n_tokens: int, runs: int, sync=None):
    """(median tok/s, greedy ids of the last run); ``step(token) -> logits`` (host or device)
    is called n_tokens times per run after ``reset`` of the caller's state."""
    speeds, ids = [], []
    for r in range(runs + 1):  # run 0 warms up (kernel compiles, allocator pools)
        tok, ids = first_token, []
        t0 = time.perf_counter()
        for _ in range(n_tokens):
            tok = int(step(tok, start=not ids).argmax())
            ids.append(tok)
        if sync is not None:
            sync()
        if r:
            speeds.append(n_tokens / (time.perf_counter() - t0))
    return statistics.median(speeds), ids


def bench_trueno(path: Path, device, n_tokens: int, runs: int) -> dict:
    """``device``: "cpu", "gpu" or a trueno.llm.runtime.Runtime."""
    from trueno.llm import Model

    t0 = time.perf_counter()
    model = Model.load(path, ctx_size=len(PROMPT) + n_tokens + 8, device=device)
    load_s = time.perf_counter() - t0

    def step(tok, start):
        if start:
            model.reset()
            model.prefill(PROMPT[:-1])
        return model.decode(tok)

    speed, ids = decode_speed(step, PROMPT[-1], n_tokens, runs)
    weight_bytes = (
        sum(m.nbytes for lw in model.weights.layers for m in lw.used_matrices())
        + model.weights.output.nbytes
    )
    return {"tok_s": speed, "ids": ids, "load_s": load_s, "weight_bytes": weight_bytes}


def bench_torch(path: Path, device: str, dtype_name: str, n_tokens: int, runs: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    dev = "cuda" if device == "gpu" else "cpu"
    dtype = getattr(torch, dtype_name)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    model = model.to(dev).eval()
    load_s = time.perf_counter() - t0
    state = {}

    @torch.inference_mode()
    def step(tok, start):
        if start:
            out = model(torch.tensor([PROMPT[:-1]], device=dev), use_cache=True)
            state["past"] = out.past_key_values
        out = model(
            torch.tensor([[tok]], device=dev), past_key_values=state["past"], use_cache=True
        )
        state["past"] = out.past_key_values
        return out.logits[0, -1]

    sync = torch.cuda.synchronize if dev == "cuda" else None
    speed, ids = decode_speed(step, PROMPT[-1], n_tokens, runs, sync)
    return {"tok_s": speed, "ids": ids, "load_s": load_s}


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy of 1 GiB on the GPU: bytes read + written per second."""
    import cupy as cp

    a = cp.empty(1 << 28, dtype=cp.float32)
    b = cp.empty_like(a)
    times = []
    for _ in range(6):
        ev0, ev1 = cp.cuda.Event(), cp.cuda.Event()
        ev0.record()
        b[...] = a
        ev1.record()
        ev1.synchronize()
        times.append(cp.cuda.get_elapsed_time(ev0, ev1) / 1e3)
    return 2 * a.nbytes / statistics.median(times[1:]) / 1e9


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--torch-dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--no-torch", action="store_true", help="trueno only")
    p.add_argument("--no-cpu", action="store_true", help="skip trueno on the host CPU")
    p.add_argument(
        "--standin",
        action="store_true",
        help="same-shape stand-ins even where real files are installed",
    )
    p.add_argument("--cache", default=None, help="folder for stand-in files (default: a temp dir)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--write-shapes", action="store_true", help="refresh model_shapes.json")
    args = p.parse_args()

    if args.write_shapes:
        shapes = {name: describe(path) for name, path in real_models().items() if path}
        SHAPES.write_text(json.dumps(shapes, indent=1, sort_keys=True) + "\n")
        print(f"wrote {SHAPES} ({', '.join(shapes)})")
        return 0
    if args.device == "gpu":
        from trueno.backends import cupy_backend

        if not cupy_backend.available():
            print(f"no GPU: {cupy_backend.why_unavailable()}; nothing measured")
            return 0
        import cupy as cp

        props = cp.cuda.runtime.getDeviceProperties(0)
        card = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        bw = copy_bandwidth_gbs()
        print(f"card: {card}, device-to-device copy {bw:.0f} GB/s (read + write)")
    shapes = json.loads(SHAPES.read_text())
    folder = Path(args.cache or tempfile.mkdtemp(prefix="trueno-standin-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows, results = [], {}
    for name, real in real_models().items():
        path, source = real, "real file"
        if path is None or args.standin:
            path, source = build_standin(shapes[name], folder), "same-shape random weights"
        print(f"{name}: {source} ({path.name})", flush=True)
        res = {"source": source}
        res["trueno"] = bench_trueno(path, args.device, args.tokens, args.runs)
        if args.device == "gpu" and not args.no_cpu:
            res["trueno_cpu"] = bench_trueno(path, "cpu", args.tokens, args.runs)
        if args.device == "gpu":  # what replaying each decode step as a CUDA graph brings
            from trueno.llm import runtime

            eager = runtime.gpu(graphs=False)
            res["trueno_eager"] = bench_trueno(path, eager, args.tokens, args.runs)
        if not args.no_torch:
            try:
                res["torch"] = bench_torch(
                    path, args.device, args.torch_dtype, args.tokens, args.runs
                )
            except Exception as exc:  # a baseline that cannot run here is reported, not fatal
                print(f"  torch baseline failed: {type(exc).__name__}: {exc}")
        t = res["trueno"]
        row = [name, source, f"{t['tok_s']:.0f}"]
        if args.device == "gpu":
            floor = bw * 1e9 / 2 / t["weight_bytes"]  # read bandwidth = half the copy's bytes
            row.append(f"{t['tok_s'] / floor:.0%}")
            row.append(f"{res['trueno_eager']['tok_s']:.0f}")
            row.append(f"{res['trueno_cpu']['tok_s']:.0f}" if "trueno_cpu" in res else "-")
        if "torch" in res:
            same = sum(a == b for a, b in zip(t["ids"], res["torch"]["ids"], strict=True))
            row += [f"{res['torch']['tok_s']:.0f}", f"{t['tok_s'] / res['torch']['tok_s']:.2f}x"]
            row.append(f"{same}/{len(t['ids'])}")
        elif not args.no_torch:
            row += ["failed", "-", "-"]
        rows.append(row)
        results[name] = res
    head = ["model", "weights", f"trueno {args.device} tok/s"]
    if args.device == "gpu":
        head += ["share of floor", "trueno gpu, no graphs", "trueno cpu tok/s"]
    if not args.no_torch:
        head += [f"torch {args.torch_dtype} tok/s", "trueno / torch", "same greedy ids"]
    print_table(head, rows)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
