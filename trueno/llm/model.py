"""The transformer forward pass, one function for every architecture of
:data:`trueno.llm.config.SUPPORTED_ARCHS` (their differences are fields of the Config).

    x = embed(tokens) * embed_scale
    for each layer:
        x = x + post_attn_norm(residual_scale * attn(attn_norm(x)))   # post norms: gemma, olmo2
        x = x + post_ffn_norm(residual_scale * ffn(ffn_norm(x)))      # no pre norms: olmo2
    logits = softcap(output(output_norm(x))) / logit_scale            # gemma2 / granite

Prefill runs the prompt as one batch (BLAS / quantized matmul, causal mask); decode runs one
token through fused quantized matvecs and preallocated buffers (``RunState``, whose
``layers`` hold each layer's cache slice, tables and norms), as llama2.c's ``forward``. The
same code runs on the CPU or a GPU: arrays, kernels and weights come from a
:mod:`trueno.llm.runtime`.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from time import perf_counter_ns
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from trueno import trace
from trueno.errors import ConfigError, ContextLengthError, ModelError, UnsupportedError
from trueno.llm import runtime as runtimes
from trueno.llm.config import Config
from trueno.llm.kv_cache import CACHE_TYPES, RunState
from trueno.llm.weights import Weights, load_gguf
from trueno.trace import recorder

if TYPE_CHECKING:
    from trueno.gguf.reader import GGUFFile
    from trueno.llm.tokenizer import Tokenizer

DEFAULT_CTX = 2048
# Prompt tokens per batched forward, llama.cpp's default ubatch. Against 256, 2 threads, f16
# cache, best of 3: SmolLM2 512-token prompt 1657 -> 1815 tok/s, 3500: 988 -> 1034; gemma3
# 1796 -> 1886, 1491 -> 1628 (the int8 GEMM packs each weight tile once per chunk). A step of
# trueno serve prefills at most one chunk per waiting prompt: running streams wait that long.
PREFILL_CHUNK = 512
KEY_BLOCK = 256  # keys per tile of attend_tiled, off the host (scores of a tile stay in L2)


def default_cache_type(runtime: runtimes.Runtime) -> str:
    """The KV cache a model gets unless told: f16 on the CPU (llama.cpp's default), f32 on a
    device. Measured (BENCHMARKS.md, long context): with the decode kernel that widens f16
    blocks by F16C in L1, one token's attention over 30 layers x 3,500 positions of SmolLM2's
    cache takes 0.71x the time of the f32 cache, and the cache needs half the memory; its
    logits stay within the bound the tests set against f32. The GPU kernels take only f32."""
    return "f16" if runtimes.get(runtime).host_memory else "f32"


class Model:
    """A GGUF model ready to run: ``Model.load(path)``, then ``logits`` or ``generate``.

    ``weights`` must already be on ``runtime`` (``Weights.placed``); logits come back as
    numpy arrays wherever the model runs."""

    def __init__(
        self,
        config: Config,
        weights: Weights,
        gguf_file: GGUFFile | None = None,
        path: str | os.PathLike[str] | None = None,
        ctx_size: int | None = None,
        runtime: runtimes.Runtime | str | None = None,
        cache_type: str = "f32",
    ) -> None:
        self.rt = runtimes.get(runtime)
        if cache_type != "f32" and not self.rt.host_memory:
            raise UnsupportedError(
                f"a {cache_type} KV cache runs on the CPU only for now; the {self.rt.name} "
                "runtime needs cache_type='f32'"
            )
        self.kernels = self.rt.kernels
        self.xp = self.rt.xp
        self.config = config
        self.weights = weights
        self.path = path
        self._gguf = gguf_file
        self._tokenizer: Tokenizer | None = None
        ctx = ctx_size or min(config.context_length, DEFAULT_CTX)
        self.ctx = int(ctx)
        self.rope_factors = weights.rope_factors(self.ctx, config)  # llama3 / LongRoPE
        self.state = RunState(config, self.ctx, self.rope_factors, self.rt, cache_type, weights)
        self.tokens: list[int] = []  # the token ids whose keys/values are in the cache
        self._step_graph: Any = None  # decode's layers as a replayable graph (runtime.step_graph)
        # decode_layer.regions of each RunState decoded (the model's own, a server's slots),
        # built on its first decode
        self._regions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        ctx_size: int | None = None,
        progress: Callable[[float], object] | None = None,
        device: runtimes.Runtime | str | None = None,
        cache_type: str | None = None,
    ) -> Model:
        """Load a GGUF model file (memory-mapped; quantized matrices stay quantized).
        ``progress(fraction)`` is called while the weights are prepared. ``device``: "cpu"
        (the default) or "gpu" (every matrix uploaded as GGML blocks, KV cache on the GPU;
        needs the ``gpu`` extra), or a :class:`~trueno.llm.runtime.Runtime`. ``cache_type``:
        the KV cache's element type, "f16", "bf16" or "f32" (None: :func:`default_cache_type`)."""
        rt = runtimes.get(device)  # a missing GPU fails here, before the file is read
        cache_type = cache_type or default_cache_type(rt)
        if cache_type not in CACHE_TYPES:
            raise ConfigError(
                f"unknown KV cache type {cache_type!r}; expected one of {', '.join(CACHE_TYPES)}"
            )
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ModelError(f"model file not found: {path}")
        gf = load_gguf(path)
        config = Config.from_gguf(gf)
        rt.check(config)
        on_cpu = rt.place_matrix is None
        weights = Weights.from_gguf(
            gf, config, progress=progress if on_cpu else None, prepare=on_cpu
        )
        if on_cpu:  # the copied tensors' file pages leave the resident set
            for info in weights.copied_tensors():
                gf.release(info)
        if not on_cpu:
            with trace.span("upload_weights", category="transfer", backend=rt.backend):
                weights = weights.placed(rt, progress=progress)
        return cls(config, weights, gf, path, ctx_size, rt, cache_type)

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            from trueno import llm

            source = self._gguf if self._gguf else self.path
            if source is None:
                raise ModelError("this model has no GGUF file or path to read a tokenizer from")
            self._tokenizer = llm.Tokenizer.from_gguf(source)
        return self._tokenizer

    @property
    def metadata(self) -> dict:
        return self._gguf.metadata if self._gguf is not None else {}

    def reset(self) -> None:
        """Forget the KV cache (the next call starts at position 0)."""
        self.truncate(0)

    def warmup(self) -> None:
        """Compile every kernel (batch and one-token paths) now, then clear the cache."""
        with trace.span("warmup", category="llm"):
            self.reset()
            # short prompts and decode share the fused matvec kernels; the dequantize + BLAS
            # path of long prompts (> MATVEC_ROWS tokens) loads on first use, keeping warm
            # start to the first token short
            self.prefill([0, 0])
            self.decode(0)
            self.reset()

    def truncate(self, n: int) -> None:
        """Keep only the first ``n`` cached positions (the next token goes to position n)."""
        n = max(0, min(n, self.state.cache.n))
        self.state.cache.n = n
        del self.tokens[n:]

    # ---- public forward -----------------------------------------------------------------------
    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Logits (len, vocab) float32 of the whole sequence, processed from position 0."""
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        self.reset()
        return self.prefill(ids, all_logits=True)

    def prefill(
        self, token_ids: Sequence[int] | np.ndarray, all_logits: bool = False
    ) -> np.ndarray:
        """Append tokens to the cache as batches; logits of the last (or every) position."""
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        start = self.state.cache.n
        if start + len(ids) > self.ctx:
            raise ContextLengthError(
                f"{start + len(ids)} tokens do not fit in the context of {self.ctx} tokens"
            )
        if len(ids) == 0:
            raise ModelError("prefill needs at least one token")
        from trueno.quant.prepared import single_threaded_blas

        outs = []
        with single_threaded_blas():  # quantized matmuls thread themselves (see there)
            for lo in range(0, len(ids), PREFILL_CHUNK):
                chunk = ids[lo : lo + PREFILL_CHUNK]
                last = lo + PREFILL_CHUNK >= len(ids)
                x = self._forward_batch(chunk, start + lo)
                if all_logits:
                    outs.append(self._finish_logits(self.weights.output.matmul(x)))
                elif last:
                    outs.append(self._finish_logits(self.weights.output.matmul(x[-1:])))
        self.tokens.extend(int(t) for t in ids)
        logits = self.rt.to_host(self.xp.concatenate(outs, axis=0))
        logits = np.asarray(logits, dtype=np.float32)
        return logits if all_logits else logits[-1]

    def decode(self, token: int) -> np.ndarray:
        """Run one token at the next position; logits (vocab,) in a reused buffer."""
        pos = self.state.cache.n
        if pos >= self.ctx:
            raise ContextLengthError(f"context of {self.ctx} tokens is full")
        logits = self._forward_one(int(token), pos)
        self.tokens.append(int(token))
        return logits

    def generate(self, prompt: str | Sequence[int], **kwargs: Any) -> Iterator[str]:
        """Stream generated text pieces; see :func:`trueno.llm.generate.generate`."""
        from trueno.llm.generate import generate

        return generate(self, prompt, **kwargs)

    def generate_tokens(self, prompt: str | Sequence[int], **kwargs: Any) -> Iterator[int]:
        """Stream generated token ids; see :func:`trueno.llm.generate.generate_tokens`."""
        from trueno.llm.generate import generate_tokens

        return generate_tokens(self, prompt, **kwargs)

    # ---- prefill: T tokens as a batch -------------------------------------------------------
    def _forward_batch(self, ids: np.ndarray, start: int) -> np.ndarray:
        c, w, kernels, xp = self.config, self.weights, self.kernels, self.xp
        cache = self.state.cache
        q_dim, kv_dim = c.q_dim, c.kv_dim
        T = len(ids)
        positions = self.rt.asarray(np.arange(start, start + T, dtype=np.int32))
        x = w.token_embd(ids)  # (T, D), host
        if c.embed_scale != 1.0:
            x *= np.float32(c.embed_scale)
        x = self.rt.asarray(x)
        xb = xp.empty_like(x)
        for i, lw in enumerate(w.layers):
            with trace.span("layer", category="llm", layer=i):
                # attention
                self._pre_norm(xb, x, lw.attn_norm)
                if lw.wqkv is not None:
                    qkv = self._proj(lw.wqkv, lw.bqkv, xb)  # (T, q_dim + 2 kv_dim)
                    q = xp.ascontiguousarray(qkv[:, :q_dim])
                    keys = xp.ascontiguousarray(qkv[:, q_dim : q_dim + kv_dim])
                    values = qkv[:, q_dim + kv_dim :]
                else:
                    q = self._proj(lw.wq, lw.bq, xb)  # (T, q_dim)
                    keys = self._proj(lw.wk, lw.bk, xb)  # (T, kv_dim)
                    values = self._proj(lw.wv, lw.bv, xb)  # (T, kv_dim)
                t0 = perf_counter_ns() if recorder.ENABLED else 0
                if c.qk_norm:
                    kernels.head_rms_norm(q, c.n_heads, c.head_dim, lw.q_norm, c.norm_eps)
                    kernels.head_rms_norm(keys, c.n_kv_heads, c.head_dim, lw.k_norm, c.norm_eps)
                self._qk_norm_full(q, keys, lw)
                cos, sin = self.state.rope[i]  # identity tables on a NoPE layer
                kernels.rope(q, positions, c.n_heads, c.head_dim, cos, sin, c.rope_neox)
                kernels.rope(keys, positions, c.n_kv_heads, c.head_dim, cos, sin, c.rope_neox)
                cache.store(i, start, keys, values)
                att = self._attend_batch(q, i, start, T)  # (T, q_dim)
                if t0:
                    window = c.layer_window(i)
                    lo = max(0, start - window + 1) if window > 0 else 0
                    self._record_attention(t0, T, start + T - lo)
                o = lw.wo.matmul(att)  # (T, D)
                self._add_residual(x, o, lw.post_attn_norm)
                # feed-forward
                self._pre_norm(xb, x, lw.ffn_norm)
                if lw.moe is not None:
                    f = xp.empty_like(xb)
                    lw.moe.forward(xb, f, self._act)  # (T, D): the experts each token chose
                else:
                    f = self._ffn_batch(lw, xb)  # (T, D)
                self._add_residual(x, f, lw.post_ffn_norm)
        cache.n = start + T
        kernels.rms_norm(x, x, w.output_norm, c.norm_eps)
        return x

    def _ffn_batch(self, lw, xb):
        """The dense gated FFN of T rows: (T, D) -> (T, D)."""
        c, xp, F = self.config, self.xp, self.config.hidden_dim
        if lw.w_gate_up is not None:
            gu = lw.w_gate_up.matmul(xb)  # (T, 2F)
            g, go, u, uo = gu, 0, gu, F
        else:
            g, go, u, uo = lw.w_gate.matmul(xb), 0, lw.w_up.matmul(xb), 0  # (T, F) each
        a = xp.empty((xb.shape[0], F), dtype=np.float32)
        if self.rt.host_memory:  # both halves read in place, rows over the threads
            self.kernels.gated_rows(a, g, go, u, uo, c.activation == "gelu_tanh")
        else:
            self._act(a, xp.ascontiguousarray(g[:, go : go + F]),
                      xp.ascontiguousarray(u[:, uo : uo + F]))  # fmt: skip
        return lw.w_down.matmul(a)  # (T, D)

    def _record_attention(self, t0: int, n_queries: int, n_keys: int) -> None:
        """One op span for q/k norm + RoPE + cache write + attention (tracing on only);
        ``n_keys``: the cache positions it read (a sliding window's, not the whole prefix)."""
        c = self.config
        self.rt.synchronize()  # a GPU span ends when its kernels have run, not when queued
        kv_bytes = 2 * self.state.cache.itemsize * c.n_kv_heads * n_keys * c.head_dim
        flops = 4 * c.n_heads * n_queries * n_keys * c.head_dim
        recorder.record_op(
            "attention",
            self.rt.backend,
            (n_queries, c.n_heads, n_keys, c.head_dim),
            "float32",
            kv_bytes,
            flops,
            t0,
            perf_counter_ns() - t0,
        )

    # ---- the architecture-dependent steps, shared by prefill, decode and the batch engine --
    def _pre_norm(self, out, x, w) -> None:
        """out = rms_norm(x) * w; a copy of x where the architecture has no pre-norm (olmo2)."""
        if w is None:
            out[...] = x
        else:
            self.kernels.rms_norm(out, x, w, self.config.norm_eps)

    def _add_residual(self, x, y, post_w) -> None:
        """x += post_norm(residual_scale * y) (the post norm where the architecture has one;
        none has both)."""
        c = self.config
        if c.residual_scale != 1.0:
            y *= np.float32(c.residual_scale)
        if c.post_norms:
            self.kernels.add_rms_norm(x, y, post_w, c.norm_eps)
        else:
            x += y

    def _add_then_norm(self, xb, x, y, post_w, w) -> None:
        """Decode's step between a layer's attention and its FFN, in one kernel:
        x += post_norm(residual_scale * y), then xb = rms_norm(x) * w (x itself where ``w`` is
        None: no pre-norm)."""
        c, s = self.config, self.state
        if c.residual_scale != 1.0:
            y *= np.float32(c.residual_scale)
        self.kernels.residual_norm(xb, x, y, post_w, s.ones_dim if w is None else w,
                                   c.norm_eps, c.post_norms)  # fmt: skip
        if w is None:
            xb[...] = x

    def _qk_norm_full(self, q, keys, lw) -> None:
        """olmo2: RMS norm over each row's whole q and k projections (one head of q_dim,
        kv_dim values)."""
        c = self.config
        if c.qk_norm_full:
            self.kernels.head_rms_norm(q, 1, c.q_dim, lw.q_norm, c.norm_eps)
            self.kernels.head_rms_norm(keys, 1, c.kv_dim, lw.k_norm, c.norm_eps)

    def _finish_logits(self, logits):
        """gemma2's final softcap and granite's logit scale, in place; ``logits``."""
        c, xp = self.config, self.xp
        if c.final_softcap > 0:
            logits *= np.float32(1.0 / c.final_softcap)
            xp.tanh(logits, out=logits)
            logits *= np.float32(c.final_softcap)
        if c.logit_scale != 1.0:
            logits *= np.float32(1.0 / c.logit_scale)
        return logits

    def _proj(self, m, bias, x):
        y = m.matmul(x)
        if bias is not None:
            y += bias
        return self.xp.ascontiguousarray(y, dtype=np.float32)

    def _act(self, out, g, u) -> None:
        if self.config.activation == "gelu_tanh":
            self.kernels.gelu_tanh_mul(out, g, u)
        else:
            self.kernels.silu_mul(out, g, u)

    def _attend_batch(self, q: np.ndarray, layer: int, start: int, T: int) -> np.ndarray:
        """Causal (optionally sliding-window) attention of T queries (positions start..) over
        the cached keys, flash-attention style: the queries against blocks of keys with a
        running max and sum, so no (T, start + T) score matrix is made, blocks a window
        excludes are never read, and only blocks on the diagonal or the window's edge are
        masked. On the host: :func:`trueno.llm.prefill_attention.attend_chunk`'s kernels;
        elsewhere :func:`attend_tiled` of the array module's matmuls."""
        c, xp, cache = self.config, self.xp, self.state.cache
        window = c.layer_window(layer)
        if self.rt.host_memory:
            from trueno.llm import prefill_attention

            out = np.empty_like(q)
            prefill_attention.attend_chunk(
                out, q, cache.k[layer], cache.v[layer], start, window, c.attn_scale,
                c.n_kv_groups, c.attn_softcap, prefill_attention.KEY_BLOCK,
                prefill_attention.QUERY_BLOCK, prefill_attention.LEVEL,
            )  # fmt: skip
            return out

        def rows(lo: int, hi: int):
            return cache.keys(layer, lo, hi), cache.values(layer, lo, hi)

        return attend_tiled(
            xp, q, rows, start, T, c.n_kv_heads, c.n_kv_groups, c.head_dim, window,
            c.attn_scale, KEY_BLOCK, c.attn_softcap,
        )  # fmt: skip

    # ---- decode: one token through matvecs and preallocated buffers -------------------------
    def _forward_one(self, token: int, pos: int) -> np.ndarray:
        c, w, s = self.config, self.weights, self.state
        w.token_embd.row(token, s.x_host[0])
        if c.embed_scale != 1.0:
            s.x_host *= np.float32(c.embed_scale)
        if s.x_host is not s.x:
            self.rt.copy_in(s.x, s.x_host)
        s.pos[0] = pos
        if self.rt.step_graph is None or recorder.ENABLED:  # spans need kernels one by one
            self._layers_one(pos)
        else:
            if self._step_graph is None:
                # the graphed step reads the position from s.pos (device memory), never pos
                self._step_graph = self.rt.step_graph(lambda: self._layers_one(None))
            self._step_graph.run()
        s.cache.n = pos + 1
        return self.rt.to_host(self._finish_logits(s.logits))

    def _layers_one(self, pos: int | None) -> None:
        """Every layer and the output head for the token in ``state.x`` at ``pos`` (also in
        ``state.pos``), logits into ``state.logits``: llama2.c's ``forward``."""
        w, s, kernels = self.weights, self.state, self.kernels
        x, xb, xo = s.x, s.xb, s.xo  # residual stream, normed input, sublayer output
        regions = None if pos is None or recorder.ENABLED else self._layer_regions()
        after = 0  # the first layer after the last region run
        for i, (lw, layer) in enumerate(zip(w.layers, s.layers, strict=True)):
            if i < after:
                continue
            if regions is not None and regions[i] is not None:
                regions[i].run(pos)  # the same steps for a run of layers, one hand-off
                after = i + regions[i].n_layers
                continue
            with trace.span("layer", category="llm", layer=i):
                # attention: q, k, v of the token, then over this layer's cache
                self._pre_norm(xb, x, lw.attn_norm)
                self._qkv_one(lw, xb[0])
                t0 = perf_counter_ns() if recorder.ENABLED else 0
                self._qk_norm_full(s.q, s.k, lw)
                kernels.attention(layer, s.att, s.q, s.k, s.v, pos, s.pos, s.scores)
                if t0:  # traced: kernels one by one, never the graph, so pos is given
                    assert pos is not None
                    self._record_attention(t0, 1, keys_attended(pos, layer.window))
                lw.wo.matvec_into(s.att[0], xo[0])
                # x += post_norm(xo); xb = ffn_norm(x)
                self._add_then_norm(xb, x, xo, layer.post_attn_norm, lw.ffn_norm)
                # feed-forward
                if lw.moe is not None:
                    lw.moe.forward(xb, xo, self._act)  # the router, then the k chosen experts
                else:
                    if lw.w_gate_up is not None:
                        lw.w_gate_up.matvec_into(xb[0], s.gate_up)
                    else:
                        assert lw.w_gate is not None and lw.w_up is not None  # fuse() checked
                        lw.w_gate.matvec_into(xb[0], s.hg[0])
                        lw.w_up.matvec_into(xb[0], s.hu[0])
                    self._act(s.ha, s.hg, s.hu)
                    assert lw.w_down is not None  # a dense FFN (MoE layers have experts)
                    lw.w_down.matvec_into(s.ha[0], xo[0])
                self._add_residual(x, xo, layer.post_ffn_norm)
        self._pre_norm(xb, x, w.output_norm)
        w.output.matvec_into(xb[0], s.logits)

    def _layer_regions(self) -> list | None:
        """Runs of layers as parallel regions (:func:`trueno.llm.decode_layer.regions`) on
        the CPU runtime, over the current state; None where every layer runs kernel by
        kernel."""
        if self.state not in self._regions:
            built = None
            if self.rt.name == "cpu" and self.rt.place_matrix is None:
                from trueno.llm import decode_layer

                built = decode_layer.regions(self.config, self.weights, self.state)
            self._regions[self.state] = built
        return self._regions[self.state]

    def _qkv_one(self, lw, xb) -> None:
        """The token's query, key and value (``state.q``, ``.k``, ``.v``) from normed ``xb``."""
        s = self.state
        if lw.wqkv is not None:
            lw.wqkv.matvec_into(xb, s.qkv)
            if lw.bqkv is not None:
                s.qkv += lw.bqkv
        else:
            lw.wq.matvec_into(xb, s.q[0])
            lw.wk.matvec_into(xb, s.k[0])
            lw.wv.matvec_into(xb, s.v[0])
            if lw.bq is not None:
                s.q[0] += lw.bq
                s.k[0] += lw.bk
                s.v[0] += lw.bv


def keys_attended(pos: int, window: int) -> int:
    """Cache positions a decode query at ``pos`` attends to (window > 0: a sliding window)."""
    return pos + 1 - (max(0, pos - window + 1) if window > 0 else 0)


def attend_tiled(
    xp: ModuleType,
    q: Any,
    kv_rows: Callable[[int, int], tuple[Any, Any]],
    start: int,
    T: int,
    n_kv: int,
    groups: int,
    head_dim: int,
    window: int,
    scale: float,
    block: int,
    softcap: float = 0.0,
) -> Any:
    """Attention of queries q (T, n_kv * groups * head_dim) at positions start..start+T-1
    over keys ``kv_rows(lo, hi) -> (keys, values)``, each (n_kv, hi - lo, head_dim) float32,
    in blocks of ``block`` keys with online softmax; (T, n_heads * head_dim) float32.
    ``softcap`` > 0 caps the scaled scores as ``softcap * tanh(score / softcap)`` (gemma2)."""
    S = start + T
    first = max(0, start - window + 1) if window > 0 else 0  # the first key any query sees
    qh = q.reshape(T, n_kv, groups, head_dim).transpose(1, 2, 0, 3).reshape(n_kv, groups * T, -1)
    qpos = xp.arange(start, S)[:, None]
    m = xp.full((n_kv, groups, T, 1), -np.inf, dtype=np.float32)
    total = xp.zeros((n_kv, groups, T, 1), dtype=np.float32)
    acc = xp.zeros((n_kv, groups, T, head_dim), dtype=np.float32)
    for lo in range(first, S, block):
        hi = min(S, lo + block)
        keys, values = kv_rows(lo, hi)
        s = xp.matmul(qh, keys.transpose(0, 2, 1)).reshape(n_kv, groups, T, hi - lo)
        s *= np.float32(scale)
        if softcap > 0:
            s *= np.float32(1.0 / softcap)
            xp.tanh(s, out=s)
            s *= np.float32(softcap)
        masked = None
        if hi - 1 > start:  # the block reaches past the first query: causal mask
            masked = xp.arange(lo, hi)[None, :] > qpos
        if window > 0 and start + T - 1 - lo >= window:  # the window's edge crosses the block
            edge = (qpos - xp.arange(lo, hi)[None, :]) >= window
            masked = edge if masked is None else masked | edge
        if masked is not None:
            s += xp.where(masked, np.float32(-np.inf), np.float32(0))
        m_new = xp.maximum(m, s.max(axis=-1, keepdims=True))
        m_safe = xp.where(xp.isinf(m_new), np.float32(0), m_new)  # a row masked so far
        s -= m_safe
        xp.exp(s, out=s)
        corr = xp.exp(m - m_safe)
        total = total * corr + s.sum(axis=-1, keepdims=True)
        pv = xp.matmul(s.reshape(n_kv, groups * T, hi - lo), values)
        acc = acc * corr + pv.reshape(n_kv, groups, T, head_dim)
        m = m_new
    out = acc / total
    out = out.transpose(2, 0, 1, 3).reshape(T, n_kv * groups * head_dim)
    return xp.ascontiguousarray(out, dtype=np.float32)
