"""Model hyperparameters read from GGUF metadata: one frozen dataclass for every architecture.

Architecture differences (RoPE style, biases, Gemma's extra norms, softcaps, Granite's
multipliers ...) are fields here, so the
forward pass in :mod:`trueno.llm.model` is one function, not a copy per architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trueno.errors import ModelError, UnsupportedError
from trueno.gguf.constants import ExpertGatingFunc, Keys

if TYPE_CHECKING:
    from trueno.gguf.reader import GGUFFile

SUPPORTED_ARCHS = ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "granite", "olmo2", "phi3",
                   "smollm3", "qwen3moe")  # fmt: skip
# rotate (x[i], x[i + d/2]); llama, granite and smollm3 rotate adjacent pairs (llama.cpp's
# llama_model_rope_type: NEOX vs NORM)
NEOX_ROPE_ARCHS = ("qwen2", "qwen3", "gemma2", "gemma3", "olmo2", "phi3", "qwen3moe")
GEMMA_ARCHS = ("gemma2", "gemma3")  # embeddings times sqrt(dim), gelu_tanh FFN, post norms
# what GGUF files do not carry, hard-coded as llama.cpp does
SWA_PATTERN = {"gemma2": 2, "gemma3": 6}  # layer i is global when (i + 1) % pattern == 0
GEMMA2_DEFAULT_WINDOW = 4096
GEMMA2_SOFTCAPS = (50.0, 30.0)  # attention, final logits (llama_hparams defaults)
GEMMA2_27B_LAYERS = 46  # query_pre_attn_scalar = dim / n_heads there, head_dim elsewhere
GEMMA3_LOCAL_ROPE_BASE = 10000.0
# RMS norm of each q/k head, weights (head_dim,)
QK_HEAD_NORM_ARCHS = ("qwen3", "gemma3", "qwen3moe")
SMOLLM3_NOPE_STEP = 4  # every 4th layer has no RoPE (llama.cpp: n_no_rope_layer_step = 4)


@dataclass(frozen=True)
class Config:
    """Hyperparameters of one model. Derived values are properties, computed in one place."""

    arch: str
    vocab_size: int
    dim: int  # d_model
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_dim: int  # FFN inner size
    context_length: int
    norm_eps: float
    rope_base: float
    rope_dim: int  # leading dims of each head that are rotated
    rope_neox: bool
    rope_scale: float = 1.0  # positions are multiplied by this (linear rope scaling)
    rope_base_local: float = 0.0  # gemma3 sliding-window layers; 0 = same as rope_base
    sliding_window: int = 0  # 0 = every layer attends to the full context
    swa_pattern: int = 0  # layer i is global when (i + 1) % swa_pattern == 0
    embed_scale: float = 1.0  # gemma: embeddings times sqrt(dim)
    qk_norm: bool = False  # gemma3, qwen3: RMS norm of each q/k head before RoPE
    qk_norm_full: bool = False  # olmo2: RMS norm over the whole q / k projections before RoPE
    pre_norms: bool = True  # olmo2: False, no norm before attention and the FFN
    post_norms: bool = False  # gemma2/3, olmo2: norm after attention and after the FFN
    activation: str = "silu"  # "silu" or "gelu_tanh" (gate activation of the gated FFN)
    # mixture of experts (mixtral: llama with expert tensors; qwen3moe); see trueno.llm.moe
    n_experts: int = 0  # experts per layer; 0 = a dense FFN
    n_experts_used: int = 0  # experts each token is routed to (top-k)
    expert_hidden_dim: int = 0  # FFN inner size of one expert
    expert_gating: ExpertGatingFunc = ExpertGatingFunc.SOFTMAX  # router logits -> weights
    expert_weights_norm: bool = False  # the top-k weights renormalized to sum to 1
    expert_weights_scale: float = 1.0  # then multiplied by this
    attention_scale: float = 0.0  # scores times this (granite, gemma2); 0 = 1/sqrt(head_dim)
    attn_softcap: float = 0.0  # gemma2: scores -> cap * tanh(scores / cap); 0 = off
    final_softcap: float = 0.0  # gemma2: the same on the logits
    residual_scale: float = 1.0  # granite: x += residual_scale * sublayer(x)
    logit_scale: float = 1.0  # granite: logits divided by this
    nope_step: int = 0  # smollm3: layer i has no RoPE when (i + 1) % nope_step == 0
    rope_attn_factor: float = 1.0  # phi3 LongRoPE: cos and sin tables times this
    rope_orig_ctx: int = 0  # phi3: long rope factors when the context is longer than this

    # ---- derived values -------------------------------------------------------------------
    @property
    def n_kv_groups(self) -> int:
        """Query heads per KV head (GQA; 1 = MHA, n_heads = MQA)."""
        return self.n_heads // self.n_kv_heads

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def attn_scale(self) -> float:
        # gemma3 270m..12b: query_pre_attn_scalar == head_dim, so it uses 1/sqrt(head_dim)
        return self.attention_scale or 1.0 / math.sqrt(self.head_dim)

    @property
    def qk_norm_any(self) -> bool:
        """Whether q and k are normed before RoPE (per head, or over the whole projection)."""
        return self.qk_norm or self.qk_norm_full

    def uses_rope(self, layer: int) -> bool:
        """Whether ``layer`` rotates q and k (smollm3 leaves every ``nope_step``-th alone)."""
        return self.nope_step <= 0 or (layer + 1) % self.nope_step != 0

    def is_sliding(self, layer: int) -> bool:
        """Whether ``layer`` attends to a sliding window (local) instead of the full context."""
        if self.sliding_window <= 0 or self.swa_pattern <= 0:
            return False
        return (layer + 1) % self.swa_pattern != 0

    def layer_rope_base(self, layer: int) -> float:
        if self.is_sliding(layer) and self.rope_base_local > 0:
            return self.rope_base_local
        return self.rope_base

    def layer_rope_scale(self, layer: int) -> float:
        return 1.0 if self.is_sliding(layer) and self.rope_base_local > 0 else self.rope_scale

    def layer_window(self, layer: int) -> int:
        """Attention window of ``layer`` in tokens (0 = unlimited)."""
        return self.sliding_window if self.is_sliding(layer) else 0

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_gguf(cls, gf: GGUFFile) -> Config:
        """The config of an opened GGUF file (metadata plus tensor shapes)."""
        shapes = {name: tuple(int(s) for s in t.shape) for name, t in gf.tensors.items()}
        return cls.from_metadata(gf.metadata, shapes)

    @classmethod
    def from_metadata(cls, metadata: dict, tensor_shapes: dict | None = None) -> Config:
        """Read the config from GGUF ``metadata``; ``tensor_shapes`` fills what it lacks
        (vocab size from ``token_embd.weight``)."""
        arch = _scalar(metadata.get(Keys.ARCHITECTURE))
        if arch is None:
            raise ModelError(f"metadata has no {Keys.ARCHITECTURE!r}")
        arch = str(arch)
        if arch not in SUPPORTED_ARCHS:
            raise UnsupportedError(
                f"architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_ARCHS)})"
            )
        shapes = tensor_shapes or {}

        def get(key: str, default=None, required: bool = True):
            full = Keys.arch(key, arch)
            value = _scalar(metadata.get(full))
            if value is None:
                if required and default is None:
                    raise ModelError(f"metadata key {full!r} is missing")
                return default
            return value

        dim = int(get(Keys.EMBEDDING_LENGTH))
        n_heads = int(get(Keys.HEAD_COUNT))
        n_kv_heads = int(get(Keys.HEAD_COUNT_KV, n_heads))
        head_dim = int(get(Keys.KEY_LENGTH, dim // n_heads))
        value_dim = int(get(Keys.VALUE_LENGTH, head_dim))
        if value_dim != head_dim:
            raise UnsupportedError(f"value_length {value_dim} != key_length {head_dim}")
        if n_kv_heads <= 0 or n_heads % n_kv_heads:
            raise ModelError(
                f"head_count {n_heads} is not a multiple of head_count_kv {n_kv_heads}"
            )
        vocab = get(Keys.VOCAB_SIZE, required=False)
        if vocab is None:
            if "token_embd.weight" not in shapes:
                raise ModelError("cannot tell the vocabulary size: no vocab_size, no token_embd")
            vocab = shapes["token_embd.weight"][0]
        scaling = get(Keys.ROPE_SCALING_TYPE, "none", required=False)
        factor = float(get(Keys.ROPE_SCALING_FACTOR, 1.0, required=False) or 1.0)
        rope_scale = 1.0 / factor if str(scaling) == "linear" and factor > 0 else 1.0
        n_layers = int(get(Keys.BLOCK_COUNT))
        context_length = int(get(Keys.CONTEXT_LENGTH, 2048, required=False))
        gemma = arch in GEMMA_ARCHS
        swa_pattern = SWA_PATTERN.get(arch, 0)
        window = 0
        if arch == "gemma2":
            window = int(get(Keys.SLIDING_WINDOW, GEMMA2_DEFAULT_WINDOW, required=False))
        elif arch == "gemma3":
            window = int(get(Keys.SLIDING_WINDOW, 0, required=False))
        elif arch == "olmo2" and int(get(Keys.SLIDING_WINDOW, 0, required=False)) > 0:
            raise UnsupportedError("olmo2 with sliding-window layers (OLMo 3) is not supported")

        def scale_key(key: str) -> float:  # granite's multipliers: absent or 0 = none
            return float(get(key, 0.0, required=False) or 0.0)

        granite = arch == "granite"
        attention_scale = scale_key(Keys.ATTENTION_SCALE) if granite else 0.0
        attn_softcap = final_softcap = 0.0
        if arch == "gemma2":
            attn_softcap = float(get(Keys.ATTN_LOGIT_SOFTCAPPING, GEMMA2_SOFTCAPS[0], False))
            final_softcap = float(get(Keys.FINAL_LOGIT_SOFTCAPPING, GEMMA2_SOFTCAPS[1], False))
            # GGUF has no query_pre_attn_scalar: llama.cpp's rule (gemma_pytorch's config)
            scalar = dim // n_heads if n_layers == GEMMA2_27B_LAYERS else head_dim
            attention_scale = 1.0 / math.sqrt(scalar)
        embed_scale = math.sqrt(dim) if gemma else 1.0
        if granite:
            embed_scale = scale_key(Keys.EMBEDDING_SCALE) or 1.0
        return cls(
            arch=arch,
            vocab_size=int(vocab),
            dim=dim,
            n_layers=n_layers,
            n_heads=n_heads,
            n_kv_heads=n_kv_heads,
            head_dim=head_dim,
            hidden_dim=int(get(Keys.FEED_FORWARD_LENGTH)),
            context_length=context_length,
            norm_eps=float(get(Keys.LAYERNORM_RMS_EPS, 1e-5, required=False)),
            rope_base=float(get(Keys.ROPE_FREQ_BASE, 10000.0, required=False)),
            rope_dim=int(get(Keys.ROPE_DIMENSION_COUNT, head_dim, required=False)),
            rope_neox=arch in NEOX_ROPE_ARCHS,
            rope_scale=rope_scale,
            rope_base_local=GEMMA3_LOCAL_ROPE_BASE if arch == "gemma3" else 0.0,
            sliding_window=window,
            swa_pattern=swa_pattern,
            embed_scale=embed_scale,
            qk_norm=arch in QK_HEAD_NORM_ARCHS,
            qk_norm_full=arch == "olmo2",
            pre_norms=arch != "olmo2",
            post_norms=gemma or arch == "olmo2",
            activation="gelu_tanh" if gemma else "silu",
            attention_scale=attention_scale,
            attn_softcap=attn_softcap,
            final_softcap=final_softcap,
            residual_scale=(scale_key(Keys.RESIDUAL_SCALE) or 1.0) if granite else 1.0,
            logit_scale=(scale_key(Keys.LOGIT_SCALE) or 1.0) if granite else 1.0,
            nope_step=SMOLLM3_NOPE_STEP if arch == "smollm3" else 0,
            rope_attn_factor=float(get(Keys.ROPE_SCALING_ATTN_FACTOR, 1.0, required=False)),
            rope_orig_ctx=int(get(Keys.ROPE_SCALING_ORIG_CTX, context_length, required=False)),
            **_experts(arch, get),
        )


def _experts(arch: str, get) -> dict:
    """The mixture-of-experts fields of a Config (none for a dense model). Unset keys take
    what llama.cpp hard-codes for mixtral and qwen3moe: softmax, renormalized top-k."""
    n = int(get(Keys.EXPERT_COUNT, 0, required=False))
    if n == 0:
        if arch == "qwen3moe":
            raise ModelError(f"metadata key {Keys.arch(Keys.EXPERT_COUNT, arch)!r} is missing")
        return {}
    used = int(get(Keys.EXPERT_USED_COUNT))
    if not 0 < used <= n:
        raise ModelError(f"expert_used_count {used} is not in 1..expert_count {n}")
    gating = int(get(Keys.EXPERT_GATING_FUNC, 0, required=False))
    try:
        gating = ExpertGatingFunc(gating)
    except ValueError:
        raise UnsupportedError(f"expert_gating_func {gating} is not supported") from None
    hidden = get(Keys.EXPERT_FEED_FORWARD_LENGTH, required=False)
    return dict(
        n_experts=n,
        n_experts_used=used,
        expert_hidden_dim=int(hidden if hidden is not None else get(Keys.FEED_FORWARD_LENGTH)),
        expert_gating=ExpertGatingFunc.SOFTMAX if gating == ExpertGatingFunc.NONE else gating,
        expert_weights_norm=bool(get(Keys.EXPERT_WEIGHTS_NORM, True, required=False)),
        expert_weights_scale=float(get(Keys.EXPERT_WEIGHTS_SCALE, 1.0, required=False)),
    )


def _scalar(value):
    """A metadata value as a Python scalar (readers may hand back 1-element arrays)."""
    if value is None:
        return None
    if hasattr(value, "shape") and getattr(value, "shape", None) in ((), (1,)):
        return value.item() if hasattr(value, "item") else value[0]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value
