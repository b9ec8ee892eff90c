"""Tiny random models for the LLM engine tests, written as GGUF files, and the lookups of the
two registry models.

Weights are drawn here (not by a framework's initializer) with scales that give logits of
order one, and written exactly as llama.cpp's convert_hf_to_gguf.py would write them:
llama Q/K rows permuted for adjacent-pair RoPE, gemma norm weights stored as 1 + w.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trueno.gguf.constants import Keys, TokenType
from trueno.llm import packaged
from trueno.llm.packaged import smollm2_path  # noqa: F401  (re-exported for the tests)

TINY = {
    # arch: hyperparameters shared by the GGUF file and the HF config
    "llama": dict(
        vocab=64,
        dim=32,
        hidden=48,
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=8,
        eps=1e-5,
        rope_base=10000.0,
        tied=False,
    ),
    "qwen2": dict(
        vocab=64,
        dim=32,
        hidden=48,
        layers=2,
        heads=4,
        kv_heads=1,
        head_dim=8,
        eps=1e-6,
        rope_base=1000000.0,
        tied=True,
    ),
    "gemma3": dict(
        vocab=64,
        dim=32,
        hidden=48,
        layers=6,
        heads=2,
        kv_heads=1,
        head_dim=16,
        eps=1e-6,
        rope_base=1000000.0,
        tied=True,
        window=4,
    ),
}


def assert_logits_close(ours, ref, rel=1e-4) -> float:
    """Max |ours - ref| relative to max |ref|, asserted <= ``rel``; the error."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    scale = np.abs(ref).max()
    assert scale > 0.5, "logits too small to make a relative check meaningful"
    err = float(np.abs(ours - ref).max() / scale)
    assert err <= rel, f"max relative error {err:.2e} > {rel:.0e}"
    return err


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's HF -> GGUF permutation of Q/K rows (NeoX halves -> adjacent pairs)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def random_hf_state(arch: str, seed: int = 0) -> dict[str, np.ndarray]:
    """HF-named float32 weights of the tiny model of ``arch``."""
    p = TINY[arch]
    rng = np.random.default_rng(seed)
    D, F, Dh = p["dim"], p["hidden"], p["head_dim"]
    Q, K = p["heads"] * Dh, p["kv_heads"] * Dh

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n):  # gemma stores w with the norm applying (1 + w); llama applies w
        base = 0.0 if arch == "gemma3" else 1.0
        return (base + 0.2 * rng.standard_normal(n)).astype(np.float32)

    sd = {"model.embed_tokens.weight": rng.standard_normal((p["vocab"], D)).astype(np.float32)}
    if arch == "gemma3":
        sd["model.embed_tokens.weight"] /= np.float32(np.sqrt(D))
    for i in range(p["layers"]):
        pre = f"model.layers.{i}."
        sd[pre + "input_layernorm.weight"] = norm(D)
        sd[pre + "self_attn.q_proj.weight"] = mat(Q, D)
        sd[pre + "self_attn.k_proj.weight"] = mat(K, D)
        sd[pre + "self_attn.v_proj.weight"] = mat(K, D)
        sd[pre + "self_attn.o_proj.weight"] = mat(D, Q)
        sd[pre + "post_attention_layernorm.weight"] = norm(D)
        sd[pre + "mlp.gate_proj.weight"] = mat(F, D)
        sd[pre + "mlp.up_proj.weight"] = mat(F, D)
        sd[pre + "mlp.down_proj.weight"] = mat(D, F)
        if arch == "qwen2":
            for n, size in (("q", Q), ("k", K), ("v", K)):
                sd[pre + f"self_attn.{n}_proj.bias"] = (0.3 * rng.standard_normal(size)).astype(
                    np.float32
                )
        if arch == "gemma3":
            sd[pre + "self_attn.q_norm.weight"] = norm(Dh)
            sd[pre + "self_attn.k_norm.weight"] = norm(Dh)
            sd[pre + "pre_feedforward_layernorm.weight"] = norm(D)
            sd[pre + "post_feedforward_layernorm.weight"] = norm(D)
    sd["model.norm.weight"] = norm(D)
    if not p["tied"]:
        sd["lm_head.weight"] = mat(p["vocab"], D)
    return sd


