"""Tiny random transformers models of qwen3, gemma2, granite, olmo2, phi3 and smollm3, and
their GGUF files written as llama.cpp's convert_hf_to_gguf.py writes them (tensor names,
llama-style Q/K row permutation, gemma's 1 + w norms, phi3's fused tensors and LongRoPE
factors, each family's metadata keys)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from llm_models import permute_qk, spm_vocab_metadata

from trueno.gguf.constants import GGMLType, Keys

VOCAB, DIM, HIDDEN, CTX = 64, 32, 64, 64
PHI3_ORIG_CTX = 16  # LongRoPE: long factors past this many positions

# arch: (transformers config class, model class, config kwargs beyond the shared ones)
HF = {
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM",
              dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                   tie_word_embeddings=True)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                    query_pre_attn_scalar=16, sliding_window=4, attn_logit_softcapping=4.0,
                    final_logit_softcapping=20.0, tie_word_embeddings=True)),
    "granite": ("GraniteConfig", "GraniteForCausalLM",
                dict(num_attention_heads=4, num_key_value_heads=2, embedding_multiplier=3.0,
                     residual_multiplier=0.5, attention_multiplier=0.3, logits_scaling=2.0,
                     tie_word_embeddings=False)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM",
              dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM",
             dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                  original_max_position_embeddings=PHI3_ORIG_CTX)),
    "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM",
                dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)),
}  # fmt: skip
ARCHS = tuple(HF)
LLAMA_PERMUTED = ("granite", "smollm3")  # converters derived from LlamaModel permute Q/K rows
GEMMA_NORM_SHIFT = ("gemma2",)  # the converter stores norm weights as 1 + w
N_LAYERS = 4  # gemma2 alternates sliding/global; smollm3's 4th layer has no RoPE
ROPE_BASE = 10000.0
EPS = 1e-6
# llama.cpp's sources (convert_hf_to_gguf.py, its conversion/ package, gguf-py): where
# TRUENO_LLAMA_CPP says, else where `make test-arch` unpacks them from the sdist
LLAMA_CPP = Path(
    os.environ.get("TRUENO_LLAMA_CPP")
    or Path(__file__).resolve().parents[2] / ".venv" / "llama.cpp"
)


def _phi3_rope(rng, partial: float = 1.0) -> dict:
    half = int(DIM // 4 * partial) // 2  # head_dim 8, all of it rotated (Phi-4-mini: 3/4)
    return {
        "rope_type": "longrope", "rope_theta": ROPE_BASE, "partial_rotary_factor": partial,
        "short_factor": (1.0 + rng.uniform(0, 0.5, half)).tolist(),
        "long_factor": (1.0 + rng.uniform(1.0, 6.0, half)).tolist(),
        "original_max_position_embeddings": PHI3_ORIG_CTX,
    }  # fmt: skip


def hf_model(arch: str, seed: int = 0, **overrides):
    """A transformers model of ``arch`` with random weights (norms too, away from 1);
    ``overrides``: config fields replacing the tiny model's."""
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch)")
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    cfg_name, cls_name, extra = HF[arch]
    if not hasattr(transformers, cfg_name):
        pytest.skip(f"transformers {transformers.__version__} has no {cfg_name}")
    rng = np.random.default_rng(seed)
    kwargs = dict(
        vocab_size=VOCAB, hidden_size=DIM, intermediate_size=HIDDEN,
        num_hidden_layers=N_LAYERS, rms_norm_eps=EPS, max_position_embeddings=CTX,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, attn_implementation="eager", **extra,
    )  # fmt: skip
    partial = overrides.get("partial_rotary_factor", 1.0)
    kwargs["rope_parameters"] = (
        _phi3_rope(rng, partial)
        if arch == "phi3"
        else {"rope_type": "default", "rope_theta": ROPE_BASE}
    )
    kwargs.update(overrides)
    cfg = getattr(transformers, cfg_name)(**kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(cfg).eval()
    state = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        shape = tuple(t.shape)
        if name.endswith("norm.weight"):
            base = 0.0 if arch in GEMMA_NORM_SHIFT else 1.0
            w = base + 0.2 * rng.standard_normal(shape)
        elif name == "model.embed_tokens.weight":
            w = rng.standard_normal(shape)
        else:
            w = rng.standard_normal(shape) / math.sqrt(shape[-1])
        state[name] = torch.from_numpy(np.asarray(w, np.float32))
    model.load_state_dict(state, strict=False)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    return torch, model


_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.qkv_proj": "attn_qkv",  # phi3
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "pre_feedforward_layernorm": "ffn_norm",  # gemma2
    "post_feedforward_layernorm": "post_ffw_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.gate_up_proj": "ffn_up",  # phi3: gate|up as one (2F, D) tensor
    "mlp.down_proj": "ffn_down",
}


