"""Mixture-of-experts feed-forward (Mixtral: llama with expert tensors; Qwen3-MoE).

    p    = gating(W_router @ x)                      # (E,) softmax, sigmoid, ...
    top  = the k experts with the largest logits     # descending, ties to the lower id
    w    = p[top], renormalized to sum 1 (expert_weights_norm), times expert_weights_scale
    y    = sum_j w_j * down_j(act(gate_j @ x) * (up_j @ x))

The experts of a layer are three 3-D GGUF tensors, ``ffn_{gate,up}_exps`` (E, F, D) and
``ffn_down_exps`` (E, D, F) in numpy order; expert e is the view ``data[e]``, its own
(rows, row_bytes) blocks, so each expert is a :class:`~trueno.llm.weights.Matrix` over the
memory-mapped file with no copy (prepared without the Q4_0..Q8_0 re-layout, which would copy).

Decode (one token) runs the router matvec, then only the k selected experts' matvecs: it
reads k / E of the expert bytes. A batch (prefill chunk, batched decode) is grouped by
expert: the rows routed to an expert go through it together, so each selected expert's
weights are read once per batch (multi-vector kernels for a few rows, dequantize + BLAS for
many). Every path sums the k expert outputs of a token in its routing order with the same
float32 operations, so a token gets the same output alone or in a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from trueno.errors import ModelError
from trueno.gguf.constants import ExpertGatingFunc, GGMLType
from trueno.llm.weights import MATVEC_ROWS, Matrix, _TensorInfo

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from trueno.gguf.reader import TensorInfo
    from trueno.llm.config import Config

    Activation = Callable[[np.ndarray, np.ndarray, np.ndarray], None]  # act(a, g, u)

WEIGHTS_SUM_MIN = 6.103515625e-5  # llama.cpp clamps the sum it renormalizes by (f16 min)


def route(
    logits: np.ndarray,
    k: int,
    gating: ExpertGatingFunc = ExpertGatingFunc.SOFTMAX,
    norm: bool = True,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k routing of router ``logits`` (T, E): expert ids (T, k) int64, in descending
    order of logit (ties to the lower id), and their weights (T, k) float32, computed in
    float64 as llama.cpp's build_moe_ffn does. Every gating function is monotonic, so the
    experts are the top-k logits."""
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    T = logits.shape[0]
    idx, w = np.empty((T, k), np.int64), np.empty((T, k), np.float32)
    _route_rows(logits, int(gating), bool(norm), float(scale), idx, w)
    return idx, w


@njit(cache=True, nogil=True, error_model="numpy")
def _route_rows(logits, gating, norm, scale, idx, w):
    """route() into idx, w (T, k): one call per batch, so decode pays one kernel call."""
    T, E = logits.shape
    k = idx.shape[1]
    taken = np.zeros(E, np.bool_)
    p = np.empty(k, np.float64)
    for t in range(T):
        z = logits[t]
        taken[:] = False
        for j in range(k):  # selection: k passes over E logits (k, E small)
            best = -1
            for e in range(E):
                if not taken[e] and (best < 0 or z[e] > z[best]):
                    best = e
            taken[best] = True
            idx[t, j] = best
        top = np.float64(z[idx[t, 0]])
        if gating == 1:  # softmax over all experts, then the selected probabilities
            total = 0.0
            for e in range(E):
                total += np.exp(np.float64(z[e]) - top)
            for j in range(k):
                p[j] = np.exp(np.float64(z[idx[t, j]]) - top) / total
        elif gating == 3:  # softmax over the selected logits only
            total = 0.0
            for j in range(k):
                p[j] = np.exp(np.float64(z[idx[t, j]]) - top)
                total += p[j]
            for j in range(k):
                p[j] /= total
        else:
            for j in range(k):
                v = np.float64(z[idx[t, j]])
                if gating == 2:  # sigmoid
                    p[j] = 1.0 / (1.0 + np.exp(-v))
                else:  # 4: sqrt(softplus(v)), softplus = log(1 + e^v) computed stably
                    p[j] = np.sqrt(max(v, 0.0) + np.log1p(np.exp(-abs(v))))
        if norm:
            total = 0.0
            for j in range(k):
                total += p[j]
            total = max(total, WEIGHTS_SUM_MIN)
            for j in range(k):
                p[j] /= total
        if scale != 0.0 and scale != 1.0:  # llama.cpp: 0 (unset) and 1 leave them as they are
            for j in range(k):
                p[j] *= scale
        for j in range(k):
            w[t, j] = np.float32(p[j])


