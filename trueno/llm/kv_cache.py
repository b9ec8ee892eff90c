"""Preallocated KV cache and per-token scratch buffers: llama2.c's ``RunState``, with one
:class:`LayerState` per layer (what decode hands each layer's attention and norms).

All live where the model runs (:mod:`trueno.llm.runtime`): numpy arrays on the CPU, cupy
arrays on a GPU."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from trueno.errors import ConfigError
from trueno.llm.config import Config

if TYPE_CHECKING:
    from trueno.llm.runtime import Runtime
    from trueno.llm.weights import Weights

CACHE_TYPES = ("f16", "bf16", "f32")
# the array dtype of each: 16-bit formats as their bits, uint16 for IEEE half and int16 for
# bfloat16, so that the numba kernels tell the two apart by the dtype they are compiled for
CACHE_DTYPES = {"f16": np.uint16, "bf16": np.int16, "f32": np.float32}


class KVCache:
    """Keys and values of every layer: (n_layers, n_kv_heads, ctx, head_dim) each, float32
    (``cache_type="f32"``, exact), IEEE half (``"f16"``, llama.cpp's default: half the bytes
    per decode step) or bfloat16 (``"bf16"``: the same bytes, 8 bits of mantissa against
    f16's 11, and prefill attention's products in AVX512-BF16 where the host has it), the
    16-bit ones held as their bits (:data:`CACHE_DTYPES`), which the numba kernels read and
    write.

    Heads are outermost so that attention over one head reads contiguous memory.
    ``n`` is how many positions hold valid entries (the next position to write).
    """

    def __init__(
        self,
        config: Config,
        ctx: int,
        xp: ModuleType = np,
        cache_type: str = "f32",
        storage: tuple | None = None,
    ) -> None:
        """``storage``: (k, v) arrays of that shape and dtype to hold the entries instead of
        new ones (a batch's slots are views of one array; see :func:`slot_storage`)."""
        if cache_type not in CACHE_TYPES:
            raise ConfigError(
                f"unknown KV cache type {cache_type!r}; expected one of {', '.join(CACHE_TYPES)}"
            )
        shape = (config.n_layers, config.n_kv_heads, ctx, config.head_dim)
        dtype = CACHE_DTYPES[cache_type]
        self.cache_type, self.xp = cache_type, xp
        if storage is None:
            self.k = xp.zeros(shape, dtype=dtype)
            self.v = xp.zeros(shape, dtype=dtype)
        else:
            self.k, self.v = storage
            if self.k.shape != shape or self.k.dtype != dtype or self.v.shape != shape:
                raise ConfigError(f"KV storage of shape {self.k.shape} {self.k.dtype}; "
                                  f"expected {shape} {np.dtype(dtype)}")  # fmt: skip
        self.ctx = ctx
        self.n = 0

    @property
    def narrow(self) -> bool:
        """Whether entries are 16-bit (f16 or bf16) bits rather than float32."""
        return self.cache_type != "f32"

    @property
    def itemsize(self) -> int:
        """Bytes of one cached key (or value) element."""
        return self.k.itemsize

    def keys(self, layer: int, lo: int, hi: int) -> np.ndarray:
        """Keys of positions lo..hi-1 of ``layer`` as float32 (n_kv_heads, hi - lo, head_dim)."""
        return self._f32(self.k[layer], lo, hi)

    def values(self, layer: int, lo: int, hi: int) -> np.ndarray:
        """Values of positions lo..hi-1 of ``layer`` as float32, like :meth:`keys`."""
        return self._f32(self.v[layer], lo, hi)

    def _f32(self, heads, lo: int, hi: int):
        if not self.narrow:
            return heads[:, lo:hi]
        if self.xp is np and heads.flags.c_contiguous:
            # a numba loop (f16: vcvtph2ps): numpy's float16 astype converts one value at a time
            # (64K values: 119 us against 8.7); a context shift widens every moved key
            from trueno.llm.attention import widen_span

            out = np.empty((heads.shape[0], hi - lo, heads.shape[2]), np.float32)
            widen_span(heads, lo, hi, out)
            return out
        if self.cache_type == "bf16":  # on the host, as every 16-bit cache (see _bits)
            from trueno.floats import bf16_to_f32

            return bf16_to_f32(heads[:, lo:hi])
        return heads[:, lo:hi].view(np.float16).astype(np.float32)

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def store(self, layer: int, start: int, k: np.ndarray, v: np.ndarray) -> None:
        """Write rows k, v: (T, n_kv_heads * head_dim) at positions start..start+T-1."""
        n_kv, _, hd = self.k.shape[1:]
        t = k.shape[0]
        if self.narrow and self.xp is np:
            from trueno.llm import attention

            # numba loops (f16: vcvtps2ph, which needs F16C): numpy's astype is one at a time
            if attention.F16C or self.cache_type == "bf16":
                attention.narrow_rows(self.k[layer], start, np.ascontiguousarray(k))
                attention.narrow_rows(self.v[layer], start, np.ascontiguousarray(v))
                return
        k = k.reshape(t, n_kv, hd).transpose(1, 0, 2)
        v = v.reshape(t, n_kv, hd).transpose(1, 0, 2)
        if self.narrow:
            k, v = self._bits(k), self._bits(v)
        self.k[layer, :, start : start + t] = k
        self.v[layer, :, start : start + t] = v

    def _bits(self, x):
        """float32 x as this cache's 16-bit entries, rounded to nearest even (as the kernels'
        f32_to_f16_bits and f32_to_bf16_bits); 16-bit caches live on the host."""
        if self.cache_type == "bf16":
            from trueno.floats import f32_to_bf16

            return f32_to_bf16(x).view(np.int16)
        return x.astype(np.float16).view(np.uint16)

    def shift(self, n_keep: int, n_discard: int, rope: list, neox: bool) -> None:
        """Context shift (llama.cpp's): drop positions n_keep..n_keep+n_discard-1 and move the
        later entries down by ``n_discard``. Cached keys carry RoPE's rotation of their
        position, so each moved key is rotated back by ``n_discard`` positions (the angle is
        linear in the position: R(p - d) = R(-d) R(p)); values only move. ``rope``: each
        layer's (cos, sin) tables, as RunState.rope. ``n`` drops by ``n_discard``."""
        n, xp = self.n, self.xp
        lo, hi = n_keep + n_discard, n
        if n_discard < 1 or lo > n:
            raise ConfigError(f"cannot shift: keep {n_keep}, drop {n_discard} of {n} positions")
        for layer, (cos, sin) in enumerate(rope):
            c, s = cos[n_discard], sin[n_discard]
            r = xp.sqrt(c * c + s * s)  # the tables may carry an attention factor: unit angle
            c, s = c / r, -s / r  # R(-d)
            keys = xp.array(self.keys(layer, lo, hi), dtype=np.float32)  # (n_kv, m, head_dim)
            half = c.shape[0]
            a = keys[..., :half] if neox else keys[..., 0 : 2 * half : 2]
            b = keys[..., half : 2 * half] if neox else keys[..., 1 : 2 * half : 2]
            a, b = a * c - b * s, a * s + b * c
            if neox:
                keys[..., :half], keys[..., half : 2 * half] = a, b
            else:
                keys[..., 0 : 2 * half : 2], keys[..., 1 : 2 * half : 2] = a, b
            if self.narrow:
                keys = self._bits(keys)
            self.k[layer, :, n_keep : hi - n_discard] = keys
            self.v[layer, :, n_keep : hi - n_discard] = self.v[layer, :, lo:hi].copy()
        self.n = n - n_discard


def slot_storage(
    config: Config, ctx: int, n_slots: int, xp: ModuleType = np, cache_type: str = "f32"
) -> tuple:
    """Keys and values of ``n_slots`` caches in one pair of arrays (n_layers, n_slots,
    n_kv_heads, ctx, head_dim): slot s's :class:`KVCache` storage is ``(k[:, s], v[:, s])``,
    and ``k[layer]`` is every slot's keys of one layer, as a batched decode step's attention
    takes them (:func:`trueno.llm.kernels.attention_rows`)."""
    shape = (config.n_layers, n_slots, config.n_kv_heads, ctx, config.head_dim)
    dtype = CACHE_DTYPES[cache_type]
    return xp.zeros(shape, dtype=dtype), xp.zeros(shape, dtype=dtype)


def rope_tables(
    rope_dim: int,
    base: float,
    ctx: int,
    scale: float = 1.0,
    factors: np.ndarray | None = None,
    mscale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin tables (ctx, rope_dim // 2): angle = pos * scale * base^(-2i / rope_dim) /
    factors[i], both times ``mscale`` (LongRoPE's attention factor, as ggml_rope_ext's)."""
    inv_freq = base ** (-np.arange(0, rope_dim, 2, dtype=np.float64) / rope_dim)
    if factors is not None:
        inv_freq = inv_freq / factors.astype(np.float64)
    angles = (np.arange(ctx, dtype=np.float64) * scale)[:, None] * inv_freq[None, :]
    return (
        (np.cos(angles) * mscale).astype(np.float32),
        (np.sin(angles) * mscale).astype(np.float32),
    )


def no_rope_tables(rope_dim: int, ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """cos = 1, sin = 0: the rotation that leaves q and k as they are (a NoPE layer), exactly."""
    half = (ctx, rope_dim // 2)
    return np.ones(half, np.float32), np.zeros(half, np.float32)


@dataclass(frozen=True)
class LayerState:
    """One layer's arguments to decode's attention and norms, looked up once, as llama2.c's
    ``forward`` takes ``key_cache + l * seq_len * kv_dim`` and ``w->rms_att_weight + l * dim``:
    the layer's slice of the KV cache, its RoPE tables (identity on a NoPE layer), its sliding
    window, its weights for q/k norms and post norms (ones where the architecture has none:
    the kernels skip them), and the model's attention constants."""

    key_cache: object  # (n_kv_heads, ctx, head_dim): this layer's keys
    value_cache: object  # (n_kv_heads, ctx, head_dim): this layer's values
    cos: object  # (ctx, rope_dim // 2)
    sin: object
    window: int  # positions a query sees (0: all)
    q_norm: object  # (head_dim,) per-head RMS norm weights of q and k
    k_norm: object
    post_attn_norm: object  # (dim,) norms after the attention and the FFN (gemma, olmo2)
    post_ffn_norm: object
    qk_norm: bool  # whether the per-head q/k norms apply
    neox: bool  # RoPE pairs (i, i + rope_dim / 2) instead of (2i, 2i + 1)
    eps: float
    scale: float  # of the q.k scores
    softcap: float  # > 0: scores capped as softcap * tanh(score / softcap) (gemma2)


class RunState:
    """Every activation buffer of one decode step plus the KV cache, allocated once, on the
    runtime's device (``runtime=None``: the CPU), and ``layers``: each layer's
    :class:`LayerState` over this state's cache (when built with the model's ``weights``).
    ``rope``: (cos, sin) tables to share (read-only) instead of building them; ``kv_storage``:
    the cache's (k, v) arrays (:class:`KVCache`'s ``storage``)."""

    def __init__(
        self,
        config: Config,
        ctx: int,
        rope_factors: np.ndarray | None = None,
        runtime: Runtime | None = None,
        cache_type: str = "f32",
        weights: Weights | None = None,
        rope: list | None = None,
        kv_storage: tuple | None = None,
    ) -> None:
        c = config
        xp = np if runtime is None else runtime.xp
        asarray = np.ascontiguousarray if runtime is None else runtime.asarray
        host = runtime is None or runtime.host_memory
        self.cache = KVCache(c, ctx, xp, cache_type, kv_storage)
        f32 = np.float32
        self.x = xp.zeros((1, c.dim), f32)  # residual stream
        # the embedding row of a token is looked up on the host, then copied into x
        self.x_host = self.x if host else np.zeros((1, c.dim), f32)
        self.xb = xp.zeros((1, c.dim), f32)  # normed input of a sublayer
        self.xo = xp.zeros((1, c.dim), f32)  # sublayer output
        q_dim, kv_dim, hidden = c.q_dim, c.kv_dim, c.hidden_dim
        self.qkv = xp.zeros(q_dim + 2 * kv_dim, f32)  # output of the stacked q|k|v matvec
        # views: (1, n) rows, each C-contiguous: the token's query, key and value
        self.q = self.qkv[:q_dim].reshape(1, q_dim)
        self.k = self.qkv[q_dim : q_dim + kv_dim].reshape(1, kv_dim)
        self.v = self.qkv[q_dim + kv_dim :].reshape(1, kv_dim)
        self.att = xp.zeros((1, q_dim), f32)  # attention output, heads concatenated
        self.gate_up = xp.zeros(2 * hidden, f32)  # output of the stacked gate|up matvec
        self.hg = self.gate_up[:hidden].reshape(1, hidden)  # FFN gate
        self.hu = self.gate_up[hidden:].reshape(1, hidden)  # FFN up
        self.ha = xp.zeros((1, hidden), f32)  # act(gate) * up
        per_head = runtime is not None and runtime.scores_per_head
        self.scores = xp.zeros((c.n_heads, ctx) if per_head else ctx, f32)
        self.ones_head = xp.ones(c.head_dim, f32)  # stands in for absent q/k norm weights
        self.ones_dim = xp.ones(c.dim, f32)  # stands in for absent pre/post-norm weights
        self.logits = xp.zeros(c.vocab_size, f32)
        self.pos = xp.zeros(1, np.int32)
        self.rope = rope if rope is not None else self._rope_tables(c, ctx, rope_factors, asarray)
        self.layers = [] if weights is None else [
            self._layer(c, i, lw) for i, lw in enumerate(weights.layers)
        ]  # fmt: skip

    def _layer(self, c: Config, i: int, lw) -> LayerState:
        cos, sin = self.rope[i]
        post = c.post_norms  # ones stand in for absent norms (the kernels skip them)
        return LayerState(
            key_cache=self.cache.k[i], value_cache=self.cache.v[i], cos=cos, sin=sin,
            window=c.layer_window(i),
            q_norm=lw.q_norm if c.qk_norm else self.ones_head,
            k_norm=lw.k_norm if c.qk_norm else self.ones_head,
            post_attn_norm=lw.post_attn_norm if post else self.ones_dim,
            post_ffn_norm=lw.post_ffn_norm if post else self.ones_dim,
            qk_norm=c.qk_norm, neox=c.rope_neox, eps=c.norm_eps, scale=c.attn_scale,
            softcap=c.attn_softcap,
        )  # fmt: skip

    @staticmethod
    def _rope_tables(c: Config, ctx: int, rope_factors, asarray) -> list:
        """One (cos, sin) table per distinct rope base, indexed by layer."""
        tables: dict = {}
        rope = []
        for layer in range(c.n_layers):
            key: tuple[float, float] | None = (c.layer_rope_base(layer), c.layer_rope_scale(layer))
            if not c.uses_rope(layer):
                key = None
            if key not in tables:
                if key is None:
                    cos, sin = no_rope_tables(c.rope_dim, ctx)
                else:
                    uses_factors = rope_factors if key[0] == c.rope_base else None
                    cos, sin = rope_tables(c.rope_dim, key[0], ctx, key[1], uses_factors,
                                           c.rope_attn_factor)  # fmt: skip
                tables[key] = (asarray(cos), asarray(sin))
            rope.append(tables[key])
        return rope
