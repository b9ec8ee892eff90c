"""Where a model runs: its array module, its transformer kernels and how its weights are placed.

The forward pass in :mod:`trueno.llm.model` is written once, against a :class:`Runtime`:

- ``cpu``: numpy arrays, the fused numba kernels of :mod:`trueno.llm.kernels`, matrices prepared
  for the CPU quant kernels (host memory, memory-mapped where possible).
- ``gpu``: cupy arrays, the kernels of :mod:`trueno.llm.gpu_kernels` composed into the
  same decode steps (:class:`ComposedKernels`), every matrix uploaded once as GGML blocks
  (:func:`trueno.quant.gpu.prepare_gpu`), the KV cache and every activation buffer on
  the device. The token-embedding table stays in host memory, as llama.cpp keeps its input
  layer on the CPU: a token needs one row of it, dequantized on the host and copied over
  (``dim`` floats); a tied output head still gets its device copy as a matrix.

A runtime is picked by name (:func:`get`); ``gpu`` imports cupy then, and raises
:class:`~trueno.errors.BackendUnavailableError` naming the ``gpu`` extra when cupy or a device
is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from trueno.errors import ModelError, UnsupportedError

if TYPE_CHECKING:
    from trueno.llm.config import Config
    from trueno.llm.kv_cache import LayerState

Array: TypeAlias = Any  # a runtime array: numpy on the CPU, cupy on the GPU

DEVICES = ("cpu", "gpu")


@dataclass(frozen=True)
class Runtime:
    """What the forward pass needs to know about where it runs."""

    name: str  # "cpu" | "gpu" (or a test's stand-in)
    xp: ModuleType  # the array module: numpy or cupy
    kernels: (
        Any  # a module or namespace: rms_norm, add_rms_norm, residual_norm, head_rms_norm, rope,
    )
    #                  attention_step, attention, silu_mul, gelu_tanh_mul
    #                  (trueno.llm.kernels' signatures)
    backend: str  # span label of the model's own ops ("numba", "cupy")
    asarray: Callable  # host array -> runtime array (a copy on a device)
    to_host: Callable  # runtime array -> numpy array
    place_matrix: Callable | None  # Matrix -> object with matvec_into(x, out), matmul(X),
    #                                nbytes; None: the CPU's own prepared matrices
    scores_per_head: bool  # decode attention scratch (n_heads, ctx) instead of (ctx,)
    host_memory: bool  # arrays are host memory: no copy of the token's embedding row
    synchronize: Callable = lambda: None  # wait for queued device work (honest trace spans)
    max_head_dim: int = 0  # the largest attention head its kernels take (0: any)
    step_graph: Callable | None = None  # step -> object whose run() replays decode's layers
    attn_softcap: bool = True  # its attention kernels cap scores (gemma2's softcap)
    check_heads: Callable | None = None  # (n_heads, n_kv_heads, head_dim): raises for a head
    #                                      layout its attention kernels cannot take

    def check(self, config: Config) -> None:
        """Refuse a model this runtime's kernels cannot run, before any weight is placed."""
        if config.n_experts and not self.host_memory:
            raise UnsupportedError(
                f"mixture-of-experts models run on the CPU runtime only; not on {self.name}"
            )
        if self.max_head_dim and config.head_dim > self.max_head_dim:
            raise UnsupportedError(
                f"head_dim {config.head_dim} is larger than the {self.name} kernels take "
                f"({self.max_head_dim})"
            )
        if self.check_heads is not None:
            self.check_heads(config.n_heads, config.n_kv_heads, config.head_dim)
        if config.attn_softcap and not self.attn_softcap:
            raise UnsupportedError(
                f"{config.arch}: the {self.name} attention kernels have no score softcap yet"
            )

    def copy_in(self, dst: Array, src: np.ndarray) -> None:
        """dst[...] = src for a host ``src`` (through ``asarray``: a traced copy to a device)."""
        dst[...] = src if self.host_memory else self.asarray(src)


