"""Tiny random mixture-of-experts models (mixtral = llama with expert tensors, qwen3moe),
their GGUF files, and transformers' MixtralForCausalLM / Qwen3MoeForCausalLM on the same
weights (helpers of test_moe.py and the server's per-architecture tests).

Experts are written as llama.cpp's converter writes them: 3-D tensors ffn_{gate,up}_exps
(E, F, D) and ffn_down_exps (E, D, F) (numpy order) split from HF's fused gate_up_proj, the
router as ffn_gate_inp (E, D); mixtral's Q/K rows permuted as llama's."""

from __future__ import annotations

import numpy as np
import pytest
from llm_models import TINY, gguf_tensors, random_hf_state, spm_vocab_metadata

from trueno.gguf.constants import GGMLType, Keys

TINY_MOE = {
    "mixtral": dict(arch="llama", layers=2, experts=4, used=2, expert_hidden=64, hidden=64,
                    rope_base=1e6, eps=1e-5, norm_topk=True),
    "qwen3moe": dict(arch="qwen3moe", layers=2, experts=8, used=2, expert_hidden=64, hidden=96,
                     rope_base=1e6, eps=1e-6, norm_topk=True),
    # Qwen3-MoE with norm_topk_prob=False: GGUF says so with expert_weights_norm = false
    "qwen3moe-unnormed": dict(arch="qwen3moe", layers=2, experts=8, used=3, expert_hidden=64,
                              hidden=96, rope_base=1e6, eps=1e-6, norm_topk=False),
}  # fmt: skip
LLAMA = TINY["llama"]  # attention sizes shared with the tiny dense llama
VOCAB, DIM, HEADS, KV_HEADS, HEAD_DIM = (LLAMA[k] for k in ("vocab", "dim", "heads", "kv_heads",
                                                             "head_dim"))  # fmt: skip
assert all(p["layers"] == LLAMA["layers"] for p in TINY_MOE.values())
TOKENS = [1, 5, 17, 3, 42, 8, 63, 0, 12, 12, 30, 7, 22, 9, 50, 4]  # > MATVEC_ROWS


