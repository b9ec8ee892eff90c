"""Fused matvec drivers: int8 activation quantization plus one parallel row loop that calls
the row dot a kernel record (kernels.py) names, in one call taking f32 ``x``. One generic
driver source (and one for B vectors), specialized per type, form and ISA level. Import this
module only after ``simd.available()`` said yes; the portable kernels live in the format
modules."""

from __future__ import annotations

import threading

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from trueno.backends.numba_cache import drop_stale
from trueno.quant import simd
from trueno.quant.llvm_ir import F32, I8, I16, I32, data, i64, llvm, load, splat, store

IR_SOURCES = (
    "simd.py",
    "llvm_ir.py",
    "kernels.py",
    "row_pairs.py",
)  # what the cached drivers' IR comes from
drop_stale(__file__, IR_SOURCES)


V16F32, V16I32 = ir.VectorType(F32, 16), ir.VectorType(I32, 16)


@intrinsic
def _quantize32(typingctx, x, xq, dx, xs, bs, n_blocks):
    """quantize_activations for blocks of 32, each block in 16-lane vectors: its largest |x|
    as a max of the bits with the sign cleared (integer order is float order there, so it is
    exact, and NaN's bits win: a NaN block gets a NaN scale), then the same divisions,
    multiply, rint and conversion per value as the loop form, and bs, xs from the rounded
    values' sums. The loop form's chain of scalar maxima and its unvectorized rounding took
    1.7 ns a value: 1536 values 2.65 -> 0.42 us, measured side by side."""
    sig = types.void(x, xq, dx, xs, bs, types.int64)

    def codegen(context, builder, signature, args):
        arrays = zip(signature.args[:5], args[:5], strict=True)
        xp, qp, dp, sp, bp = (data(context, builder, t, a) for t, a in arrays)
        n = args[5]
        sign_off = ir.Constant(V16I32, [0x7FFFFFFF] * 16)
        v16i8 = ir.VectorType(I8, 16)
        with cgutils.for_range(builder, n) as loop:
            b = loop.index
            at = builder.mul(b, i64(128))
            v = [load(builder, xp, builder.add(at, i64(64 * h)), V16F32) for h in range(2)]
            mags = [builder.and_(builder.bitcast(u, V16I32), sign_off) for u in v]
            top = llvm(builder, "llvm.smax.v16i32", V16I32, *mags)
            top = llvm(builder, "llvm.vector.reduce.smax.v16i32", I32, top)
            d = builder.fdiv(builder.bitcast(top, F32), ir.Constant(F32, 127.0))
            positive = builder.fcmp_ordered(">", d, ir.Constant(F32, 0.0))
            inv = builder.select(positive, builder.fdiv(ir.Constant(F32, 1.0), d),
                                 ir.Constant(F32, 0.0))  # fmt: skip
            store(builder, d, dp, builder.mul(b, i64(4)))
            sums = []
            for h in range(2):
                scaled = builder.fmul(v[h], splat(builder, inv, 16))
                q = builder.fptosi(llvm(builder, "llvm.rint.v16f32", V16F32, scaled), V16I32)
                store(builder, builder.trunc(q, v16i8), qp,
                      builder.add(builder.mul(b, i64(32)), i64(16 * h)))  # fmt: skip
                total = builder.trunc(llvm(builder, "llvm.vector.reduce.add.v16i32", I32, q), I16)
                store(builder, total, bp, builder.add(builder.mul(b, i64(4)), i64(2 * h)))
                sums.append(builder.sext(total, I32))
            xsum = builder.fmul(d, builder.sitofp(builder.add(*sums), F32))
            store(builder, xsum, sp, builder.mul(b, i64(4)))
        return context.get_dummy_value()

    return sig, codegen


def _quantized32(x, block, xq, dx, xs, bs):
    """True when :func:`_quantize32` did the work: blocks of 32, C-contiguous arrays."""


