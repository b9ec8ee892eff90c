"""Preallocated KV cache and per-token scratch buffers: llama2.c's ``RunState``."""

from __future__ import annotations

import numpy as np

from trueno.llm.config import Config


class KVCache:
    """Keys and values of every layer: (n_layers, n_kv_heads, ctx, head_dim) float32 each.

    Heads are outermost so that attention over one head reads contiguous memory.
    ``n`` is how many positions hold valid entries (the next position to write).
    """

    def __init__(self, config: Config, ctx: int) -> None:
        shape = (config.n_layers, config.n_kv_heads, ctx, config.head_dim)
        self.k = np.zeros(shape, dtype=np.float32)
        self.v = np.zeros(shape, dtype=np.float32)
        self.ctx = ctx
        self.n = 0

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def store(self, layer: int, start: int, k: np.ndarray, v: np.ndarray) -> None:
        """Write rows k, v: (T, n_kv_heads * head_dim) at positions start..start+T-1."""
        n_kv, _, hd = self.k.shape[1:]
        t = k.shape[0]
        self.k[layer, :, start : start + t] = k.reshape(t, n_kv, hd).transpose(1, 0, 2)
        self.v[layer, :, start : start + t] = v.reshape(t, n_kv, hd).transpose(1, 0, 2)


def rope_tables(
    rope_dim: int, base: float, ctx: int, scale: float = 1.0, factors: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin tables (ctx, rope_dim // 2): angle = pos * scale * base^(-2i / rope_dim)."""
    inv_freq = base ** (-np.arange(0, rope_dim, 2, dtype=np.float64) / rope_dim)
    if factors is not None:
        inv_freq = inv_freq / factors.astype(np.float64)
    angles = (np.arange(ctx, dtype=np.float64) * scale)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


class RunState:
    """Every activation buffer of one decode step plus the KV cache, allocated once."""

    def __init__(self, config: Config, ctx: int, rope_factors: np.ndarray | None = None) -> None:
        c = config
        self.cache = KVCache(c, ctx)
        f32 = np.float32
        self.x = np.zeros((1, c.dim), f32)  # residual stream
        self.xb = np.zeros((1, c.dim), f32)  # normed input of a sublayer
        self.xo = np.zeros((1, c.dim), f32)  # sublayer output
        Q, K, F = c.q_dim, c.kv_dim, c.hidden_dim
        self.qkv = np.zeros(Q + 2 * K, f32)  # output of the stacked Q|K|V matvec
        self.q = self.qkv[:Q].reshape(1, Q)  # views: (1, n) rows, each C-contiguous
        self.k = self.qkv[Q : Q + K].reshape(1, K)
        self.v = self.qkv[Q + K :].reshape(1, K)
        self.att = np.zeros((1, Q), f32)  # attention output, heads concatenated
        self.gate_up = np.zeros(2 * F, f32)  # output of the stacked gate|up matvec
        self.hg = self.gate_up[:F].reshape(1, F)  # FFN gate
        self.hu = self.gate_up[F:].reshape(1, F)  # FFN up
        self.ha = np.zeros((1, F), f32)  # act(gate) * up
        self.scores = np.zeros(ctx, f32)
        self.ones_head = np.ones(c.head_dim, f32)  # stands in for absent q/k norm weights
        self.ones_dim = np.ones(c.dim, f32)  # stands in for absent post-norm weights
        self.logits = np.zeros(c.vocab_size, f32)
        self.pos = np.zeros(1, np.int64)
        # one (cos, sin) table per distinct rope base, indexed by layer
        tables: dict = {}
        self.rope = []
        for layer in range(c.n_layers):
            key = (c.layer_rope_base(layer), c.layer_rope_scale(layer))
            if key not in tables:
                uses_factors = rope_factors if key[0] == c.rope_base else None
                tables[key] = rope_tables(c.rope_dim, key[0], ctx, key[1], uses_factors)
            self.rope.append(tables[key])
