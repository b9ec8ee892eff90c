"""The quantized matvec kernels' block decoding, checked on the CPU against gguf-py.

``emulate_quant.cu`` includes ``quant_matvec.cu`` and runs its ``__host__ __device__`` block-dot
functions lane by lane in the kernels' loop order; nvcc builds it as a host shared library
(no GPU involved). Blocks are random bytes (every bit pattern of the quants, scales and high
bits) with finite f16 scales, so nothing here depends on our own quantizer. The GPU run of the
same kernels is in test_gpu_parity.py (skips without a device).
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, quants

from trueno.backends.cuda import include_options, source_path
from trueno.errors import QuantError, UnsupportedError
from trueno.gguf.constants import BLOCK_LAYOUT, GGMLType
from trueno.quant.gpu import KERNEL_OF, check_blocks

HERE = Path(__file__).resolve().parent
F16_FIELDS = {  # byte offsets of the f16 scale fields in each block (ggml-common.h)
    GGMLType.Q4_0: (0,),
    GGMLType.Q4_1: (0, 2),
    GGMLType.Q5_0: (0,),
    GGMLType.Q5_1: (0, 2),
    GGMLType.Q8_0: (0,),
    GGMLType.Q4_K: (0, 2),
    GGMLType.Q6_K: (208,),
}


@pytest.fixture(scope="module")
def emulator(nvcc_path, tmp_path_factory):
    lib = tmp_path_factory.mktemp("emu") / "libemulate_quant.so"
    cmd = [
        nvcc_path,
        "-shared",
        "-Xcompiler",
        "-fPIC",
        "-O2",
        "-arch=sm_80",
        "-DTRUENO_HOST_EMULATION",
        *include_options(),
        f"-I{source_path('quant_matvec').parent}",
        str(HERE / "emulate_quant.cu"),
        "-o",
        str(lib),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    so = ctypes.CDLL(str(lib))
    so.emulate_matvec.restype = ctypes.c_int
    so.emulate_half_to_float.restype = ctypes.c_float
    so.emulate_half_to_float.argtypes = [ctypes.c_uint16]
    return so


def random_blocks(t: GGMLType, rows: int, cols: int, rng) -> np.ndarray:
    elems, nbytes = BLOCK_LAYOUT[t]
    blocks = rng.integers(0, 256, (rows * cols // elems, nbytes), dtype=np.uint8)
    for off in F16_FIELDS[t]:
        scale = rng.uniform(-0.05, 0.05, blocks.shape[0]).astype(np.float16)
        blocks[:, off : off + 2] = scale.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


def emulate(so, t: GGMLType, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    rows, cols = w.shape[0], x.shape[0]
    w = np.ascontiguousarray(w)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty(rows, dtype=np.float32)
    ptr = ctypes.c_void_p
    rc = so.emulate_matvec(
        int(t), ptr(w.ctypes.data), ptr(x.ctypes.data), ptr(y.ctypes.data), rows, cols
    )
    assert rc == 0
    return y


@pytest.mark.parametrize("t", list(KERNEL_OF), ids=lambda t: t.name)
@pytest.mark.parametrize("rows,cols", [(1, 256), (5, 512), (3, 256 * 9), (7, 256 * 40)])
def test_block_decoding_matches_gguf_py(emulator, t, rows, cols):
    rng = np.random.default_rng(int(t) * 1000 + rows)
    w = random_blocks(t, rows, cols, rng)
    x = rng.standard_normal(cols).astype(np.float32)
    ref_w = quants.dequantize(w, GGMLQuantizationType(int(t))).astype(np.float64)
    ref = ref_w @ x.astype(np.float64)
    got = emulate(emulator, t, w, x)
    scale = np.abs(ref_w) @ np.abs(x.astype(np.float64)) + 1e-6  # condition of each row's dot
    assert np.all(np.abs(got - ref) <= 2e-6 * cols**0.5 * scale + 1e-7), (got, ref)


def test_half_to_float_host_path_is_exact(emulator):
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    want = bits.view(np.float16).astype(np.float32)
    got = np.array([emulator.emulate_half_to_float(int(b)) for b in bits[::7]], np.float32)
    w = want[::7]
    assert np.array_equal(np.isnan(got), np.isnan(w))
    ok = ~np.isnan(w)
    assert np.array_equal(got[ok].view(np.uint32), w[ok].view(np.uint32))


def test_check_blocks_accepts_file_layout():
    rng = np.random.default_rng(1)
    w = random_blocks(GGMLType.Q4_K, 4, 512, rng)
    host, t, rows, cols = check_blocks(w.reshape(-1), "Q4_K", (4, 512))
    assert (t, rows, cols) == (GGMLType.Q4_K, 4, 512)
    assert host.shape == (4, 2 * 144) and host.dtype == np.uint8
    assert np.shares_memory(host, w)  # no re-layout, no copy: the kernels read file blocks


def test_check_blocks_rejects_bad_input():
    w = np.zeros((2, 18), np.uint8)
    with pytest.raises(UnsupportedError, match="Q5_K"):
        check_blocks(np.zeros((1, 176), np.uint8), GGMLType.Q5_K, (1, 256))
    with pytest.raises(QuantError, match="needs 36 bytes"):
        check_blocks(w[:, :17], GGMLType.Q4_0, (2, 32))
    with pytest.raises(QuantError, match="2-D"):
        check_blocks(w, GGMLType.Q4_0, (2, 1, 32))
    with pytest.raises(QuantError, match="multiple of the block size"):
        check_blocks(np.zeros(18, np.uint8), GGMLType.Q4_0, (1, 30))
