"""The device-generic forward pass (trueno.llm.runtime) with numpy standing in for cupy.

The GPU runtime differs from the CPU one in four ways: weights placed matrix by matrix from
their file blocks (``Weights.placed``), activations and KV cache allocated through its array
module, the token's embedding row copied in from the host, and the decode steps composed
from primitive kernels (``ComposedKernels``) instead of the fused numba ones. The stand-in
runtime below takes all four paths with numpy arrays and the numba primitives, so the
orchestration is checked here against the CPU model; the CUDA kernels themselves are checked
on a GPU (tests/gpu/test_gpu_model.py)."""

from __future__ import annotations

import numpy as np
import pytest
from llm_models import gguf_metadata, gguf_tensors, random_hf_state, write_gguf

from trueno.errors import BackendUnavailableError, ModelError
from trueno.llm import Model, kernels
from trueno.llm import runtime as runtimes
from trueno.llm.weights import Matrix

ARCHS = ("llama", "qwen2", "gemma3")
TOKENS = [1, 5, 17, 3, 42, 8, 63, 0, 12, 12, 30, 7]


def _fresh_copy(a):
    return np.array(a, dtype=a.dtype, copy=True)


def standin(placed: list) -> runtimes.Runtime:
    """A runtime that is not the CPU one: numpy arrays, copies on every move, composed
    kernels, and matrices placed from their blocks (recorded in ``placed``)."""

    def place(m: Matrix):
        assert m.prepared is None and m.dense is None, f"{m.name} was prepared for the CPU"
        placed.append(m.name)
        return Matrix(m.name, m.info).ready(relayout=False)

    return runtimes.Runtime(
        name="standin",
        xp=np,
        kernels=runtimes.ComposedKernels(kernels, np),
        backend="standin",
        asarray=_fresh_copy,
        to_host=_fresh_copy,
        place_matrix=place,
        scores_per_head=False,  # numba's attend_one takes (ctx,) scratch
        host_memory=False,
    )


def run_both(path, n_prompt: int = 4):
    """Prefill + decode of TOKENS on the CPU and on the stand-in; both logits lists."""
    placed: list = []
    out = []
    for device in ("cpu", standin(placed)):
        model = Model.load(path, device=device, cache_type="f32")
        steps = [model.prefill(TOKENS[:n_prompt])]
        steps += [model.decode(t).copy() for t in TOKENS[n_prompt:]]
        out.append((np.array(steps), model))
    return out, placed


@pytest.mark.parametrize("arch", ARCHS)
def test_standin_runtime_matches_cpu(arch, tiny_model_path):
    path, _ = tiny_model_path(arch)
    ((cpu, _), (dev, model)), placed = run_both(path)
    np.testing.assert_allclose(dev, cpu, rtol=1e-5, atol=1e-5)
    c = model.config
    # every used matrix was placed once from its blocks: stacked qkv and gate|up per layer
    # plus the output head
    assert placed.count("attn_qkv") == c.n_layers and placed.count("ffn_gate_up") == c.n_layers
    assert len(placed) == 4 * c.n_layers + 1
    assert model.state.x_host is not model.state.x  # the embedding row was copied in


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_1"])
def test_standin_runtime_with_quantized_weights(qtype, tmp_path):
    from trueno.gguf.constants import GGMLType
    from trueno.quant import quantize

    t = GGMLType[qtype]
    tensors = gguf_tensors("qwen2", random_hf_state("qwen2", seed=3))
    for name, w in list(tensors.items()):
        if w.ndim == 2 and w.shape[1] % 32 == 0:
            tensors[name] = (quantize(w, t), t, w.shape)
    path = write_gguf(tmp_path / f"{qtype}.gguf", gguf_metadata("qwen2"), tensors)
    ((cpu, _), (dev, _)), _ = run_both(path, n_prompt=2)
    np.testing.assert_allclose(dev, cpu, rtol=1e-5, atol=1e-5)


