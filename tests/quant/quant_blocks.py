"""Random GGML blocks whose f16 scale fields are finite (shared by the quant tests)."""

from __future__ import annotations

import numpy as np

from trueno.gguf.constants import BLOCK_LAYOUT, GGMLType

# byte offsets of the f16 scale fields of each block (the struct's ggml_half members)
F16_FIELDS = {
    GGMLType.Q4_0: [0],
    GGMLType.Q4_1: [0, 2],
    GGMLType.Q5_0: [0],
    GGMLType.Q5_1: [0, 2],
    GGMLType.Q8_0: [0],
    GGMLType.Q2_K: [80, 82],
    GGMLType.Q3_K: [108],
    GGMLType.Q4_K: [0, 2],
    GGMLType.Q5_K: [0, 2],
    GGMLType.Q6_K: [208],
    GGMLType.IQ4_NL: [0],
    GGMLType.IQ4_XS: [0],
}
BLOCK_TYPES = list(F16_FIELDS)
ALL_TYPES = BLOCK_TYPES + [GGMLType.F32, GGMLType.F16, GGMLType.BF16]


def random_blocks(
    rng: np.random.Generator, ggml_type: GGMLType, n_blocks: int, scale: float = 1.0
) -> np.ndarray:
    """(n_blocks, block_bytes) uint8 with random payload and finite random scales."""
    elems, nbytes = BLOCK_LAYOUT[ggml_type]
    if ggml_type == GGMLType.F32:
        return rng.standard_normal(n_blocks).astype(np.float32).view(np.uint8).reshape(-1, 4)
    if ggml_type == GGMLType.F16:
        return rng.standard_normal(n_blocks).astype(np.float16).view(np.uint8).reshape(-1, 2)
    if ggml_type == GGMLType.BF16:
        bits = rng.standard_normal(n_blocks).astype(np.float32).view(np.uint32) >> 16
        return bits.astype(np.uint16).view(np.uint8).reshape(-1, 2)
    blocks = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
    for off in F16_FIELDS[ggml_type]:
        vals = (rng.uniform(-scale, scale, n_blocks)).astype(np.float16)
        blocks[:, off : off + 2] = vals.view(np.uint8).reshape(-1, 2)
    return blocks
