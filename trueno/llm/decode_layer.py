"""Decode's layers as parallel regions: a run of layers in one hand-off to numba's threads,
not one per kernel.

A decode step of a small model is many short kernels. SmolLM2's layer reads 2.2 MB of
weights in four matvecs, and each, called on its own from DRAM, lost about 13 us to the bytes'
time (the wo matrix read 11 GB/s, the output head 39; BENCHMARKS.md, twenty-third session):
its call and thread hand-off, and each thread starting its streams afresh. Here a run of
layers (consecutive layers whose weights share their types: all of SmolLM2's) runs inside one
``prange`` over the threads, as llama.cpp's graph runs on its thread pool. Each layer is a
fixed list of phases, each cut into units (a run of weight rows, an attention task, or one
serial step); every thread takes units of the current phase until none is left, counts each
done, and waits until the phase's units are all done before the next phase. The units of a
phase are cut into one contiguous segment a thread, which each thread reads front to back
(one forward stream through each weight, as the hardware prefetchers want: units handed out
in turn from one counter were no faster than the kernel-by-kernel step), then the threads
take what is left of the others' segments from their back ends. Nothing waits for a
particular thread: were numba to run the region's iterations one after another on one
thread, that thread would do every unit itself. So the region is correct for any thread
count and any schedule, and a thread that comes late only finds less to do.

Each unit computes what the kernel-by-kernel step computes, with the same kernels (the
weights' row dots through :mod:`trueno.quant.row_units`, attention's tasks and merge cut as
:func:`~trueno.llm.attention.attend_gqa` cuts them), so the logits are equal bit for bit:
the tests check it.

The phases of a layer (``model._layers_one`` is the kernel-by-kernel form of the same)::

    NORM      xb = rms_norm(x) * attn_norm; quantize xb for q, k, v           (one unit)
    QKV       q | k | v = W @ xb                                               (row units)
    ENTER     q/k norms, RoPE, k and v into the cache at pos                   (one unit)
    ATTEND    each (KV head, slice of positions) task                          (task units)
    MERGE     slices merged (or nothing); quantize the output for wo           (one unit)
    WO        xo = Wo @ att                                                    (row units)
    FFN_NORM  x += post_norm(xo); xb = rms_norm(x) * ffn_norm; quantize xb     (one unit)
    GATE_UP   gate | up = W @ xb                                               (row units)
    ACT       ha = act(gate) * up; quantize ha                                 (one unit)
    DOWN      xo = Wd @ ha                                                     (row units)
    RESIDUAL  x += post_norm(xo)                                               (one unit)

A layer takes this form when every matrix of it has a SIMD driver in one piece and the
architecture needs none of: biases, MoE, olmo2's whole-row q/k norms, a residual scale, a
missing pre-norm (the rest, gemma's post norms, per-head q/k norms, sliding windows, softcaps
and every KV cache type, are the kernels' own arguments). Other layers, traced steps and one
thread run kernel by kernel. ``TRUENO_DECODE_REGIONS=0`` turns it off (A/B runs)."""

from __future__ import annotations

import itertools
import platform
import threading
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.typed import List

from trueno.backends.numba_cache import drop_stale, launch_threads
from trueno.config import decode_regions
from trueno.llm.attention import (
    _JIT,
    LEVEL,
    SPLIT_MIN,
    THREADS,
    _attend_task,
    _merge,
    slice_step,
    split_positions,
    window_start,
)
from trueno.llm.kernels import (
    _enter_token,
    add_rms_norm,
    gelu_tanh_mul,
    residual_norm,
    rms_norm,
    silu_mul,
)
from trueno.quant import row_units
from trueno.quant.fused import IR_SOURCES
from trueno.quant.llvm_ir import llvm

if TYPE_CHECKING:
    from trueno.llm.config import Config
    from trueno.llm.kv_cache import RunState
    from trueno.llm.weights import Weights