@overload(_quantized32, jit_options={"cache": True})
def _quantized32_impl(x, block, xq, dx, xs, bs):
    if all(a.layout == "C" for a in (x, xq, dx, xs, bs)):

        def impl(x, block, xq, dx, xs, bs):
            if block != 32:
                return False
            _quantize32(x, xq, dx, xs, bs, x.size // 32)
            return True

        return impl
    return lambda x, block, xq, dx, xs, bs: False


@numba.njit(cache=True, error_model="numpy")
def quantize_activations(x, block, xq, dx, xs, bs):
    """x f32 -> xq int8 with one scale dx per ``block`` (32: llama.cpp's Q8_0, 256: Q8_K).

    Also fills bs (int16 sums of xq per 16, as Q8_K bsums) and xs (dx * sum of xq per 32)."""
    if _quantized32(x, block, xq, dx, xs, bs):
        return
    for b in range(x.size // block):
        o = b * block
        amax = np.float32(0)
        for i in range(block):
            amax = max(amax, np.abs(x[o + i]))
        d = amax / np.float32(127)
        inv = np.float32(1) / d if d > 0 else np.float32(0)
        dx[b] = d
        for i in range(block):
            xq[o + i] = np.int8(np.rint(x[o + i] * inv))
    for j in range(x.size // 16):
        s = 0
        for i in range(16):
            s += np.int32(xq[16 * j + i])
        bs[j] = np.int16(s)
    for j in range(x.size // 32):
        xs[j] = dx[(32 * j) // block] * np.float32(np.int32(bs[2 * j]) + np.int32(bs[2 * j + 1]))


@numba.njit(cache=True)
def transpose_blocks(xq, xt):
    """xq int8 -> xt lane-per-block (simd.Body.multi): each full group of 8 blocks of 32 as
    an 8x8 transpose of dwords (byte 32t + 4k + j of a group = byte 32k + 4t + j of xq:
    weights 4t..4t+3 of block k in dword lane k of register t); then, when 4 blocks or more
    remain, those 4 as four registers (lane k < 4: dword t of block k, lane k + 4: dword
    t + 4 of it); the bytes past that copied as they are."""
    n = xq.size
    full = n - n % 256
    for g in range(0, full, 256):
        for t in range(8):
            for k in range(8):
                for j in range(4):
                    xt[g + 32 * t + 4 * k + j] = xq[g + 32 * k + 4 * t + j]
    if n - full >= 128:
        for t in range(4):
            for k in range(8):
                for j in range(4):
                    src = 32 * (k % 4) + 4 * (t + 4 * (k // 4)) + j
                    xt[full + 32 * t + 4 * k + j] = xq[full + src]
        full += 128
    for i in range(full, n):
        xt[i] = xq[i]


ROW_CHUNK = 32  # rows per call of simd.rows_range_t in the B-vector driver
PREFETCH_ROWS = 16  # rows ahead each thread's row loop asks the caches for (measured: 8-32)
# the nibble / int8 rows only (w[0]): prefetching the small d, m, qh rows of the re-laid form
# as well cost 10-25% (A/B at 262144 rows, 2 threads); the hardware prefetcher keeps up there

# row streams per thread in the one-vector driver: each iteration dots a row from each of the
# two halves of the matrix, so every core keeps two sequential read streams' misses in
# flight, not one. Weights past the L3 (Q4_0, 2 threads, distinct 2-56 MB matrices cycled as
# decode does): 20.1-22.7 -> 23.5-26.8 GB/s; 4 streams no better; in the L3 unchanged
# (45.7-48.4 GB/s either way). Each row's dot is the same: outputs are bit for bit the same.
ROW_STREAMS = 2
# the longest rows the drivers software-prefetch (bytes of w[0] a row). A row's prefetch is
# every line of row r + PREFETCH_ROWS at once; from about 48 lines (3 KB) that burst stalls
# the loads, and the hardware prefetcher alone streams faster. Zen 4, 2 threads, 6 distinct
# 24 MB matrices cycled (GB/s, prefetch / none): Q4_K 8192 columns (4608 B) 23.5 / 37.3, Q6_K
# 4096 (3360 B) 21.4 / 36.5 and 8192 (6720 B) 19.4 / 26.7, Q8_0 4096 (4352 B) 24.5 / 32.2;
# at 2 KB and under about the same either way (Q4_K 1152 B 35.6 / 34.7, Q8_0 2176 B 32.3 /
# 31.3), and shorter Q4_0 rows need it (576 B 26.7 / 15.3). 1B Q4_K_M stand-in decode (its
# FFN down rows 4608 and 6720 B), both in one process, alternating: 38.7 -> 45.3 tok/s
PREFETCH_MAX_ROW_BYTES = 2048

_local = threading.local()
_NONE_I8, _NONE_F32, _NONE_I16 = (
    np.empty(0, np.int8),
    np.empty(0, np.float32),
    np.empty(0, np.int16),
)


def activation_buffers(n_cols: int, block: int):
    """(xq, dx, xs, bs) scratch for one activation vector, reused per thread (block 0: the
    float kernels, which take f32 x and no scratch)."""
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    bufs = cache.get((n_cols, block))
    if bufs is None:
        bufs = cache[(n_cols, block)] = new_buffers(n_cols, block)
    return bufs


def new_buffers(n_cols: int, block: int):
    """Fresh (xq, dx, xs, bs) scratch for one activation vector of ``n_cols``."""
    if not block:
        return _NONE_I8, _NONE_F32, _NONE_F32, _NONE_I16
    return (
        np.empty(n_cols, np.int8),
        np.empty(max(n_cols // block, 1), np.float32),
        np.empty(max(n_cols // 32, 1), np.float32),
        np.empty(max(n_cols // 16, 1), np.int16),
    )


def multi_buffers(n_vec: int, n_cols: int, block: int):
    """(xq, dx, xs, bs) scratch for ``n_vec`` activation vectors, reused per thread."""
    cache = getattr(_local, "multi", None)
    if cache is None:
        cache = _local.multi = {}
    key = (n_cols, block)
    bufs = cache.get(key)
    if bufs is None or bufs[0].shape[0] < n_vec:
        k = n_cols if block else 0
        bufs = cache[key] = (
            np.empty((n_vec, k), np.int8),
            np.empty((n_vec, max(n_cols // block, 1) if block else 0), np.float32),
            np.empty((n_vec, max(n_cols // 32, 1) if block else 0), np.float32),
            np.empty((n_vec, max(n_cols // 16, 1) if block else 0), np.int16),
        )
    return tuple(b[:n_vec] for b in bufs)


# ---------------------------------------------------------------------------------------------
# The generic drivers. Each kind (type / form / ISA level) gets its own copy of the same source,
# a closure over constants only (the kind string, the activation block, the prefetch flag and
# PREFETCH_MAX_ROW_BYTES), so numba caches every copy on disk, keyed by those constants (a
# module global would be frozen into the cached code unseen); simd.row_dot picks the record's
# IR body from the kind string at compile time.


def _make_matvec(kind: str, block: int, prefetch: bool, prefetch_max: int):
    @numba.njit(cache=True, parallel=True, nogil=True)
    def matvec(w, x, xq, dx, xs, bs, out):
        """out = W @ x: x quantized to int8 per ``block`` (or taken as f32 when block is 0),
        then one row dot per row, rows split over numba's threads (each thread walking
        ROW_STREAMS far-apart runs of rows at once)."""
        if block:
            quantize_activations(x, block, xq, dx, xs, bs)
            xd = dx
        else:
            xd = x
        n_rows = w[0].shape[0]
        pf = prefetch and w[0].strides[0] <= prefetch_max
        span = (n_rows + ROW_STREAMS - 1) // ROW_STREAMS
        for i in numba.prange(span):
            for s in range(ROW_STREAMS):
                r = i + s * span
                if r < n_rows:
                    if pf:
                        simd.prefetch_row(w[0], r + PREFETCH_ROWS)
                    out[r] = simd.row_dot(kind, w, r, xq, xd, xs, bs)

    return matvec


def _make_matvecs(kind: str, block: int, prefetch: bool, prefetch_max: int, group: int,
                  transposed: bool, ranged: bool, plain_upto: int, plain_cols: int):  # fmt: skip
    group_kind = f"{kind}/{group}"
    # 8 vectors per decode (avx512): 4 to 7 left over take one decode of 4 first, unless the
    # plain form serves them (a constant: numba prunes the step where there is none)
    halves = ranged and group == 8
    half = group // 2 if halves else group
    half_kind = f"{kind}/{half}"
    # then 3 or 2 left over take one decode (continuous batching steps any B)
    pairs = ranged and group >= 4
    pair_kind, triple_kind, quad_kind = f"{kind}/2", f"{kind}/3", f"{kind}/4"
    # row by row: 2 or 3 left over take one decode of 2 (a multi-vector body's results do
    # not depend on how many vectors share its decode)
    row_pairs = not ranged and group > 2

    @numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
    def matvecs(w, x, xq, dx, xs, bs, xt, out):
        """out[b] = W @ x[b] for B vectors: each weight row read from memory once, decoded
        once per ``group`` vectors (simd.rows_dot; when ``ranged``, simd.rows_range_t over
        runs of rows, two rows at a time where the body has that form, on the lane-per-block
        copy ``xt`` of the activations when ``transposed``; fewer than ``group`` vectors, in
        decodes of up to ``plain_upto``, by the plain multi-vector form on rows of up to
        ``plain_cols``), the rest by the row dot of ``matvec``; every result bit-identical to
        ``matvec``'s."""
        n_vec = x.shape[0]
        n_cols = xq.shape[1]
        # fewer vectors than a group, on short rows: decodes of up to plain_upto vectors by
        # the plain form, and no lane-per-block copy of the activations
        plain = plain_upto >= 2 and n_vec < group and n_cols <= plain_cols
        if block:
            for b in range(n_vec):
                quantize_activations(x[b], block, xq[b], dx[b], xs[b], bs[b])
                if transposed and n_vec >= 2 and not plain:
                    transpose_blocks(xq[b], xt[b])
            xd = dx
        else:
            xd = x
        n_rows = w[0].shape[0]
        pf = prefetch and w[0].strides[0] <= prefetch_max
        xa = xt if transposed else xq  # the activations the ranged body reads
        if ranged:  # runs of ROW_CHUNK rows: the vectors' pointers set up once per run
            ahead = PREFETCH_ROWS if pf else 0
            for c in numba.prange((n_rows + ROW_CHUNK - 1) // ROW_CHUNK):
                r0 = c * ROW_CHUNK
                r1 = min(n_rows, r0 + ROW_CHUNK)
                b = 0
                pre = ahead  # 0 once a pass brought the run's rows into the caches
                while b + group <= n_vec:
                    simd.rows_range_t(group_kind, w, r0, r1, xa, xd, xs, bs, b, out, pre)
                    pre = 0
                    b += group
                left = n_vec - b
                while left >= 2:  # a decode for 2 or more of the vectors left
                    k = min(left, plain_upto)
                    if plain and k >= 2:
                        for r in range(r0, r1):
                            if pre:
                                simd.prefetch_row(w[0], r + pre)
                            if k == 4:
                                simd.rows_dot(quad_kind, w, r, xq, xd, xs, bs, b, out)
                            elif k == 3:
                                simd.rows_dot(triple_kind, w, r, xq, xd, xs, bs, b, out)
                            else:
                                simd.rows_dot(pair_kind, w, r, xq, xd, xs, bs, b, out)
                    elif halves and left >= half:
                        k = half
                        simd.rows_range_t(half_kind, w, r0, r1, xa, xd, xs, bs, b, out, pre)
                    elif pairs and left >= 3:
                        k = 3
                        simd.rows_range_t(triple_kind, w, r0, r1, xa, xd, xs, bs, b, out, pre)
                    elif pairs:
                        k = 2
                        simd.rows_range_t(pair_kind, w, r0, r1, xa, xd, xs, bs, b, out, pre)
                    else:
                        break
                    pre = 0
                    b += k
                    left -= k
                while b < n_vec:
                    for r in range(r0, r1):
                        if pre:
                            simd.prefetch_row(w[0], r + pre)
                        out[b, r] = simd.row_dot(kind, w, r, xq[b], xd[b], xs[b], bs[b])
                    pre = 0
                    b += 1
            return
        for r in numba.prange(n_rows):
            if pf:
                simd.prefetch_row(w[0], r + PREFETCH_ROWS)
            b = 0
            while b + group <= n_vec:
                simd.rows_dot(group_kind, w, r, xq, xd, xs, bs, b, out)
                b += group
            if row_pairs:
                if b + 2 <= n_vec:
                    simd.rows_dot(pair_kind, w, r, xq, xd, xs, bs, b, out)
                    b += 2
            while b < n_vec:
                out[b, r] = simd.row_dot(kind, w, r, xq[b], xd[b], xs[b], bs[b])
                b += 1

    return matvecs


# Fewer vectors than a decode group (B = 2 to 7 at avx512), on rows of up to PLAIN_COLS
# columns, run the lane-per-block bodies' plain multi-vector form in decodes of up to
# PLAIN_UPTO vectors: transposing the weights and activations costs more than it saves for so
# few. Zen 4, 2 threads, 6 distinct matrices cycled, Q4_K, ms per matrix (lane-per-block /
# plain, medians of 7 rounds): 8192 x 2048 B = 2 0.80 / 0.42, B = 3 0.95 / 0.56, B = 4 1.00 /
# 0.69, B = 6 1.29 / 1.03; 4096 x 4096 B = 2 1.09 / 0.57, B = 4 1.14 / 1.02; 2048 x 8192 B =
# 2 0.86 / 1.00 (and B = 6 1.53 / 1.76): longer rows keep the lane-per-block form; 8 or more
# vectors too (B = 12: 1.70 / 1.84). At the avx2 level slower: on a Zen 3 (AVX2 only), the
# same bench, medians of 5 rounds, 8192 x 2048 B = 2 Q4_K 0.89 / 1.11, Q4_1 0.51 / 0.64, Q8_0
# 0.84 / 0.92; B = 3 Q4_K 1.24 / 1.56 (4096 x 4096: 0.87 / 1.22); B = 4 and 6 mostly within
# 10% (Q8_0 B = 6 1.50 / 1.92), 2048 x 8192 within 15% either way (Zen 4 forced to avx2 read
# mixed, some better, some worse). So it runs at avx512 only
PLAIN_UPTO = 4
PLAIN_COLS = 4096
PLAIN_LEVELS: tuple[str, ...] = ("avx512",)
_KERNELS: dict = {}
_lock = threading.Lock()


def kind_of(rec, relaid: bool, level: str) -> str:
    """The kind string naming a record's row dot (simd.body_of): type / form / ISA level."""
    return f"{rec.name}/{'relaid' if relaid else 'ggml'}/{level}"


def _kernel(make, rec, relaid: bool, level: str):
    # the module constants the closures take are part of the key: a bench that changes one
    # gets kernels built with it
    key = (make, rec.ggml_type, relaid, level, PREFETCH_MAX_ROW_BYTES)
    key += (PLAIN_UPTO, PLAIN_COLS, PLAIN_LEVELS)
    fn = _KERNELS.get(key)
    if fn is None:
        with _lock:
            fn = _KERNELS.get(key)
            if fn is None:
                kind = kind_of(rec, relaid, level)
                args = [kind, rec.act_block, rec.prefetch, PREFETCH_MAX_ROW_BYTES]
                if make is _make_matvecs:  # groups only where one decode serves several
                    body = simd.body_of(kind)
                    group = body.multi_vectors or rec.multi_vectors if body.vectors else 1
                    transposed = body.multi is not None
                    ranged = transposed or body.twin_rows is not None
                    plain = PLAIN_UPTO if transposed and level in PLAIN_LEVELS else 0
                    args += [group, transposed, ranged, plain, PLAIN_COLS]
                fn = _KERNELS[key] = make(*args)
    return fn


def matvec_kernel(rec, relaid: bool, level: str):
    """The driver ``(w, x, xq, dx, xs, bs, out)`` of a record's row dot at an ISA level."""
    return _kernel(_make_matvec, rec, relaid, level)


def multi_vector_kernel(rec, relaid: bool, level: str):
    """The B-vector driver ``(w, xs (B, cols), xq, dx, xs, bs, xt, out (B, rows))``, its
    scratch from :func:`multi_scratch`."""
    return _kernel(_make_matvecs, rec, relaid, level)


def multi_scratch(n_vec: int, n_cols: int, block: int):
    """The B-vector driver's whole scratch (xq, dx, xs, bs, xt) for ``n_vec`` activations of
    ``n_cols``, reused per thread: one dict lookup per call (a batched decode step makes one
    call per weight matrix)."""
    cache = getattr(_local, "scratch", None)
    if cache is None:
        cache = _local.scratch = {}
    key = (n_vec, n_cols, block)
    bufs = cache.get(key)
    if bufs is None:
        bufs = cache[key] = (*multi_buffers(n_vec, n_cols, block),
                             transposed_buffer(n_vec, n_cols, block))  # fmt: skip
    return bufs


def transposed_buffer(n_vec: int, n_cols: int, block: int):
    """The lane-per-block int8 copy of ``n_vec`` activations (:func:`transpose_blocks`),
    reused per thread; (n_vec, 0) for the float kernels."""
    cache = getattr(_local, "transposed", None)
    if cache is None:
        cache = _local.transposed = {}
    key = (n_cols, block)
    buf = cache.get(key)
    if buf is None or buf.shape[0] < n_vec:
        buf = cache[key] = np.empty((n_vec, n_cols if block else 0), np.int8)
    return buf[:n_vec]