class MoE:
    """The router and experts of one layer: ``forward(xs, out, act)``. ``last_experts`` holds
    the experts the last call chose per token, (T, k) (tests, benches; decode reuses it)."""

    def __init__(
        self,
        router: Matrix,
        gate: list[Matrix],
        up: list[Matrix],
        down: list[Matrix],
        config: Config,
    ) -> None:
        self.router = router  # (E, D)
        self.gate, self.up, self.down = gate, up, down  # E matrices each: (F, D), (F, D), (D, F)
        self.n_experts, self.k = len(gate), config.n_experts_used
        self.gating = config.expert_gating
        self._gating = int(self.gating)
        self.norm, self.scale = config.expert_weights_norm, config.expert_weights_scale
        F, D = gate[0].shape
        f32 = np.float32
        self._logits1 = np.zeros((1, self.n_experts), f32)  # decode's scratch
        self._idx1, self._w1 = np.zeros((1, self.k), np.int64), np.zeros((1, self.k), f32)
        self._g1, self._u1, self._a1 = (np.zeros((1, F), f32) for _ in range(3))
        self._y1 = np.zeros((1, D), f32)
        self.last_experts = np.zeros((0, self.k), np.int64)

    @classmethod
    def from_gguf(cls, tensors: Mapping[str, TensorInfo], prefix: str, config: Config) -> MoE:
        """The MoE of the layer whose tensor names start with ``prefix`` ("blk.3.")."""
        E, D, F = config.n_experts, config.dim, config.expert_hidden_dim

        def info(name: str, shape: tuple):
            t = tensors.get(prefix + name)
            if t is None:
                raise ModelError(f"tensor {prefix + name!r} is missing from the model file")
            if tuple(int(s) for s in t.shape) != shape:
                raise ModelError(
                    f"tensor {prefix + name!r}: expected shape {shape}, found {tuple(t.shape)}"
                )
            return t

        router = Matrix(prefix + "ffn_gate_inp.weight", info("ffn_gate_inp.weight", (E, D)))
        return cls(
            router,
            expert_matrices(info("ffn_gate_exps.weight", (E, F, D))),
            expert_matrices(info("ffn_up_exps.weight", (E, F, D))),
            expert_matrices(info("ffn_down_exps.weight", (E, D, F))),
            config,
        )

    def matrices(self) -> list[Matrix]:
        return [self.router, *self.gate, *self.up, *self.down]

    def ready(self) -> None:
        """Prepare the router and every expert (in place over the file's blocks)."""
        self.router.ready()
        for m in (*self.gate, *self.up, *self.down):
            m.ready(relayout=False)

    def expert_nbytes(self, e: int) -> int:
        """Bytes one token routed to expert ``e`` reads (its gate, up and down)."""
        return self.gate[e].nbytes + self.up[e].nbytes + self.down[e].nbytes

    def forward(
        self, xs: np.ndarray, out: np.ndarray, act: Activation, exact: bool = False
    ) -> None:
        """out = MoE(xs) for float32 rows xs (T, D) into out (T, D); ``act(a, g, u)`` is the
        model's gated activation over (n, F) rows. ``exact``: every product through the fused
        matvec kernels (the batch engine: the bits of a lone decode), even for an expert that
        more than ``MATVEC_ROWS`` rows chose."""
        if xs.shape[0] == 1:
            self._forward_one(xs, out, act)
            return
        T, k = xs.shape[0], self.k
        logits = _apply(self.router, xs, np.empty((T, self.n_experts), np.float32), exact)
        idx, w = route(logits, k, self.gating, self.norm, self.scale)
        self.last_experts = idx
        ys = np.empty((T, k, xs.shape[1]), np.float32)  # each (token, slot)'s expert output
        flat = idx.reshape(-1)
        order = np.argsort(flat, kind="stable")  # (token, slot) pairs grouped by expert
        experts, starts = np.unique(flat[order], return_index=True)
        ends = [*starts[1:], len(order)]
        for e, lo, hi in zip(experts.tolist(), starts.tolist(), ends, strict=True):
            pairs = order[lo:hi]
            rows = pairs // k
            xe = np.ascontiguousarray(xs[rows])  # (n, D): the rows routed to expert e
            n, F = len(rows), self.gate[e].rows
            g = _apply(self.gate[e], xe, np.empty((n, F), np.float32), exact)
            u = _apply(self.up[e], xe, np.empty((n, F), np.float32), exact)
            a = np.empty_like(g)
            act(a, g, u)
            ys[rows, pairs % k] = _apply(self.down[e], a, np.empty((n, xs.shape[1]), np.float32),
                                         exact)  # fmt: skip
        out[:] = 0
        for j in range(k):  # in routing order, as _forward_one
            out += w[:, j, None] * ys[:, j]

    def _forward_one(self, x: np.ndarray, out: np.ndarray, act) -> None:
        """Decode: the router, then only the k selected experts, through preallocated rows."""
        logits, idx, w = self._logits1, self._idx1, self._w1
        self.router.matvec_into(x[0], logits[0])
        _route_rows(logits, self._gating, self.norm, self.scale, idx, w)
        self.last_experts = idx
        g, u, a, y = self._g1, self._u1, self._a1, self._y1
        out[:] = 0
        for j, e in enumerate(idx[0].tolist()):
            self.gate[e].matvec_into(x[0], g[0])
            self.up[e].matvec_into(x[0], u[0])
            act(a, g, u)
            self.down[e].matvec_into(a[0], y[0])
            out += w[:, j, None] * y


def expert_matrices(info: TensorInfo) -> list[Matrix]:
    """One Matrix per expert of a 3-D GGUF tensor (E, rows, cols): views, no copy."""
    E, rows, cols = (int(s) for s in info.shape)
    data = np.asarray(info.data)  # (E, rows, row_bytes) blocks, or (E, rows, cols) floats
    gt = GGMLType(info.ggml_type)
    return [
        Matrix(f"{info.name}[{e}]", _TensorInfo(f"{info.name}[{e}]", (rows, cols), gt, data[e]))
        for e in range(E)
    ]


def _apply(m: Matrix, xs: np.ndarray, out: np.ndarray, exact: bool) -> np.ndarray:
    """out = xs @ m.T: the fused matvec kernels for a few rows (weights read once for all of
    them where a multi-vector kernel exists), dequantize + BLAS for many unless ``exact``."""
    if exact or xs.shape[0] <= MATVEC_ROWS:
        m.matvecs_into(xs, out)
    else:
        out[:] = m.matmul(xs)
    return out