class ComposedKernels:
    """The decode steps that :mod:`trueno.llm.kernels` fuses into one numba call each,
    composed from a backend's primitive kernels (``rms_norm``, ``head_rms_norm``, ``rope``,
    ``silu_mul``, ``gelu_tanh_mul``, and ``attend_one`` or, where the backend has them,
    ``store_kv`` + ``attend_one_at``, which read the position from device memory so that a
    captured CUDA graph replays them for every token): what a backend without fused versions
    (the GPU) runs. Same names and signatures as trueno.llm.kernels."""

    def __init__(self, primitives: Any, xp: ModuleType) -> None:
        self.p, self.xp = primitives, xp
        self.rms_norm = primitives.rms_norm
        self.head_rms_norm = primitives.head_rms_norm
        self.rope = primitives.rope
        self.silu_mul = primitives.silu_mul
        self.gelu_tanh_mul = primitives.gelu_tanh_mul
        self._tmp: dict = {}
        self._retired: list = []

    def _scratch(self, like):
        """A buffer shaped like ``like``: a view of one reused flat array per dtype, grown
        (doubling) to the largest size asked for, as prompt chunks vary in length. A replaced
        array is kept alive: a captured CUDA graph may still write to its address."""
        key, n = str(like.dtype), like.size
        buf = self._tmp.get(key)
        if buf is None or buf.size < n:
            if buf is not None:
                self._retired.append(buf)
            size = n if buf is None else max(n, 2 * buf.size)
            buf = self._tmp[key] = self.xp.empty(size, dtype=like.dtype)
        return buf[:n].reshape(like.shape)

    def add_rms_norm(self, x: Array, y: Array, w: Array, eps: float) -> None:
        """x += rms_norm(y) * w (gemma's norm after a sublayer, with the residual add)."""
        tmp = self._scratch(y)
        self.p.rms_norm(tmp, y, w, eps)
        x += tmp

    def residual_norm(
        self, out: Array, x: Array, y: Array, post_w: Array, w: Array, eps: float, post_norm: bool
    ) -> None:
        """``x += y`` (``add_rms_norm`` with ``post_w`` when ``post_norm``), then
        ``out = rms_norm(x) * w``."""
        if post_norm:
            self.add_rms_norm(x, y, post_w, eps)
        else:
            x += y
        self.p.rms_norm(out, x, w, eps)

    def attention(
        self,
        layer: LayerState,
        out: Array,
        q: Array,
        k: Array,
        v: Array,
        pos: int | None,
        positions: Array,
        scores: Array,
    ) -> None:
        """Decode's attention of one token in one layer (trueno.llm.kernels.attention)."""
        self.attention_step(
            out, q, k, v, layer.key_cache, layer.value_cache, pos, positions, layer.cos,
            layer.sin, layer.neox, layer.qk_norm, layer.q_norm, layer.k_norm, layer.eps,
            layer.window, layer.scale, scores, layer.softcap,
        )  # fmt: skip

    def attention_step(
        self, out: Array, q: Array, k: Array, v: Array, k_cache: Array, v_cache: Array,
        pos: int | None, positions: Array, cos: Array, sin: Array, neox: bool, qk_norm: bool,
        q_norm: Array, k_norm: Array, eps: float, window: int, scale: float, scores: Array,
        softcap: float = 0.0,
    ) -> None:  # fmt: skip
        """Optional per-head q/k RMS norm, RoPE, k and v into the cache at ``pos``, then
        attention of the one query over the cache (trueno.llm.kernels.attention_step)."""
        n_kv, _, head_dim = k_cache.shape
        n_heads = q.shape[1] // head_dim
        p = self.p
        if qk_norm:
            p.head_rms_norm(q, n_heads, head_dim, q_norm, eps)
            p.head_rms_norm(k, n_kv, head_dim, k_norm, eps)
        p.rope(q, positions, n_heads, head_dim, cos, sin, neox)
        p.rope(k, positions, n_kv, head_dim, cos, sin, neox)
        o, qh = out.reshape(n_heads, head_dim), q.reshape(n_heads, head_dim)
        groups = n_heads // n_kv
        cap = (softcap,) if softcap else ()  # a backend's attend_one may take no softcap
        if hasattr(p, "attend_one_at"):  # the position from device memory: graph-safe
            p.store_kv(k_cache, v_cache, k, v, positions)
            p.attend_one_at(o, qh, k_cache, v_cache, positions, window, scale, groups, scores,
                            *cap)  # fmt: skip
        else:
            k_cache[:, pos] = k.reshape(n_kv, head_dim)
            v_cache[:, pos] = v.reshape(n_kv, head_dim)
            p.attend_one(o, qh, k_cache, v_cache, pos, window, scale, groups, scores, *cap)


def _identity(a):
    return a


def cpu() -> Runtime:
    from trueno.llm import kernels  # numba: imported with the first model, not with trueno

    return Runtime(
        name="cpu",
        xp=np,
        kernels=kernels,
        backend="numba",
        asarray=np.ascontiguousarray,
        to_host=_identity,
        place_matrix=None,
        scores_per_head=False,
        host_memory=True,
    )


def gpu(graphs: bool | None = None) -> Runtime:
    """The GPU runtime; ``graphs`` (default: TRUENO_CUDA_GRAPHS, on) replays each decode step
    as one CUDA graph (:mod:`trueno.llm.gpu_graph`)."""
    from trueno import config
    from trueno.device import cupy, to_device, to_host

    cp = cupy()  # BackendUnavailableError naming the gpu extra, before any work
    from trueno.llm import gpu_graph as graph
    from trueno.llm import gpu_kernels as transformer
    from trueno.quant.gpu import prepare_gpu

    def place(m):
        return prepare_gpu(m.info.data, m.ggml_type, m.shape, dequantize=True)

    return Runtime(
        name="gpu",
        xp=cp,
        kernels=ComposedKernels(transformer, cp),
        backend="cupy",
        asarray=to_device,
        to_host=to_host,
        place_matrix=place,
        scores_per_head=True,
        host_memory=False,
        synchronize=lambda: cp.cuda.get_current_stream().synchronize(),
        max_head_dim=transformer.MAX_HEAD_DIM,
        check_heads=transformer.check_attention,
        step_graph=graph.StepGraph if (config.CUDA_GRAPHS if graphs is None else graphs) else None,
    )


def get(device: str | Runtime | None) -> Runtime:
    """The runtime named ``device`` ("cpu", "gpu"; None means "cpu"), or ``device`` itself."""
    if isinstance(device, Runtime):
        return device
    name = (device or "cpu").lower()
    if name == "cpu":
        return cpu()
    if name in ("gpu", "cuda"):
        return gpu()
    raise ModelError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