def gguf_tensors(arch: str, sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HF names -> GGUF names, converted as convert_hf_to_gguf.py does."""
    p = TINY[arch]
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "self_attn.q_norm": "attn_q_norm",
        "self_attn.k_norm": "attn_k_norm",
        "post_attention_layernorm": "post_attention_norm" if arch == "gemma3" else "ffn_norm",
        "pre_feedforward_layernorm": "ffn_norm",
        "post_feedforward_layernorm": "post_ffw_norm",
    }
    out = {}
    for name, w in sd.items():
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        elif name == "lm_head.weight":
            gname = "output.weight"
        else:
            _, _, i, rest = name.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            gname = f"blk.{i}.{names[module]}.{kind}"
            if arch == "llama" and module == "self_attn.q_proj":
                w = permute_qk(w, p["heads"])
            elif arch == "llama" and module == "self_attn.k_proj":
                w = permute_qk(w, p["kv_heads"])
        if arch == "gemma3" and name.endswith("norm.weight"):
            w = w + np.float32(1.0)
        out[gname] = np.ascontiguousarray(w, dtype=np.float32)
    return out


def gguf_metadata(arch: str) -> dict:
    p = TINY[arch]

    def k(key):
        return Keys.arch(key, arch)

    md = {
        Keys.ARCHITECTURE: arch,
        k(Keys.CONTEXT_LENGTH): 128,
        k(Keys.EMBEDDING_LENGTH): p["dim"],
        k(Keys.BLOCK_COUNT): p["layers"],
        k(Keys.FEED_FORWARD_LENGTH): p["hidden"],
        k(Keys.HEAD_COUNT): p["heads"],
        k(Keys.HEAD_COUNT_KV): p["kv_heads"],
        k(Keys.LAYERNORM_RMS_EPS): float(p["eps"]),
        k(Keys.ROPE_FREQ_BASE): float(p["rope_base"]),
    }
    if arch == "gemma3":
        md[k(Keys.KEY_LENGTH)] = p["head_dim"]
        md[k(Keys.VALUE_LENGTH)] = p["head_dim"]
        md[k(Keys.SLIDING_WINDOW)] = p["window"]
    else:
        md[k(Keys.ROPE_DIMENSION_COUNT)] = p["head_dim"]
    return md


SPM_PIECES = (
    ["\u2581"]
    + [chr(c) for c in range(97, 123)]
    + ["\u2581" + chr(c) for c in range(97, 123)]
    + ["\u2581the", "th", "he", "in", "<0xC3>", "<0xA9>", ".", "<0x0A>"]
)


def spm_vocab_metadata() -> dict:
    """A 64-token SentencePiece vocabulary (so the tiny models can generate text)."""
    tokens = ["<unk>", "<s>", "</s>", *SPM_PIECES]
    assert len(tokens) == 64
    special = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    types = special + [TokenType.BYTE if p.startswith("<0x") else TokenType.NORMAL
                       for p in SPM_PIECES]  # fmt: skip
    return {
        Keys.TOKENIZER_MODEL: "llama",
        Keys.TOKENS: tokens,
        Keys.SCORES: [float(-i) for i in range(len(tokens))],
        Keys.TOKEN_TYPE: types,
        Keys.BOS_ID: 1,
        Keys.EOS_ID: 2,
        Keys.UNK_ID: 0,
        Keys.ADD_BOS: True,
    }


def write_gguf(path: Path, metadata: dict, tensors: dict[str, np.ndarray]) -> Path:
    from trueno.gguf.writer import write_gguf as trueno_write

    trueno_write(path, metadata, tensors)
    return path


def gemma3_path() -> Path | None:
    """gemma-3-270m assembled under the repo's git-ignored models/ folder."""
    return packaged.gemma3_path(Path(__file__).resolve().parents[2] / "models")


def alone_logprobs(model, prompt: list[int], tokens: list[int]) -> np.ndarray:
    """(len(tokens), V) float64 log-softmax of ``model``'s logits before each of ``tokens``,
    run alone: a prefill of ``prompt``, then one decode per token."""
    model.reset()
    logits, out = model.prefill(prompt), []
    for tok in tokens:
        x = logits.astype(np.float64)
        out.append(x - x.max() - np.log(np.exp(x - x.max()).sum()))
        logits = model.decode(tok).copy()
    return np.array(out, np.float64).reshape(len(tokens), len(logits))


def run_batch(engine, seqs) -> list[list]:
    """Run ``seqs`` to the end on a BatchEngine; each sequence's events, in order."""
    for s in seqs:
        engine.add(s)
    events = []
    while engine.busy:
        events += engine.step()
    return [[e for e in events if e.seq is s] for s in seqs]


def assert_batched_logprobs_equal_alone(model, seqs, events, atol: float = 1e-5) -> None:
    """Every sequence of a finished batch (asked with ``logprobs=k``) reported, for each of
    its tokens, the logprob and the top k that ``model`` gives alone: the batch changed no
    logit (a token check alone misses small logit errors: tiny models repeat tokens)."""
    for s, evs in zip(seqs, events, strict=True):
        evs = [e for e in evs if e.token is not None]
        assert s.tokens and [e.token for e in evs] == s.tokens
        ref = alone_logprobs(model, s.prompt, s.tokens)
        for e, lp in zip(evs, ref, strict=True):
            assert abs(e.logprob - lp[e.token]) <= atol, (e.logprob, lp[e.token])
            best = np.sort(lp)[::-1][: len(e.top)]
            assert len(e.top) == s.logprobs
            np.testing.assert_allclose([p for _, p in e.top], best, rtol=0, atol=atol)