def to_gguf(arch: str, model) -> tuple[dict, dict, dict]:
    """(metadata, tensors, origin) of ``model`` as convert_hf_to_gguf.py writes it; origin
    maps each matrix's GGUF name to (HF name, Q/K head count it was permuted by, or 0)."""
    cfg = model.config
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or DIM // heads
    post_attn = "post_attention_norm" if arch in ("gemma2", "olmo2") else "ffn_norm"
    tensors, origin = {}, {}
    for name, t in model.state_dict().items():
        w = t.detach().numpy().astype(np.float32)
        if name == "lm_head.weight":
            if cfg.tie_word_embeddings:
                continue
            gname = "output.weight"
        elif name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        else:
            _, _, i, rest = name.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            short = post_attn if module == "post_attention_layernorm" else _LAYER_NAMES[module]
            gname = f"blk.{i}.{short}.{kind}"
        permuted = 0
        if arch in LLAMA_PERMUTED and name.endswith(("q_proj.weight", "k_proj.weight")):
            permuted = heads if "q_proj" in name else kv_heads
            w = permute_qk(w, permuted)
        if arch in GEMMA_NORM_SHIFT and name.endswith("norm.weight"):
            w = w + np.float32(1.0)
        tensors[gname] = np.ascontiguousarray(w)
        if w.ndim == 2:
            origin[gname] = (name, permuted)

    def k(key):
        return Keys.arch(key, arch)

    md = {
        Keys.ARCHITECTURE: arch,
        k(Keys.CONTEXT_LENGTH): CTX,
        k(Keys.EMBEDDING_LENGTH): DIM,
        k(Keys.BLOCK_COUNT): cfg.num_hidden_layers,
        k(Keys.FEED_FORWARD_LENGTH): HIDDEN,
        k(Keys.HEAD_COUNT): heads,
        k(Keys.HEAD_COUNT_KV): kv_heads,
        k(Keys.LAYERNORM_RMS_EPS): EPS,
        k(Keys.ROPE_FREQ_BASE): ROPE_BASE,
        k(Keys.ROPE_DIMENSION_COUNT): int(
            head_dim * (getattr(cfg, "partial_rotary_factor", 1.0) or 1)
        ),
        k(Keys.KEY_LENGTH): head_dim,
        k(Keys.VALUE_LENGTH): head_dim,
        **spm_vocab_metadata(),
    }
    if arch == "gemma2":
        md[k(Keys.ATTN_LOGIT_SOFTCAPPING)] = cfg.attn_logit_softcapping
        md[k(Keys.FINAL_LOGIT_SOFTCAPPING)] = cfg.final_logit_softcapping
        md[k(Keys.SLIDING_WINDOW)] = cfg.sliding_window
    if arch == "granite":
        md[k(Keys.ATTENTION_SCALE)] = cfg.attention_multiplier
        md[k(Keys.EMBEDDING_SCALE)] = cfg.embedding_multiplier
        md[k(Keys.RESIDUAL_SCALE)] = cfg.residual_multiplier
        md[k(Keys.LOGIT_SCALE)] = cfg.logits_scaling
    if arch == "phi3":  # Phi3MiniModel: the factors as tensors, the attention factor as a key
        rope = cfg.rope_parameters
        scale = CTX / PHI3_ORIG_CTX
        md[k(Keys.ROPE_SCALING_ORIG_CTX)] = PHI3_ORIG_CTX
        md[k(Keys.ROPE_SCALING_ATTN_FACTOR)] = math.sqrt(
            1 + math.log(scale) / math.log(PHI3_ORIG_CTX)
        )
        tensors["rope_factors_long.weight"] = np.asarray(rope["long_factor"], np.float32)
        tensors["rope_factors_short.weight"] = np.asarray(rope["short_factor"], np.float32)
    return md, tensors, origin


def hf_logits(torch, hf, tokens) -> np.ndarray:
    with torch.no_grad():
        return hf(torch.tensor([tokens])).logits[0].numpy()


def quantized(arch: str, hf, torch, qtype: GGMLType):
    """The GGUF of ``hf`` with every matrix in ``qtype``, and ``hf`` reloaded with those
    blocks dequantized by gguf-py (the independent reference): both hold the same weights."""
    gguf = pytest.importorskip("gguf", reason="gguf-py not installed")
    from trueno.quant import quantize

    md, tensors, origin = to_gguf(arch, hf)
    state = {}
    for gname, (hf_name, permuted) in origin.items():
        w = tensors[gname]
        blocks = quantize(w, qtype)
        tensors[gname] = (blocks, qtype, w.shape)
        back = np.asarray(gguf.quants.dequantize(np.asarray(blocks), qtype), np.float32)
        back = back.reshape(w.shape)
        if permuted:  # undo the converter's row permutation (rows of one head pair swapped)
            n = permuted
            back = back.reshape(n, back.shape[0] // n // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
        state[hf_name] = torch.from_numpy(np.ascontiguousarray(back))
    ref = type(hf)(hf.config).eval()
    full = {**hf.state_dict(), **state}
    if hf.config.tie_word_embeddings:  # the head is the (dequantized) embedding table
        full["lm_head.weight"] = full["model.embed_tokens.weight"]
    ref.load_state_dict(full)
    return md, tensors, ref


def llama_cpp_converted(models: dict, root: Path) -> dict[str, Path]:
    """{name: GGUF path} of each transformers model of ``models`` ({name: model}) written by
    llama.cpp's own convert_hf_to_gguf.py model classes (tests/llm/llama_cpp_convert.py),
    all in one process; skips when llama.cpp's sources are not at LLAMA_CPP."""
    import subprocess
    import sys

    if not (LLAMA_CPP / "convert_hf_to_gguf.py").exists():
        pytest.skip(f"llama.cpp's converter is not at {LLAMA_CPP} (set TRUENO_LLAMA_CPP)")
    args, paths = [], {}
    for name, model in models.items():
        model.save_pretrained(root / name)
        paths[name] = root / f"{name}.gguf"
        args += [str(root / name), str(paths[name])]
    script = Path(__file__).with_name("llama_cpp_convert.py")
    run = subprocess.run([sys.executable, str(script), str(LLAMA_CPP), *args],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return paths
