"""Registry and input validation: typed errors that name what was found and expected."""

from __future__ import annotations

import numpy as np
import pytest

from trueno.errors import DTypeError, QuantError, UnsupportedError
from trueno.gguf.constants import GGMLType
from trueno.quant import dequantize, get_format, matvec, prepare, quantize, supported_types


def test_registry_resolves_every_supported_type():
    for t in supported_types():
        fmt = get_format(t)
        assert fmt.ggml_type == t
        assert get_format(t.name) is fmt and get_format(int(t)) is fmt


def test_unknown_and_unsupported_types():
    with pytest.raises(UnsupportedError, match="IQ2_XXS"):
        get_format(GGMLType.IQ2_XXS)
    with pytest.raises(UnsupportedError, match="unknown"):
        get_format(12345)


def test_wrong_byte_count_names_both_sizes():
    blocks = np.zeros(18 * 3, dtype=np.uint8)
    with pytest.raises(QuantError, match=r"needs 72 bytes, got 54"):
        dequantize(blocks, GGMLType.Q4_0, (2, 64))


def test_row_not_multiple_of_block():
    with pytest.raises(QuantError, match="not a multiple of the block size 32"):
        dequantize(np.zeros(18, np.uint8), GGMLType.Q4_0, (1, 33))
    with pytest.raises(QuantError, match="256"):
        quantize(np.zeros((2, 100), np.float32), GGMLType.Q4_K)


def test_wrong_dtypes():
    with pytest.raises(DTypeError, match="uint8"):
        dequantize(np.zeros(9, np.uint16), GGMLType.Q4_0, (1, 32))
    with pytest.raises(DTypeError, match="float"):
        quantize(np.zeros((1, 32), np.int32), GGMLType.Q8_0)
    w = quantize(np.ones((2, 32), np.float32), GGMLType.Q8_0)
    with pytest.raises(DTypeError, match="float"):
        matvec(w, GGMLType.Q8_0, (2, 32), np.zeros(32, np.int64))


def test_bad_matvec_inputs():
    w = quantize(np.ones((2, 64), np.float32), GGMLType.Q4_0)
    with pytest.raises(QuantError, match=r"shape \(64,\)"):
        matvec(w, GGMLType.Q4_0, (2, 64), np.zeros(32, np.float32))
    with pytest.raises(QuantError, match="2-D"):
        prepare(w, GGMLType.Q4_0, (2, 1, 64))
    p = prepare(w, GGMLType.Q4_0, (2, 64))
    with pytest.raises(QuantError, match="out"):
        p.matvec(np.zeros(64, np.float32), out=np.zeros(3, np.float32))
    with pytest.raises(QuantError, match=r"\(n, 64\)"):
        p.matmul(np.zeros((3, 32), np.float32))


def test_quantize_without_quantizer():
    with pytest.raises(UnsupportedError, match="Q2_K"):
        quantize(np.zeros((1, 256), np.float32), GGMLType.Q2_K)
