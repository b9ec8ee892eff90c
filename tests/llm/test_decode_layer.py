"""Decode's layer as one parallel region (trueno.llm.decode_layer) against the same layer run
kernel by kernel: the logits must be equal bit for bit, short (attention per KV head) and
deep (attention cut into position slices and merged), for both weight driver families,
stacked and separate projections, gemma's norms and windows, and any thread schedule."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from llm_models import TINY, gguf_metadata, gguf_tensors, random_hf_state, write_gguf

from trueno.gguf.constants import GGMLType, Keys
from trueno.llm import Model, decode_layer
from trueno.llm.attention import SPLIT_MIN, THREADS
from trueno.quant import quantize, simd

pytestmark = [
    pytest.mark.skipif(not simd.available(), reason="no SIMD quant kernels on this host"),
    pytest.mark.skipif(THREADS < 2, reason="one numba thread: decode runs kernel by kernel"),
]

# dims that every block type divides (the K-quants' 256 included)
SHAPES = dict(vocab=64, dim=256, hidden=256, heads=4, kv_heads=2)
HEAD_DIM = {"llama": 64, "qwen2": 64, "gemma3": 32}


def _model(tmp_path, monkeypatch, arch: str, types: dict[str, str], cache_type: str) -> Model:
    """A tiny ``arch`` model at SHAPES with each matrix quantized to ``types[<gguf name
    part>]`` (default Q4_0), its context long enough for deep decode."""
    monkeypatch.setitem(TINY, arch, {**TINY[arch], **SHAPES, "head_dim": HEAD_DIM[arch]})
    tensors = gguf_tensors(arch, random_hf_state(arch, seed=3))
    for name, w in list(tensors.items()):
        if w.ndim == 2 and name != "token_embd.weight":
            part = name.split(".")[-2]
            t = GGMLType[types.get(part, "Q4_0")]
            tensors[name] = (quantize(w, t), t, w.shape)
    md = gguf_metadata(arch)
    md[Keys.arch(Keys.CONTEXT_LENGTH, arch)] = 1024
    path = write_gguf(tmp_path / f"{arch}.gguf", md, tensors)
    return Model.load(path, cache_type=cache_type)


def _decode(model: Model, prompt: list[int], steps: list[int], regions: bool, monkeypatch):
    """Logits of each step after ``prompt``, with every layer as a region or none; asserts
    the regions really ran (or did not)."""
    runs = []
    real = decode_layer.LayerRegion.run
    monkeypatch.setattr(decode_layer.LayerRegion, "run",
                        lambda self, pos: (runs.append(pos), real(self, pos)))  # fmt: skip
    model.reset()
    model._regions.pop(model.state, None)  # built again at the first decode, or never
    if not regions:
        model._regions[model.state] = None
    model.prefill(prompt)
    out = np.array([model.decode(t) for t in steps])
    n_runs = sum(r is not None for r in model._layer_regions() or [])
    assert len(runs) == n_runs * len(steps)  # each run of layers once a step
    return out


CASES = {
    # every matrix Q4_0 (grouped records on AVX-512 hosts): q|k|v and gate|up stacked
    "llama-q4_0": ("llama", {}, "f16"),
    # q, k in Q4_0 and v in Q8_0 (three matrices), gate|up Q8_0, down Q4_K (the fused
    # drivers' GGML form), wo Q4_1; gemma's post norms, per-head q/k norms, gelu, windows
    "gemma3-mixed": (
        "gemma3",
        {
            "attn_v": "Q8_0",
            "ffn_gate": "Q8_0",
            "ffn_up": "Q8_0",
            "ffn_down": "Q4_K",
            "attn_output": "Q4_1",
        },
        "f32",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_region_equals_kernel_by_kernel(case, tmp_path, monkeypatch):
    arch, types, cache_type = CASES[case]
    model = _model(tmp_path, monkeypatch, arch, types, cache_type)
    regions = model._layer_regions()
    assert regions is not None  # runs of layers that cover every layer
    assert sum(r.n_layers for r in regions if r is not None) == model.config.n_layers
    rng = np.random.default_rng(0)
    steps = [int(t) for t in rng.integers(0, 64, 6)]
    short = [int(t) for t in rng.integers(0, 64, 5)]
    # deep enough that attention cuts each KV head's positions into slices (attend_threaded)
    deep = [int(t) for t in rng.integers(0, 64, SPLIT_MIN // model.config.n_kv_heads + 40)]
    for prompt in (short, deep):
        ours = _decode(model, prompt, steps, True, monkeypatch)
        ref = _decode(model, prompt, steps, False, monkeypatch)
        assert np.isfinite(ref).all()
        np.testing.assert_array_equal(ours, ref)


def test_region_on_one_thread_does_every_unit(tmp_path, monkeypatch):
    """With numba's pool cut to one thread, the region's iterations run one after another:
    the first takes every unit (nothing waits for a thread that never comes)."""
    model = _model(tmp_path, monkeypatch, "llama", {}, "f16")
    prompt, steps = [1, 5, 17, 3], [42, 8, 63]
    ref = _decode(model, prompt, steps, False, monkeypatch)
    numba.set_num_threads(1)
    try:
        ours = _decode(model, prompt, steps, True, monkeypatch)
    finally:
        numba.set_num_threads(THREADS)
    np.testing.assert_array_equal(ours, ref)


def test_layers_the_region_cannot_run_fall_back(tmp_path, monkeypatch):
    """Biases (qwen2) and float matrices keep the kernel-by-kernel step."""
    model = _model(tmp_path, monkeypatch, "qwen2", {}, "f32")
    assert model._layer_regions() is None
    monkeypatch.setitem(TINY, "llama", {**TINY["llama"], **SHAPES, "head_dim": 64})
    path = write_gguf(tmp_path / "f32.gguf", gguf_metadata("llama"),
                      gguf_tensors("llama", random_hf_state("llama")))  # fmt: skip
    assert Model.load(path)._layer_regions() is None