def test_composed_steps_equal_the_fused_kernels():
    rng = np.random.default_rng(0)
    n_heads, n_kv, hd, ctx, pos = 4, 2, 16, 12, 7
    composed = runtimes.ComposedKernels(kernels, np)
    inv = 10000.0 ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(ctx)[:, None] * inv[None, :]
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    q0 = rng.standard_normal((1, n_heads * hd)).astype(np.float32)
    k0 = rng.standard_normal((1, n_kv * hd)).astype(np.float32)
    v0 = rng.standard_normal((1, n_kv * hd)).astype(np.float32)
    cache0 = rng.standard_normal((2, n_kv, ctx, hd)).astype(np.float32)
    qn, kn = (rng.uniform(0.5, 1.5, hd).astype(np.float32) for _ in range(2))
    results = []
    for impl in (kernels, composed):
        for qk_norm in (False, True):
            q, k, v, cache = q0.copy(), k0.copy(), v0.copy(), cache0.copy()
            out = np.zeros_like(q)
            impl.attention_step(
                out, q, k, v, cache[0], cache[1], pos, np.array([pos], np.int32), cos, sin,
                False, qk_norm, qn, kn, 1e-6, 3, 0.25, np.zeros(ctx, np.float32),
            )  # fmt: skip
            results.append((out, cache))
    for a, b in zip(results[:2], results[2:], strict=True):
        np.testing.assert_allclose(b[0], a[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(b[1], a[1])
    d = 24
    x0, y = (rng.standard_normal((1, d)).astype(np.float32) for _ in range(2))
    pw, w = (rng.uniform(0.5, 1.5, d).astype(np.float32) for _ in range(2))
    for post in (False, True):
        got = []
        for impl in (kernels, composed):
            x, out = x0.copy(), np.zeros_like(x0)
            impl.residual_norm(out, x, y, pw, w, 1e-6, post)
            got.append((x, out))
        np.testing.assert_allclose(got[1][0], got[0][0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got[1][1], got[0][1], rtol=1e-6, atol=1e-6)


def test_a_head_too_large_for_the_kernels_is_refused_at_load(tiny_model_path):
    from dataclasses import replace

    from trueno.errors import UnsupportedError

    path, _ = tiny_model_path("llama")  # head_dim 8
    small = replace(standin([]), max_head_dim=4)
    with pytest.raises(UnsupportedError, match="head_dim 8 is larger than the standin kernels"):
        Model.load(path, device=small)


def test_unknown_device_is_a_model_error():
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        runtimes.get("tpu")


def test_gpu_without_cupy_names_the_extra(tmp_path):
    from trueno.backends import cupy_backend

    if cupy_backend.available():
        pytest.skip("a GPU is present: the GPU tests cover this runtime")
    with pytest.raises(BackendUnavailableError, match="gpu"):
        # fails before the (missing) file is looked at: no work is done for nothing
        Model.load(tmp_path / "missing.gguf", device="gpu")


def test_composed_scratch_grows_and_keeps_replaced_buffers_alive():
    """A captured CUDA graph may hold the address of the decode step's scratch: a longer prompt
    chunk that grows the buffer must not free the one the graph writes to."""
    composed = runtimes.ComposedKernels(kernels, np)
    first = composed._scratch(np.zeros((1, 8), np.float32))
    bigger = composed._scratch(np.zeros((5, 8), np.float32))
    assert bigger.shape == (5, 8) and not np.shares_memory(first, bigger)
    assert any(np.shares_memory(first, r) for r in composed._retired)
    again = composed._scratch(np.zeros((2, 8), np.float32))  # fits: a view, no new array
    assert np.shares_memory(again, bigger) and len(composed._retired) == 1


def test_device_runtime_refuses_an_f16_cache(tiny_model_path):
    """Device kernels take an f32 cache only: f16 is refused by name, f32 is the default."""
    from trueno.errors import UnsupportedError

    path, _ = tiny_model_path("llama")
    with pytest.raises(UnsupportedError, match="f16 KV cache"):
        Model.load(path, device=standin([]), cache_type="f16")
    assert Model.load(path, device=standin([])).state.cache.cache_type == "f32"


@pytest.mark.parametrize("arch", ["qwen3", "gemma2", "granite", "olmo2", "phi3", "smollm3"])
def test_standin_runtime_matches_cpu_for_more_architectures(arch, arch_model):
    """The composed decode steps (the GPU's orchestration) for the architectures whose
    differences are config fields: no pre-norm, whole-projection q/k norm, fused phi3
    tensors, softcaps, multipliers, NoPE layers."""
    path, _, _ = arch_model(arch)
    ((cpu, _), (dev, model)), placed = run_both(path)
    np.testing.assert_allclose(dev, cpu, rtol=1e-5, atol=1e-5)
    # one Q|K|V, one gate|up (stacked, or phi3's own fused tensors), wo, down per layer + head
    assert len(placed) == 4 * model.config.n_layers + 1
