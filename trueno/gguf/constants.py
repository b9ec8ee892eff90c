"""GGUF/GGML format constants: the single source of truth for value types, GGML tensor types
with their block layout, and the standard metadata keys. Layouts are written as sums of the
C struct's fields so the byte layout documents itself (as in ggml-common.h)."""

from __future__ import annotations

from enum import IntEnum

GGUF_MAGIC = b"GGUF"
GGUF_MAGIC_BIG_ENDIAN = b"FUGG"  # what a big-endian writer's magic looks like read as LE u32
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME: a tensor name is at most MAX_NAME - 1 bytes
QK_K = 256  # super-block size of the K-quants
K_SCALE_SIZE = 12


class GGUFValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# numpy dtype string (little-endian) of each fixed-size value type
VALUE_DTYPE = {
    GGUFValueType.UINT8: "<u1",
    GGUFValueType.INT8: "<i1",
    GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4",
    GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4",
    GGUFValueType.BOOL: "<u1",
    GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8",
    GGUFValueType.FLOAT64: "<f8",
}


class GGMLType(IntEnum):
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39


# (elements per block, bytes per block), written as the struct's fields
BLOCK_LAYOUT: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.BF16: (1, 2),
    GGMLType.F64: (1, 8),
    GGMLType.I8: (1, 1),
    GGMLType.I16: (1, 2),
    GGMLType.I32: (1, 4),
    GGMLType.I64: (1, 8),
    GGMLType.Q4_0: (32, 2 + 16),  # d, qs[16]
    GGMLType.Q4_1: (32, 2 + 2 + 16),  # d, m, qs[16]
    GGMLType.Q5_0: (32, 2 + 4 + 16),  # d, qh[4], qs[16]
    GGMLType.Q5_1: (32, 2 + 2 + 4 + 16),  # d, m, qh[4], qs[16]
    GGMLType.Q8_0: (32, 2 + 32),  # d, qs[32]
    GGMLType.Q8_1: (32, 4 + 4 + 32),  # d, s (f32), qs[32]
    GGMLType.Q2_K: (256, 2 + 2 + QK_K // 16 + QK_K // 4),  # d, dmin, scales, qs
    GGMLType.Q3_K: (256, 2 + QK_K // 4 + QK_K // 8 + 12),  # d, qs, hmask, scales
    GGMLType.Q4_K: (256, 2 + 2 + K_SCALE_SIZE + QK_K // 2),  # d, dmin, scales, qs
    GGMLType.Q5_K: (256, 2 + 2 + K_SCALE_SIZE + QK_K // 8 + QK_K // 2),  # d, dmin, sc, qh, qs
    GGMLType.Q6_K: (256, 2 + QK_K // 2 + QK_K // 4 + QK_K // 16),  # ql, qh, scales, d
    GGMLType.Q8_K: (256, 4 + QK_K + QK_K // 8),  # d (f32), qs, bsums (i16 x 16)
    GGMLType.IQ2_XXS: (256, 2 + QK_K // 4),
    GGMLType.IQ2_XS: (256, 2 + QK_K // 4 + QK_K // 32),
    GGMLType.IQ3_XXS: (256, 2 + QK_K // 4 + QK_K // 8),
    GGMLType.IQ1_S: (256, 2 + QK_K // 8 + QK_K // 16),
    GGMLType.IQ4_NL: (32, 2 + 16),
    GGMLType.IQ3_S: (256, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
    GGMLType.IQ2_S: (256, 2 + QK_K // 4 + QK_K // 16),
    GGMLType.IQ4_XS: (256, 2 + 2 + QK_K // 64 + QK_K // 2),
    GGMLType.IQ1_M: (256, QK_K // 8 + QK_K // 16 + QK_K // 32),
    GGMLType.TQ1_0: (256, 2 + 4 * 13),
    GGMLType.TQ2_0: (256, 2 + 64),
    GGMLType.MXFP4: (32, 1 + 16),
}


def tensor_nbytes(ggml_type: GGMLType, n_elements: int) -> int:
    """Bytes that ``n_elements`` of ``ggml_type`` occupy (n_elements must fill whole blocks)."""
    block_elems, block_bytes = BLOCK_LAYOUT[ggml_type]
    return (n_elements // block_elems) * block_bytes


class Keys:
    """Standard metadata keys. ``{arch}`` is filled with general.architecture."""

    ARCHITECTURE = "general.architecture"
    NAME = "general.name"
    ALIGNMENT = "general.alignment"
    FILE_TYPE = "general.file_type"
    QUANTIZATION_VERSION = "general.quantization_version"

    CONTEXT_LENGTH = "{arch}.context_length"
    EMBEDDING_LENGTH = "{arch}.embedding_length"
    BLOCK_COUNT = "{arch}.block_count"
    FEED_FORWARD_LENGTH = "{arch}.feed_forward_length"
    VOCAB_SIZE = "{arch}.vocab_size"
    HEAD_COUNT = "{arch}.attention.head_count"
    HEAD_COUNT_KV = "{arch}.attention.head_count_kv"
    KEY_LENGTH = "{arch}.attention.key_length"
    VALUE_LENGTH = "{arch}.attention.value_length"
    LAYERNORM_RMS_EPS = "{arch}.attention.layer_norm_rms_epsilon"
    SLIDING_WINDOW = "{arch}.attention.sliding_window"
    ROPE_DIMENSION_COUNT = "{arch}.rope.dimension_count"
    ROPE_FREQ_BASE = "{arch}.rope.freq_base"
    ROPE_SCALING_TYPE = "{arch}.rope.scaling.type"
    ROPE_SCALING_FACTOR = "{arch}.rope.scaling.factor"
    EXPERT_COUNT = "{arch}.expert_count"
    EXPERT_USED_COUNT = "{arch}.expert_used_count"
    EXPERT_FEED_FORWARD_LENGTH = "{arch}.expert_feed_forward_length"
    EXPERT_WEIGHTS_NORM = "{arch}.expert_weights_norm"
    EXPERT_WEIGHTS_SCALE = "{arch}.expert_weights_scale"
    EXPERT_GATING_FUNC = "{arch}.expert_gating_func"
    ROPE_SCALING_ATTN_FACTOR = "{arch}.rope.scaling.attn_factor"
    ROPE_SCALING_ORIG_CTX = "{arch}.rope.scaling.original_context_length"
    ATTENTION_SCALE = "{arch}.attention.scale"
    ATTN_LOGIT_SOFTCAPPING = "{arch}.attn_logit_softcapping"
    FINAL_LOGIT_SOFTCAPPING = "{arch}.final_logit_softcapping"
    EMBEDDING_SCALE = "{arch}.embedding_scale"
    RESIDUAL_SCALE = "{arch}.residual_scale"
    LOGIT_SCALE = "{arch}.logit_scale"

    TOKENIZER_MODEL = "tokenizer.ggml.model"
    TOKENIZER_PRE = "tokenizer.ggml.pre"
    TOKENS = "tokenizer.ggml.tokens"
    TOKEN_TYPE = "tokenizer.ggml.token_type"
    SCORES = "tokenizer.ggml.scores"
    MERGES = "tokenizer.ggml.merges"
    BOS_ID = "tokenizer.ggml.bos_token_id"
    EOS_ID = "tokenizer.ggml.eos_token_id"
    EOT_ID = "tokenizer.ggml.eot_token_id"
    EOM_ID = "tokenizer.ggml.eom_token_id"
    UNK_ID = "tokenizer.ggml.unknown_token_id"
    SEP_ID = "tokenizer.ggml.seperator_token_id"
    PAD_ID = "tokenizer.ggml.padding_token_id"
    ADD_BOS = "tokenizer.ggml.add_bos_token"
    ADD_EOS = "tokenizer.ggml.add_eos_token"
    ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix"
    CHAT_TEMPLATE = "tokenizer.chat_template"

    @staticmethod
    def arch(key: str, arch: str) -> str:
        return key.format(arch=arch)


class TokenType(IntEnum):
    UNDEFINED = 0
    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


class ExpertGatingFunc(IntEnum):
    """``{arch}.expert_gating_func``: how a MoE router turns its logits into expert weights
    (llama.cpp's llama_expert_gating_func_type; 0 = the architecture's default)."""

    NONE = 0
    SOFTMAX = 1
    SIGMOID = 2
    SOFTMAX_WEIGHT = 3  # softmax over the selected experts' logits only
    SQRT_SOFTPLUS = 4


# numpy dtype (little-endian) of the zero-copy view for types stored element by element
PLAIN_DTYPE = {
    GGMLType.F32: "<f4",
    GGMLType.F16: "<f2",
    GGMLType.BF16: "<u2",
    GGMLType.F64: "<f8",
    GGMLType.I8: "<i1",
    GGMLType.I16: "<i2",
    GGMLType.I32: "<i4",
    GGMLType.I64: "<i8",
}
