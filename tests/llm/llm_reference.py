"""An independent float64 numpy forward pass, position by position with no KV cache tricks.

It reads the GGUF file with gguf-py (not trueno's reader), dequantizes with gguf-py, and
spells out every formula, so it shares no code with trueno.llm.
"""

from __future__ import annotations

import math

import numpy as np


def _read(path):
    import gguf

    r = gguf.GGUFReader(str(path))
    md = {k: f.contents() for k, f in r.fields.items()}
    w = {}
    for t in r.tensors:
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        data = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        w[t.name] = np.asarray(data, dtype=np.float64).reshape(shape)
    return md, w


def _rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * w


def _rope(v, pos, base, neox):
    """Rotate one head vector v (Dh,) at position pos."""
    d = v.shape[0]
    out = v.copy()
    for i in range(d // 2):
        theta = pos * base ** (-2.0 * i / d)
        c, s = math.cos(theta), math.sin(theta)
        a, b = (i, i + d // 2) if neox else (2 * i, 2 * i + 1)
        out[a] = v[a] * c - v[b] * s
        out[b] = v[a] * s + v[b] * c
    return out


def reference_logits(path, tokens) -> np.ndarray:
    md, w = _read(path)
    arch = md["general.architecture"]

    def get(key, default=None):
        return md.get(f"{arch}.{key}", default)

    D = int(get("embedding_length"))
    L = int(get("block_count"))
    H = int(get("attention.head_count"))
    Hkv = int(get("attention.head_count_kv"))
    Dh = int(get("attention.key_length", D // H))
    eps = float(get("attention.layer_norm_rms_epsilon"))
    base = float(get("rope.freq_base", 10000.0))
    window = int(get("attention.sliding_window", 0))
    gemma = arch == "gemma3"
    neox = arch in ("qwen2", "gemma3")
    out_w = w.get("output.weight", w["token_embd.weight"])

    def gelu_tanh(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    def silu(x):
        return x / (1 + np.exp(-x))

    keys = [[[] for _ in range(Hkv)] for _ in range(L)]
    values = [[[] for _ in range(Hkv)] for _ in range(L)]
    logits = []
    for pos, tok in enumerate(tokens):
        x = w["token_embd.weight"][tok].copy()
        if gemma:
            x = x * math.sqrt(D)
        for li in range(L):
            b = f"blk.{li}."
            sliding = gemma and (li + 1) % 6 != 0
            lbase = 10000.0 if sliding else base
            h = _rms(x, w[b + "attn_norm.weight"], eps)
            q = w[b + "attn_q.weight"] @ h + w.get(b + "attn_q.bias", 0.0)
            k = w[b + "attn_k.weight"] @ h + w.get(b + "attn_k.bias", 0.0)
            v = w[b + "attn_v.weight"] @ h + w.get(b + "attn_v.bias", 0.0)
            q, k, v = q.reshape(H, Dh), k.reshape(Hkv, Dh), v.reshape(Hkv, Dh)
            if gemma:
                q = np.stack([_rms(qh, w[b + "attn_q_norm.weight"], eps) for qh in q])
                k = np.stack([_rms(kh, w[b + "attn_k_norm.weight"], eps) for kh in k])
            q = np.stack([_rope(qh, pos, lbase, neox) for qh in q])
            k = np.stack([_rope(kh, pos, lbase, neox) for kh in k])
            for j in range(Hkv):
                keys[li][j].append(k[j])
                values[li][j].append(v[j])
            att = np.zeros((H, Dh))
            for hh in range(H):
                j = hh // (H // Hkv)
                first = max(0, pos - window + 1) if sliding else 0
                K = np.array(keys[li][j][first:])
                V = np.array(values[li][j][first:])
                s = K @ q[hh] / math.sqrt(Dh)
                p = np.exp(s - s.max())
                att[hh] = (p / p.sum()) @ V
            o = w[b + "attn_output.weight"] @ att.reshape(-1)
            if gemma:
                o = _rms(o, w[b + "post_attention_norm.weight"], eps)
            x = x + o
            h = _rms(x, w[b + "ffn_norm.weight"], eps)
            g = w[b + "ffn_gate.weight"] @ h
            u = w[b + "ffn_up.weight"] @ h
            a = (gelu_tanh(g) if gemma else silu(g)) * u
            f = w[b + "ffn_down.weight"] @ a
            if gemma:
                f = _rms(f, w[b + "post_ffw_norm.weight"], eps)
            x = x + f
        logits.append(out_w @ _rms(x, w["output_norm.weight"], eps))
    return np.array(logits)