drop_stale(__file__, ("attention.py", "kernels.py", "../quant/row_units.py", "../quant/fused.py",
                      "../quant/grouped.py", *(f"../quant/{s}" for s in IR_SOURCES)))  # fmt: skip
launch_threads()

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")

# the phases, in order
NORM, QKV, ENTER, ATTEND, MERGE, WO, FFN_NORM, GATE_UP, ACT, DOWN, RESIDUAL = range(11)
N_PHASES = 11
SLOTS = THREADS + 1  # a phase's counters in sync: one per thread's segment, then units done


def _slot(context, builder, arrty, arr, index, indexty):
    ary = context.make_array(arrty)(context, builder, arr)
    i = context.cast(builder, index, indexty, types.intp)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [i])


@intrinsic
def _fetch_add(typingctx, sync, i, by):
    """sync[i] += by as one atomic step (``lock xadd``); returns the value before."""

    def codegen(context, builder, sig, args):
        ptr = _slot(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        step = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, step, "seq_cst")

    return types.int64(sync, i, by), codegen


@intrinsic
def _load_acquire(typingctx, sync, i):
    """sync[i], read atomically: nothing after it is read before it."""

    def codegen(context, builder, sig, args):
        ptr = _slot(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(sync, i), codegen


@intrinsic
def _pause(typingctx):
    """The spin-wait hint (x86 ``pause``: lets the sibling thread run, saves power)."""

    def codegen(context, builder, sig, args):
        if _X86:
            llvm(builder, "llvm.x86.sse2.pause", ir.VoidType())
        return context.get_dummy_value()

    return types.void(), codegen


_LOW = (1 << 32) - 1


@njit(**_JIT)
def _take(sync, p, t, n):
    """The next unit of phase p (n units) for thread t, or -1 when none is left.

    The units are cut into THREADS contiguous segments, one a thread: a thread takes its own
    segment's units front to back (each thread one forward stream through the weights, as
    the hardware prefetchers like it), then the other segments' from their back ends. Each
    segment's counter packs the units taken from its front (low 32 bits) and back (high)."""
    base = p * SLOTS
    for k in range(THREADS):
        s = (t + k) % THREADS
        lo, hi = s * n // THREADS, (s + 1) * n // THREADS
        old: int = _fetch_add(sync, base + s, 1 if k == 0 else 1 << 32)  # type: ignore[call-arg]
        front, back = old & _LOW, old >> 32
        if front + back < hi - lo:
            return lo + front if k == 0 else hi - 1 - back
    return -1


@njit(**_JIT)
def _done(sync, p):
    _fetch_add(sync, p * SLOTS + THREADS, 1)  # type: ignore[call-arg]  # an intrinsic


@njit(**_JIT)
def _wait(sync, p, n):
    """Until all n units of phase p are done (by whichever thread took them)."""
    while _load_acquire(sync, p * SLOTS + THREADS) < n:  # type: ignore[call-arg]
        _pause()


def _products(ka, kb, kc, t, sync, p, x, a, b, c):
    """Phase p: the products W @ x of up to three weights (``"none"``: absent), each of a, b,
    c a (weight arrays, activation scratch, output) triple, their units taken in turn."""


@overload(_products, prefer_literal=True, jit_options=_JIT)
def _products_impl(ka, kb, kc, t, sync, p, x, a, b, c):
    if not all(isinstance(k, types.StringLiteral) for k in (ka, kb, kc)):
        return None
    k1, k2, k3 = (k.literal_value for k in (ka, kb, kc))

    def impl(ka, kb, kc, t, sync, p, x, a, b, c):
        n1, n2 = row_units.units(k1, a[0]), row_units.units(k2, b[0])
        n = n1 + n2 + row_units.units(k3, c[0])
        u = _take(sync, p, t, n)
        while u >= 0:
            if u < n1:
                row_units.rows(k1, a[0], x, a[1], a[2], u)
            elif u < n1 + n2:
                row_units.rows(k2, b[0], x, b[1], b[2], u - n1)
            else:
                row_units.rows(k3, c[0], x, c[1], c[2], u - n1 - n2)
            _done(sync, p)
            u = _take(sync, p, t, n)
        _wait(sync, p, n)

    return impl


def _run_layers(kinds, t, sync, pos, run, layers):
    """Thread t's share of each layer in turn (every unit it takes); see the module
    docstring. ``layers``: a typed list of the layers' argument tuples (:func:`_layer`)."""


@overload(_run_layers, prefer_literal=True, jit_options=_JIT)
def _run_layers_impl(kinds, t, sync, pos, run, layers):
    if not isinstance(kinds, types.StringLiteral):
        return None
    kq, kk, kv, ko, kg, ku, kd, act, post = kinds.literal_value.split("|")
    gelu, post_norm = act == "gelu_tanh", post == "post"
    lv = np.int64(LEVEL)

    def impl(kinds, t, sync, pos, run, layers):
        # what every layer of the run shares, fetched once: each array fetched from a typed
        # list costs its reference count, to and fro between the threads (a layer's 70-odd
        # arrays fetched per layer took about 3 us)
        acts, shared, bufs, scratch = run[0]
        x, xb, xo, att, q_out, k_out, v_out, g_out, u_out, hg, hu, ha = acts
        q, k, v, positions, row_buf = shared
        bq, bk, bv, bo, bg, bu, bd = bufs
        accs, ms, els = scratch
        run_sync = sync
        for li in range(len(layers)):
            # this layer's counters: a view of the run's
            sync = run_sync[li * N_PHASES * SLOTS : (li + 1) * N_PHASES * SLOTS]
            weights, tables, consts = layers[li]
            wq, wk, wv, wo, wg, wu, wd = weights
            k_cache, v_cache, cos, sin, q_norm, k_norm = tables
            attn_norm, ffn_norm, post_attn, post_ffn, eps, scale, softcap, window, neox, qk = consts

            if _take(sync, NORM, t, 1) == 0:
                rms_norm(xb, x, attn_norm, eps)
                row_units.quantize(kq, xb[0], bq)
                row_units.quantize(kk, xb[0], bk)
                row_units.quantize(kv, xb[0], bv)
                _done(sync, NORM)
            _wait(sync, NORM, 1)

            _products(kq, kk, kv, t, sync, QKV, xb[0], (wq, bq, q_out), (wk, bk, k_out),
                      (wv, bv, v_out))  # fmt: skip

            if _take(sync, ENTER, t, 1) == 0:
                _enter_token(q, k, v, k_cache, v_cache, pos, positions, cos, sin, neox, qk, q_norm,
                             k_norm, eps, row_buf)  # fmt: skip
                _done(sync, ENTER)
            _wait(sync, ENTER, 1)

            # attention, cut as attend_gqa cuts it: per KV head (short), or (head, slice) tasks
            n_kv, hd = k_cache.shape[0], k_cache.shape[2]
            n_heads = q.shape[1] // hd
            groups = n_heads // n_kv
            out, qh = att.reshape(n_heads, hd), q.reshape(n_heads, hd)
            first, end = window_start(pos, window), pos + 1
            serial = THREADS == 1 or (end - first) * n_kv < SPLIT_MIN
            parts = 1 if serial else split_positions(end - first, n_kv, np.int64(THREADS))
            step = slice_step(end - first, parts)
            n = n_kv * parts
            u = _take(sync, ATTEND, t, n)
            while u >= 0:
                h, s = u // parts, u % parts
                h0 = h * groups
                if serial:  # attend_serial's arithmetic: straight into the output, then scaled
                    acc = out[h0 : h0 + groups]
                    _attend_task(acc, ms[u], els[u], qh[h0 : h0 + groups], k_cache[h], v_cache[h],
                                 first, end, scale, softcap, lv)  # fmt: skip
                    for g in range(groups):
                        inv = np.float32(1.0) / els[u, g]
                        for i in range(hd):
                            acc[g, i] *= inv
                else:
                    lo = first + s * step
                    hi = min(end, lo + step)
                    _attend_task(accs[u], ms[u], els[u], qh[h0 : h0 + groups], k_cache[h],
                                 v_cache[h], lo, hi, scale, softcap, lv)  # fmt: skip
                _done(sync, ATTEND)
                u = _take(sync, ATTEND, t, n)
            _wait(sync, ATTEND, n)

            if _take(sync, MERGE, t, 1) == 0:
                if not serial:
                    _merge(out, accs[:n], ms[:n], els[:n], groups, parts)
                row_units.quantize(ko, att[0], bo)
                _done(sync, MERGE)
            _wait(sync, MERGE, 1)

            wo_out = (wo, bo, xo[0])
            _products(ko, "none", "none", t, sync, WO, att[0], wo_out, wo_out, wo_out)

            if _take(sync, FFN_NORM, t, 1) == 0:
                residual_norm(xb, x, xo, post_attn, ffn_norm, eps, post_norm)
                row_units.quantize(kg, xb[0], bg)
                row_units.quantize(ku, xb[0], bu)
                _done(sync, FFN_NORM)
            _wait(sync, FFN_NORM, 1)

            up = (wu, bu, u_out)
            _products(kg, ku, "none", t, sync, GATE_UP, xb[0], (wg, bg, g_out), up, up)

            if _take(sync, ACT, t, 1) == 0:
                if gelu:
                    gelu_tanh_mul(ha, hg, hu)
                else:
                    silu_mul(ha, hg, hu)
                row_units.quantize(kd, ha[0], bd)
                _done(sync, ACT)
            _wait(sync, ACT, 1)

            down = (wd, bd, xo[0])
            _products(kd, "none", "none", t, sync, DOWN, ha[0], down, down, down)

            if _take(sync, RESIDUAL, t, 1) == 0:
                if post_norm:
                    add_rms_norm(x, xo, post_ffn, eps)
                else:
                    xr, yr = x[0], xo[0]
                    for i in range(xr.shape[0]):
                        xr[i] += yr[i]
                _done(sync, RESIDUAL)
            _wait(sync, RESIDUAL, 1)

    return impl


def _make_region(kinds: str):
    """The region of one combination of weight kinds and layer options: a closure over that
    string only, so numba caches each on disk."""

    @numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
    def region(sync, pos, run, layers):
        for i in range(sync.shape[0]):  # a plain loop: an array expression would be a parfor
            sync[i] = 0
        for t in prange(THREADS):
            _run_layers(kinds, t, sync, pos, run, layers)

    return region


_REGIONS: dict[str, Any] = {}
_lock = threading.Lock()


def _region(kinds: str):
    with _lock:
        fn = _REGIONS.get(kinds)
        if fn is None:
            fn = _REGIONS[kinds] = _make_region(kinds)
    return fn


class LayerRegion:
    """A run of consecutive layers with the same weight kinds, as one parallel region:
    ``run(pos)`` after ``state.x`` holds the token's residual stream and ``state.pos`` its
    position leaves the run's output in ``state.x``. Built by :func:`regions`."""

    def __init__(self, fn: Any, run: tuple, layers: list[tuple]) -> None:
        self._fn = fn
        self.n_layers = len(layers)
        self._sync = np.zeros(self.n_layers * N_PHASES * SLOTS, np.int64)
        # the arrays as typed-list items (what the layers share, then each layer's own):
        # numba unboxes a list in one step, where the 70-odd arrays of a layer as arguments
        # took 10 us a call
        self._run = List([run])
        self._layers = List(layers)

    def run(self, pos: int) -> None:
        self._fn(self._sync, pos, self._run, self._layers)


def _kind(m) -> str | None:
    """A matrix's unit kind (None: not one prepared piece with a SIMD driver)."""
    p = getattr(m, "prepared", None)
    return None if p is None else p.unit_kind()


def _prepared(m, stand_in):
    """A matrix's (driver arrays, activation scratch); an absent one's stand in (unread)."""
    m = stand_in if m is None else m
    return m.prepared._weights, m.prepared._bufs


def regions(config: Config, weights: Weights, state: RunState) -> list[LayerRegion | None] | None:
    """Per layer, the :class:`LayerRegion` of the run of layers that starts there (None
    elsewhere: a layer inside a run, or one that runs kernel by kernel); None when no layer
    would run in a region (off, one thread, or none qualifies)."""
    c = config
    if not decode_regions() or THREADS < 2 or c.residual_scale != 1.0 or c.qk_norm_full:
        return None
    specs = [_layer(c, lw, layer, state) for lw, layer in
             zip(weights.layers, state.layers, strict=True)]  # fmt: skip
    out: list[LayerRegion | None] = [None] * len(specs)
    kinds = [None if s is None else s[0] for s in specs]
    for key, run in itertools.groupby(range(len(specs)), key=kinds.__getitem__):
        layers = list(run)
        if key is not None:  # the layers share the first one's scratch (same kinds, shapes)
            run_specs = [s for s in (specs[i] for i in layers) if s is not None]
            own = [s[2] for s in run_specs]
            out[layers[0]] = LayerRegion(_region(key), run_specs[0][1], own)
    return out if any(r is not None for r in out) else None


def _layer(c, lw, layer, s) -> tuple[str, tuple, tuple] | None:
    """(its kinds literal, the arguments a run of such layers shares, its own) of a layer a
    region can run; None otherwise."""
    if lw.moe is not None or lw.attn_norm is None or lw.ffn_norm is None:
        return None
    if any(getattr(lw, b, None) is not None for b in ("bqkv", "bq", "bk", "bv", "bo")):
        return None
    stacked_qkv, stacked_ffn = lw.wqkv is not None, lw.w_gate_up is not None
    qkv = (lw.wqkv, None, None) if stacked_qkv else (lw.wq, lw.wk, lw.wv)
    ffn = (lw.w_gate_up, None) if stacked_ffn else (lw.w_gate, lw.w_up)
    mats = (*qkv, lw.wo, *ffn, lw.w_down)
    kinds = ["none" if m is None else _kind(m) for m in mats]
    if any(k is None for k in kinds) or mats[0] is None or lw.wo is None or lw.w_down is None:
        return None
    kinds += [c.activation, "post" if c.post_norms else "plain"]
    qkv_out = (s.qkv, s.qkv, s.qkv) if stacked_qkv else (s.q[0], s.k[0], s.v[0])
    ffn_out = (s.gate_up, s.gate_up) if stacked_ffn else (s.hg[0], s.hu[0])
    acts = (s.x, s.xb, s.xo, s.att, *qkv_out, *ffn_out, s.hg, s.hu, s.ha)
    tables = (layer.key_cache, layer.value_cache, layer.cos, layer.sin, layer.q_norm,
              layer.k_norm)  # fmt: skip
    consts = (lw.attn_norm, lw.ffn_norm, layer.post_attn_norm, layer.post_ffn_norm,
              float(layer.eps), float(layer.scale), float(layer.softcap), int(layer.window),
              bool(layer.neox), bool(layer.qk_norm))  # fmt: skip
    pairs = [_prepared(m, lw.wo) for m in mats]
    n_kv, hd = c.n_kv_heads, c.head_dim
    groups = c.n_heads // n_kv
    tasks = n_kv * max(THREADS, 1)
    scratch = (np.empty((tasks, groups, hd), np.float32), np.empty((tasks, groups), np.float32),
               np.empty((tasks, groups), np.float32))  # fmt: skip
    w, b = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    shared = (acts, (s.q, s.k, s.v, s.pos, s.scores), b, scratch)
    return "|".join(kinds), shared, (w, tables, consts)  # type: ignore[arg-type]