def random_moe_state(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """HF-named float32 weights: the tiny llama's attention, norms and head (same sizes),
    with the dense MLP replaced by a router and experts (transformers 5's layout: 3-D
    gate_up_proj (E, 2F, D) and down_proj (E, D, F)), plus qwen3's per-head q/k norms."""
    p = TINY_MOE[name]
    rng = np.random.default_rng(seed + 100)
    E, F, D = p["experts"], p["expert_hidden"], DIM
    sd = {k: v for k, v in random_hf_state("llama", seed).items() if ".mlp." not in k}

    def mat(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    for i in range(p["layers"]):
        pre = f"model.layers.{i}."
        if p["arch"] == "qwen3moe":
            for n in ("q", "k"):
                sd[pre + f"self_attn.{n}_norm.weight"] = (
                    1.0 + 0.2 * rng.standard_normal(HEAD_DIM)
                ).astype(np.float32)
        sd[pre + "mlp.gate.weight"] = 6 * mat(E, D)  # router logits of order 6: few near ties
        sd[pre + "mlp.experts.gate_up_proj"] = mat(E, 2 * F, D)
        sd[pre + "mlp.experts.down_proj"] = mat(E, D, F)
    return sd


def moe_gguf_tensors(name: str, sd: dict) -> dict[str, np.ndarray]:
    """GGUF tensors as llama.cpp's converter writes them: the dense part as the llama's
    (mixtral: Q/K rows permuted) or unpermuted (qwen3moe: NeoX RoPE, as qwen2's); the fused
    gate_up_proj split into ffn_gate_exps and ffn_up_exps."""
    p = TINY_MOE[name]
    F = p["expert_hidden"]
    dense = {k: v for k, v in sd.items() if ".mlp." not in k}
    out = gguf_tensors("llama" if p["arch"] == "llama" else "qwen2", dense)
    for i in range(p["layers"]):
        pre, blk = f"model.layers.{i}.mlp.", f"blk.{i}."
        gate_up = sd[pre + "experts.gate_up_proj"]
        out[blk + "ffn_gate_inp.weight"] = sd[pre + "gate.weight"]
        out[blk + "ffn_gate_exps.weight"] = np.ascontiguousarray(gate_up[:, :F])
        out[blk + "ffn_up_exps.weight"] = np.ascontiguousarray(gate_up[:, F:])
        out[blk + "ffn_down_exps.weight"] = sd[pre + "experts.down_proj"]
    return out


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of :func:`permute_qk` (GGUF adjacent pairs -> HF NeoX halves)."""
    return (
        w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def moe_metadata(name: str) -> dict:
    p = TINY_MOE[name]
    arch = p["arch"]

    def k(key):
        return Keys.arch(key, arch)

    md = {
        Keys.ARCHITECTURE: arch,
        k(Keys.CONTEXT_LENGTH): 128,
        k(Keys.EMBEDDING_LENGTH): DIM,
        k(Keys.BLOCK_COUNT): p["layers"],
        k(Keys.FEED_FORWARD_LENGTH): p["hidden"] if arch == "qwen3moe" else p["expert_hidden"],
        k(Keys.HEAD_COUNT): HEADS,
        k(Keys.HEAD_COUNT_KV): KV_HEADS,
        k(Keys.LAYERNORM_RMS_EPS): float(p["eps"]),
        k(Keys.ROPE_FREQ_BASE): float(p["rope_base"]),
        k(Keys.EXPERT_COUNT): p["experts"],
        k(Keys.EXPERT_USED_COUNT): p["used"],
        **spm_vocab_metadata(),
    }
    if arch == "qwen3moe":
        md[k(Keys.KEY_LENGTH)] = HEAD_DIM
        md[k(Keys.VALUE_LENGTH)] = HEAD_DIM
        md[k(Keys.EXPERT_FEED_FORWARD_LENGTH)] = p["expert_hidden"]
    if not p["norm_topk"]:
        md[k(Keys.EXPERT_WEIGHTS_NORM)] = False
    return md


def quantized(tensors: dict, qtype: str) -> dict:
    """Every expert tensor as 3-D blocks of ``qtype``; the router stays F32 (as llama.cpp's
    quantizer keeps it) and so does the rest (quantized dense matrices: test_model.py)."""
    from trueno.quant import quantize

    t = GGMLType[qtype]
    out = dict(tensors)
    for name, w in tensors.items():
        if "_exps." in name:
            out[name] = (quantize(w, t), t, w.shape)
    return out


def hf_moe_model(name: str, sd: dict):
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    p = TINY_MOE[name]
    cls_name = "MixtralForCausalLM" if p["arch"] == "llama" else "Qwen3MoeForCausalLM"
    if not hasattr(transformers, cls_name):
        pytest.skip(f"transformers {transformers.__version__} has no {cls_name}")
    gate_up = next(k for k in sd if k.endswith("experts.gate_up_proj"))
    common = dict(
        vocab_size=VOCAB,
        hidden_size=DIM,
        num_hidden_layers=p["layers"],
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        rms_norm_eps=p["eps"],
        max_position_embeddings=128,
        tie_word_embeddings=False,
        rope_theta=p["rope_base"],
        num_experts_per_tok=p["used"],
        attn_implementation="eager",
    )
    if p["arch"] == "llama":
        cfg = transformers.MixtralConfig(
            intermediate_size=p["expert_hidden"], num_local_experts=p["experts"], **common
        )
    else:
        cfg = transformers.Qwen3MoeConfig(
            intermediate_size=p["hidden"],
            moe_intermediate_size=p["expert_hidden"],
            num_experts=p["experts"],
            norm_topk_prob=p["norm_topk"],
            decoder_sparse_step=1,
            mlp_only_layers=[],
            **common,
        )
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(cfg).eval()
    if tuple(model.state_dict()[gate_up].shape) != sd[gate_up].shape:
        pytest.skip(f"transformers {transformers.__version__} lays experts out differently")
    state = {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}  # writable copies
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return torch, model


def hf_logits_and_routes(name: str, sd: dict, tokens, router_logits: list | None = None):
    """transformers' logits (T, V) and, per layer, its router's top-k expert ids (T, k);
    its router logits (T, E) per layer are appended to ``router_logits`` when given."""
    torch, hf = hf_moe_model(name, sd)
    routes = {}

    def hook(layer):
        def save(module, args, output):
            routes[layer] = output  # (router_logits, scores, indices)

        return save

    for i, layer in enumerate(hf.model.layers):
        layer.mlp.gate.register_forward_hook(hook(i))
    with torch.no_grad():
        logits = hf(torch.tensor([tokens])).logits[0].numpy()
    layers = range(len(hf.model.layers))
    if router_logits is not None:
        router_logits.extend(routes[i][0].numpy() for i in layers)
    return logits, [routes[i][2].numpy() for i in layers]


def hf_state_from_gguf(name: str, path, sd: dict) -> dict:
    """The HF state (of :func:`random_moe_state`'s names) of the GGUF file of model ``name``:
    its tensors dequantized by gguf-py, mixtral's Q/K rows permuted back."""
    import gguf as gguf_py

    reader = gguf_py.GGUFReader(str(path))
    deq = {}
    for t in reader.tensors:
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        deq[t.name] = np.asarray(gguf_py.quants.dequantize(np.asarray(t.data), t.tensor_type),
                                 dtype=np.float32).reshape(shape)  # fmt: skip
    hf_sd = dict(sd)
    for key in sd:
        if key.startswith("model.layers."):
            _, _, i, rest = key.split(".", 3)
            b = f"blk.{i}."
            if rest == "mlp.experts.gate_up_proj":
                hf_sd[key] = np.concatenate(
                    [deq[b + "ffn_gate_exps.weight"], deq[b + "ffn_up_exps.weight"]], axis=1
                )
            elif rest == "mlp.experts.down_proj":
                hf_sd[key] = deq[b + "ffn_down_exps.weight"]
            elif rest in ("self_attn.q_proj.weight", "self_attn.k_proj.weight"):
                n = HEADS if rest.startswith("self_attn.q") else KV_HEADS
                gname = b + ("attn_q.weight" if n == HEADS else "attn_k.weight")
                permuted = TINY_MOE[name]["arch"] == "llama"
                hf_sd[key] = unpermute_qk(deq[gname], n) if permuted else deq[gname]
            elif rest == "self_attn.v_proj.weight":
                hf_sd[key] = deq[b + "attn_v.weight"]
            elif rest == "self_attn.o_proj.weight":
                hf_sd[key] = deq[b + "attn_output.weight"]
    hf_sd["lm_head.weight"] = deq["output.weight"]
    return hf_sd
