"""The GGML types in groups of 16 rows: the AVX-512 VNNI matvec as a few streams per thread.

Decode at 1B parameters and up streams each weight from DRAM once per token, so a matvec is
as fast as a core can keep loads in flight. The paired layout (relayout.py) spreads a row over
its quants and its scales, and a thread walks two far-apart runs of rows; the K-quants' row
dots read one row's blocks at a time and sum each row horizontally. Here the weight is re-laid
once at prepare time into records of 16 rows, in row-group order, the GGML blocks' own bytes:

    record (g, b) of the 32-weight types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) = 16 rows x 32
    columns: the quants (Q5_*: then the 16 rows' qh words), then the 16 rows' f16 scales
    (Q4_1, Q5_1: then their f16 mins): 16 times the GGML block's bytes. Nibble types: dword r
    of quant vector k (k < 4) holds bytes 4k..4k+3 of row 16g + r's block b, whose low
    nibbles are weights 4k..4k+3 and high nibbles weights 16 + 4k..16 + 4k + 3 (GGML's
    pairing of element i with i + 16). Q8_0: dword r of vector k (k < 8) holds its weights
    4k..4k+3, each + 128. Q4_K (2304 bytes), Q5_K (2816), Q6_K (3360) and Q3_K (1760): 16
    rows x one 256-weight super-block, laid out the same way (:data:`K_MINS`, :data:`K6_BYTES`,
    :data:`K3_BYTES`). Q3_K has no other fused kernel (:data:`K_ALONE`).

The 16 rows of a group sit in the 16 lanes of one register, so 32 weights cost eight
``vpdpbusd`` with the activation dwords broadcast (int8gemm.py's tile, one token wide) and no
horizontal sums:

    isum = -zp * sum(xq[block]) + sum_k dpbusd(w_k, bcast(xq[32b + 4k]))  (16 lanes, i32)
    acc  = fma(f32(isum), d_b * dx[b], acc)            (zp: Q4_0's 8, Q5_0's 16, Q8_0's 128;
    acc  = fma(m_b, xs[b], acc)                         Q4_1, Q5_1: none, then their mins)

The K-quants scale each sub-block's isum by its integer scale in i32 first, as the GGML row
dots do (:func:`_kmin_record`, :func:`_per16_record`), on activations quantized per 256.

The one-vector matvec splits the row groups into :data:`CHUNKS` contiguous chunks over the
threads and reads each chunk as :data:`STREAMS` runs in step, prefetching ahead in each. The
B-vector form reads one group at a time and runs exactly the one-vector operations for each
vector over the same decoded weights, so ``matvecs``'s out[v] equals ``matvec(x[v])`` bit for
bit, whatever B is. The integer sums equal the GGML-layout kernels'; the f32 order differs (a
last-bits difference).

At the ``avx512`` level, for weights whose rows are a multiple of 16 (:func:`applies`);
prefill's int8 GEMM packs its panels from this layout (:func:`pack_panel`), the same unsigned
weights and scales as from the paired layout or the K-quants' GGML blocks, so the same products.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from trueno.backends.numba_cache import drop_stale
from trueno.cpu import amd_zen
from trueno.quant.fused import quantize_activations
from trueno.quant.llvm_ir import (
    F16,
    F32,
    I16,
    I32,
    Acc,
    data,
    half_to_float,
    i64,
    llvm,
    load,
    prefetch,
    row_ptr,
    splat,
    store,
    vconst,
    x86,
)

drop_stale(__file__, ("llvm_ir.py", "fused.py"))

ENABLED = True  # False: every type keeps its ungrouped layout (the benches' "before" side)
GROUP = 16  # rows per group: one zmm lane each
NIBBLE_BYTES = 256  # a record's quants, 16 rows x 32 weights of 4 bits (Q8_0: 512 bytes)
# per type: the GGML block's bytes, where its f16 fields sit (scale, min or -1), the zero
# point of the unsigned weights the dots read (Q4_0's 8; Q8_0's signed bytes are kept + 128),
# where its 32 fifth bits sit (qh, or -1); a record is the quants, the 16 rows' qh words (bits
# permuted: :func:`_spread_high_bits`), the 16 scales, then the 16 mins
LAYOUTS = {
    "Q4_0": (18, 0, -1, 8, -1),
    "Q4_1": (20, 0, 2, 0, -1),
    "Q5_0": (22, 0, -1, 16, 2),
    "Q5_1": (24, 0, 2, 0, 4),
    "Q8_0": (34, 0, -1, 128, -1),
}
# Q4_K: a record is 16 rows x one 256-weight super-block (16 x 144 bytes): the quants of its
# four 32-byte chunks (each two sub-blocks: low and high nibbles), 8 vectors a chunk, dword r
# of vector k holding row r's bytes 4k..4k+3; then the 16 d, the 16 dmin (f16); then the
# packed 6-bit scales and mins as 3 vectors, dword r of vector u row r's bytes 4u..4u+3
K4_BYTES = 144
K4_QUANTS = 2048  # 4 chunks x 8 vectors x 64 bytes
K4_SCALES = K4_QUANTS + 64  # after the d and dmin halves
# Q5_K: Q4_K's record with the fifth bits after the quants: 8 vectors, dword r of vector k
# holding row r's qh bytes 4k..4k+3 (bit s of byte l: weight l of sub-block s), then the d,
# dmin and scales as Q4_K's (16 x 176 bytes)
K5_BYTES = 176
K5_QH = 2048
# per K-quant with 8 sub-blocks of 32 and 6-bit scales and mins: (block bytes, where its
# record holds the qh vectors (or -1), the 16 d (then the 16 dmin), the scale vectors)
K_MINS = {"Q4_K": (K4_BYTES, -1, K4_QUANTS, K4_SCALES),
          "Q5_K": (K5_BYTES, K5_QH, K5_QH + 512, K5_QH + 512 + 64)}  # fmt: skip
# Q6_K: 16 rows x one super-block (16 x 210 bytes): per half h of the super-block its low
# nibbles ql (16 vectors, dword r of vector k row r's ql bytes 64h + 4k..), then per half its
# high bits qh (8 vectors: row r's qh bytes 32h + 4k..), then the int8 scales per 16 weights
# (4 vectors: row r's scale bytes 4u..4u+3), then the 16 d (f16)
K6_BYTES = 210
K6_QH = 2048
K6_SCALES = 3072
K6_D = 3328
# Q3_K: 16 rows x one super-block (16 x 110 bytes): the 2-bit quants qs (16 vectors, dword r
# of vector v row r's qs bytes 4v..4v+3), the high bits hmask (8 vectors), the packed 6-bit
# scales per 16 weights (3 vectors), then the 16 d (f16). No fused GGML-layout kernel has it:
# without this layout a Q3_K weight is dequantized to f32 once (4 bytes a weight)
K3_BYTES = 110
K3_HM = 1024
K3_SCALES = 1536
K3_D = 1728
K_ALONE = ("Q3_K",)  # grouped types with no kernel record (kernels.RECORDS): this layout only
TYPES = (*LAYOUTS, *K_MINS, "Q6_K", "Q3_K")
ACT_BLOCK = {**dict.fromkeys(LAYOUTS, 32), **dict.fromkeys((*K_MINS, "Q6_K", "Q3_K"), 256)}
# prefetcht1 this far ahead of the record being read (12 records). 1B stand-in layers, 2
# threads, cycling through all 112 Q4_0 matrices (547 MB): none 16.3-17.4 GB/s; 1152 B ahead
# 20.8; 2304 B 22.0-22.8; 3456 B 23.4-23.7; 4608 B 22.3-23.7; 6912 B 23.2 (the paired kernel
# 18.3-19.8 in the same runs)
PREFETCH_BYTES = 3456
PREFETCH_LOCALITY = 2  # llvm.prefetch's hint: prefetcht1 (into L2)
# The one-vector matvec reads a thread's row groups as STREAMS runs in step (record b of each
# run in turn), CHUNKS contiguous chunks of groups over the threads: the hardware prefetcher
# follows several streams per core better than one. A plain numba read of 547 MB, 2 threads,
# on an Intel Xeon: one stream a thread 17-24.5 GB/s, four 26.5-27.7; the Q4_0 matvec on the
# 1B layers 22.3-22.4 -> 23.8-25.7 GB/s (2 streams 22.8, 8 24.2; 16 chunks as fast as 2). On
# a Zen 4 (llvmlite "znver4") two streams, and the K-quants prefetching 1.5 records ahead,
# not one: 1B layers, 2 threads, grouped over ungrouped in one process, 3-6 runs each, Q4_K
# 0.86-0.92 -> 1.00-1.15, Q6_K 0.67-0.74 -> 0.94-0.97 (4 streams 1.5 or 2 ahead, 1, 2 or 3
# ahead at 2 streams, 1 or 8 streams, prefetcht0: each slower; measured before the record
# steps' spill fix, and after it one run of each setting fell within the same spread)
ZEN = amd_zen()
STREAMS = 2 if ZEN else 4
# records the K-quants prefetch ahead (their own record size); on Zen hosts it serves Q3_K,
# the one K-quant kept grouped there (SLOWER_HERE below), and the tests, which force every
# type grouped
K_AHEAD = 1.5 if ZEN else 1.0
# Types whose grouped kernel is slower than their ungrouped one on this host, so they keep
# the GGML layout: on Zen hosts every K-quant with an ungrouped kernel (Q3_K has none). Zen 4,
# 2 threads, from DRAM: Q5_K grouped over ungrouped 0.71-0.85 in every kernel run and
# 0.68-0.83 in 1B Q5_K_M decode; Q6_K 0.69-0.86 in each of 17 in-process kernel runs on the
# 1B layers, Q4_K 0.79-1.27. End to end, one model loaded twice in one process with decode
# alternating (benches/grouped_decode.py, 6-10 rounds): Q4_K and Q6_K ungrouped decode the 1B
# Q4_K_M stand-in 1.05-1.09x and gemma-3-270m 1.05x faster, prefill 0.98-1.04x. In L2 the
# grouped kernels are 1.3-2x faster: this is the DRAM stream, not the arithmetic
SLOWER_HERE: tuple[str, ...] = ("Q4_K", "Q5_K", "Q6_K") if ZEN else ()
CHUNKS = 16

_V16I32 = ir.VectorType(I32, 16)
_V16F32 = ir.VectorType(F32, 16)
_V16I16 = ir.VectorType(I16, 16)


def record_bytes(type_name: str) -> int:
    """Bytes of one record: the 16 rows' quants and f16 fields (their GGML blocks' bytes)."""
    if type_name in K_MINS:
        return GROUP * K_MINS[type_name][0]
    if type_name in ("Q6_K", "Q3_K"):
        return GROUP * (K6_BYTES if type_name == "Q6_K" else K3_BYTES)
    return GROUP * LAYOUTS[type_name][0]


def scales_at(type_name: str) -> int:
    """Where a 32-weight record's 16 scales start: after its quants and qh words."""
    high = LAYOUTS[type_name][4] >= 0
    return quant_bytes(record_bytes(type_name)) + (4 * GROUP if high else 0)


def quant_bytes(record: int) -> int:
    """The quant bytes of a record of ``record`` bytes (the f16 fields follow them)."""
    return 2 * NIBBLE_BYTES if record == record_bytes("Q8_0") else NIBBLE_BYTES


def applies(type_name: str, level: str | None, shape: tuple[int, int]) -> bool:
    """Whether a weight takes this layout: one of :data:`TYPES` at the avx512 level, rows a
    multiple of 16, and not :data:`SLOWER_HERE`."""
    return (
        ENABLED
        and type_name in TYPES
        and type_name not in SLOWER_HERE
        and level == "avx512"
        and shape[0] % GROUP == 0
    )


def _fields(type_name: str) -> np.ndarray:
    """A record as copies from its 16 rows' blocks, one row a copy: (dst, src, n, size) = n
    pieces of ``size`` bytes from byte src of each row's block, piece k of row r to byte dst +
    (16k + r) * size of the record (quants as dwords, f16 fields as one piece)."""
    if type_name in K_MINS:  # qs (Q5_K: then qh), then d, dmin, then the 12 scale bytes
        block, qh_at, d_at, sc_at = K_MINS[type_name]
        rows = [(0, block - 128, 32, 4), (d_at, 0, 1, 2), (d_at + 32, 2, 1, 2),
                (sc_at, 4, 3, 4)]  # fmt: skip
        if qh_at >= 0:
            rows.append((qh_at, 16, 8, 4))
    elif type_name == "Q6_K":  # ql, qh, scales, d
        rows = [(0, 0, 32, 4), (K6_QH, 128, 16, 4), (K6_SCALES, 192, 4, 4), (K6_D, 208, 1, 2)]
    elif type_name == "Q3_K":  # qs, hmask, scales, d
        rows = [(0, 32, 16, 4), (K3_HM, 0, 8, 4), (K3_SCALES, 96, 3, 4), (K3_D, 108, 1, 2)]
    else:
        block_bytes, d_at, m_at, _, qh_at = LAYOUTS[type_name]
        qb, at = quant_bytes(record_bytes(type_name)), scales_at(type_name)
        rows = [(0, block_bytes - qb // GROUP, qb // 64, 4), (at, d_at, 1, 2)]
        if m_at >= 0:
            rows.append((at + 32, m_at, 1, 2))
        if qh_at >= 0:
            rows.append((qb, qh_at, 1, 4))
    return np.array(rows, np.int64)


def regroup(blocks: np.ndarray, type_name: str) -> np.ndarray:
    """GGML rows ``(rows, cols // 32 * block_bytes)`` uint8 -> the records ``(rows // 16,
    cols // 32, record_bytes)`` uint8 (a copy; the K-quants: ``cols // 256`` records a
    group). Q8_0's signed quants are stored + 128.

    One transpose per field, of dwords or f16 (their bytes as one element: a 1B Q4_K model's
    copy ran at 1.5 GB/s here, against 0.5 for the same transposes of single bytes)."""
    record = record_bytes(type_name)
    block_bytes = record // GROUP
    G, nb = blocks.shape[0] // GROUP, blocks.shape[1] // block_bytes
    out = np.empty((G, nb, record), np.uint8)
    b3 = blocks.reshape(G, GROUP, nb, block_bytes)
    for dst, src, n, size in _fields(type_name):
        dtype = np.uint32 if size == 4 else np.uint16
        piece = b3[..., src : src + n * size].reshape(G, GROUP, nb, n, size).view(dtype)
        field = out[..., dst : dst + GROUP * n * size].view(dtype).reshape(G, nb, n, GROUP)
        field[...] = piece[..., 0].transpose(0, 2, 3, 1)  # (group, block, piece, row)
    if type_name == "Q8_0":  # the signed bytes + 128, unsigned for vpdpbusd
        out[..., : quant_bytes(record)] ^= 0x80
    elif type_name in LAYOUTS and LAYOUTS[type_name][4] >= 0:
        qb = quant_bytes(record)
        qh = out[..., qb : qb + 4 * GROUP].view(np.uint32)
        qh[...] = _spread_high_bits(qh)
    return out


def _spread_high_bits(qh: np.ndarray) -> np.ndarray:
    """Q5_0 / Q5_1 qh words -> bit 8e + k holds weight 4k + e's fifth bit (was bit 4k + e): the
    weights of vector k (:func:`_weight_vectors`) then take theirs by one shift by 4 - k and a
    mask of bit 4 of each byte."""
    out = np.zeros_like(qh)
    for k in range(8):
        for e in range(4):
            out |= ((qh >> np.uint32(4 * k + e)) & np.uint32(1)) << np.uint32(8 * e + k)
    return out


# ---- the kernels ---------------------------------------------------------------------------


class _Rows(NamedTuple):
    """Per activation vector of a call: pointers to its rows of xq, bs, dx and xs."""

    xq: list
    bs: list
    dx: list
    xs: list


@intrinsic
def _group_dots(typingctx, kind, w, g, gstep, n_grp, xq, bs, dx, xs, out, v0, n_vec):
    """out[v, 16g' : 16g' + 16] for the groups g' = g + i * gstep, i < n_grp, read in step (one
    record of each in turn): their 16 rows dotted with the int8 activations of vectors v0 ..
    v0 + n_vec - 1 (``xq`` (B, cols) int8, ``bs`` (B, cols // 16) int16 sums per 16, ``dx``
    (B, cols // act) f32 scales, ``xs`` (B, cols // 32) dx times the block sums); ``kind``
    (the type's name) a string literal, ``n_grp`` and ``n_vec`` integer literals."""
    literals = (n_grp, n_vec)
    if not isinstance(kind, types.StringLiteral) or not all(
        isinstance(n, types.IntegerLiteral) for n in literals
    ):
        return None
    name = kind.literal_value
    ng, nv = (n.literal_value for n in literals)
    record = record_bytes(name)
    if name in ("Q6_K", "Q3_K"):
        step = _per16_record(_k6_vector, _k6_scale_vector, 32, K6_D) if name == "Q6_K" else \
            _per16_record(_k3_vector, _k3_scale_vector, 4, K3_D)  # fmt: skip
    else:
        step = _kmin_record(name) if name in K_MINS else _legacy_record(name)
    # the K-quants prefetch K_AHEAD records ahead, an eighth of a record's lines at eight
    # points of each (prefetch_part): its 36-53 lines at once stall the loads. On the Xeon
    # (one record ahead), 1B layers, 2 threads,
    # Q4_K at once 20.0-22.9 GB/s, spread 23.4-25.3 (one process per side, alternating; Q6_K
    # 18.9-20.3 -> 23.2-23.8); half a record ahead 17-17.5, 1.5 records 20.5-21.7, 2 and 3
    # records 18.8 and 17.8; 8 streams no faster
    ahead_bytes = int(record * K_AHEAD) if ACT_BLOCK[name] == 256 else PREFETCH_BYTES
    lines = range(0, record + 63, 64)  # every line a record touches

    def codegen(context, builder, sig, args):
        _, wt, _, _, _, xqt, bst, dxt, xst, outt, _, _ = sig.args
        _, w_v, g_v, gs_v, _, xq_v, bs_v, dx_v, xs_v, out_v, v0_v, _ = args
        wp = data(context, builder, wt, w_v)
        w_ary = context.make_array(wt)(context, builder, w_v)
        nb = builder.extract_value(w_ary.shape, 1)
        vecs = [builder.add(v0_v, i64(v)) for v in range(nv)]
        arrays = ((xqt, xq_v), (bst, bs_v), (dxt, dx_v), (xst, xs_v))
        rows = _Rows(*([row_ptr(context, builder, t, a, v) for v in vecs] for t, a in arrays))
        gs = [builder.add(g_v, builder.mul(gs_v, i64(i))) for i in range(ng)]
        zero = ir.Constant(_V16F32, None)
        accs = [[(Acc(builder, zero), Acc(builder, zero)) for _ in range(nv)] for _ in gs]
        gbases = [builder.mul(builder.mul(gi, nb), i64(record)) for gi in gs]
        end = builder.mul(builder.extract_value(w_ary.shape, 0), builder.mul(nb, i64(record)))
        prefetch = _prefetcher(builder)
        # the K-quants: each run reads the activations through its own copy of the
        # pointers, which LLVM cannot see through, so a broadcast activation dword is loaded
        # where it is used (a vpdpbusd operand) instead of held in a register from the first
        # run's record to the last's: merged, a record's 64 were spilled to the stack (the
        # first run's plain pointers instead: Q6_K's reloads 13 -> 206 at two runs)
        runs = [
            rows
            if ACT_BLOCK[name] == 32
            else _Rows(*([_opaque(builder, p) for p in ps] for ps in rows))
            for _ in gs
        ]
        with cgutils.for_range(builder, nb) as loop:
            b = loop.index
            for i, gbase in enumerate(gbases):
                base = builder.add(gbase, builder.mul(b, i64(record)))
                ahead = builder.add(base, i64(ahead_bytes))
                # past the weight's end: the record being read, already in L1 (a branch per
                # part instead read Q4_K at 18-23 GB/s, against 23-25)
                ahead = builder.select(builder.icmp_signed("<", ahead, end), ahead, base)

                def prefetch_part(part, parts, ahead=ahead):
                    """Lines [part / parts, (part + 1) / parts) of the record ahead."""
                    n = len(lines)
                    for line in lines[n * part // parts : n * (part + 1) // parts]:
                        prefetch(builder.gep(wp, [builder.add(ahead, i64(line))]))

                step(builder, wp, base, b, runs[i], accs[i], prefetch_part)
        for i, gi in enumerate(gs):
            col = builder.mul(gi, i64(4 * GROUP))
            for v in range(nv):
                dst = row_ptr(context, builder, outt, out_v, vecs[v])
                ptr = builder.bitcast(builder.gep(dst, [col]), _V16F32.as_pointer())
                acc, macc = accs[i][v]
                builder.store(builder.fsub(acc.get(), macc.get()), ptr, align=4)
        return context.get_dummy_value()

    return types.void(kind, w, g, gstep, n_grp, xq, bs, dx, xs, out, v0, n_vec), codegen


def _opaque(builder, ptr):
    """``ptr`` through an empty inline asm: the same address, which LLVM cannot prove equal to
    ``ptr``, so it does not merge loads through the two."""
    as_int = builder.ptrtoint(ptr, ir.IntType(64))
    ftype = ir.FunctionType(ir.IntType(64), [ir.IntType(64)])
    return builder.inttoptr(builder.asm(ftype, "", "=r,0", [as_int], False), ptr.type)


def _prefetcher(builder):
    return lambda ptr: prefetch(builder, ptr, PREFETCH_LOCALITY)


def _legacy_record(kind: str):
    """The step of one 32-weight record (module docstring) into each vector's accumulator."""
    _, _, m_at, zero_point, qh_at = LAYOUTS[kind]
    qb, at = quant_bytes(record_bytes(kind)), scales_at(kind)
    has_min = m_at >= 0

    def step(builder, wp, base, b, rows, accs, prefetch_part):
        prefetch_part(0, 1)
        ws = _weight_vectors(builder, wp, base, qb, qh_at >= 0)
        dw = _halves(builder, wp, builder.add(base, i64(at)))
        if has_min:
            mw = _halves(builder, wp, builder.add(base, i64(at + 32)))
        x_at = builder.mul(b, i64(32))
        for v, (acc, _) in enumerate(accs):
            if zero_point:  # -zp * the block's activation sum (from its two 16-sums)
                s0 = load(builder, rows.bs[v], builder.mul(b, i64(4)), I16)
                s1 = load(builder, rows.bs[v], builder.add(builder.mul(b, i64(4)), i64(2)), I16)
                xsum = builder.add(builder.sext(s0, I32), builder.sext(s1, I32))
                isum = splat(builder, builder.mul(xsum, ir.Constant(I32, -zero_point)), 16)
            else:
                isum = ir.Constant(_V16I32, None)
            for k in range(8):
                isum = _dot4(builder, isum, ws[k], rows.xq[v], builder.add(x_at, i64(4 * k)))
            dxs = splat(builder, load(builder, rows.dx[v], builder.mul(b, i64(4)), F32), 16)
            new = _fma(builder, builder.sitofp(isum, _V16F32), builder.fmul(dw, dxs), acc.get())
            if has_min:
                xsum_f = splat(builder, load(builder, rows.xs[v], builder.mul(b, i64(4)), F32), 16)
                new = _fma(builder, mw, xsum_f, new)
            acc.set(new)

    return step


def _fma(builder, a, b, c):
    return llvm(builder, "llvm.fma.v16f32", _V16F32, a, b, c)


def _dot4(builder, isum, w, xrow, at):
    """isum + vpdpbusd(w, the activation dword at byte ``at`` of ``xrow`` in every lane)."""
    a = splat(builder, load(builder, xrow, at, I32), 16)
    return x86(builder, "llvm.x86.avx512.vpdpbusd.512", _V16I32, isum, w, a)


def _record_sums(builder, rows, sums, init, done, prefetch_part):
    """A K-quant record's integer sums into each vector: ``sums[u]`` is sum u's terms
    (weight, at), ``weight()`` emitting the 16 rows' unsigned weight dwords, ``at`` the byte of
    their activation dword; sum u of vector v starts at ``init(u, v)`` and is handed, complete
    for every vector, to ``done(u, isums)``; ``prefetch_part(i, 8)`` at eight points.

    One vector: eight sums at a time, term t of each in turn, so eight independent vpdpbusd
    chains run and the values live at once are the eight sums and the loads their neighbours
    share (a sum at a time kept the record's scales and a Q5_K record's qh vectors live
    across it: 25-50 zmm spill stores and 100-215 reloads per record; in L2, one thread on a
    Zen 4, Q5_K 38.5 -> 57.0 Gweights/s without them, Q6_K 39.0 -> 43.1). B vectors: a sum at
    a time, each weight vector decoded once for all B."""
    nv, n, terms = len(rows.xq), len(sums), len(sums[0])
    if nv == 1:
        for w0 in range(0, n, 8):
            isums = {u: init(u, 0) for u in range(w0, w0 + 8)}
            for t in range(terms):
                prefetch_part((w0 // 8) * terms + t, n // 8 * terms)
                for u in isums:
                    weight, at = sums[u][t]
                    isums[u] = _dot4(builder, isums[u], weight(), rows.xq[0], at)
            for u, isum in isums.items():
                done(u, [isum])
        return
    for u, us in enumerate(sums):
        if u % (n // 8) == 0:
            prefetch_part(u // (n // 8), 8)
        isums = [init(u, v) for v in range(nv)]
        for weight, at in us:
            w = weight()
            isums = [_dot4(builder, isum, w, rows.xq[v], at) for v, isum in enumerate(isums)]
        done(u, isums)


def _kmin_record(kind: str):
    """The step of one Q4_K or Q5_K record (at byte ``base``, super-block ``sb``) into each
    vector's accumulators: sub-block s's eight vpdpbusd times its 6-bit scale, in i32; its
    mins against the activations' sums per 16 (vpdpwssd)."""
    _, qh_at, d_at, sc_at = K_MINS[kind]

    def step(builder, wp, base, sb, rows, accs, prefetch_part):
        nv = len(accs)
        byte = vconst(_V16I32, 0xFF)
        scales, mins = _k4_scales(builder, wp, builder.add(base, i64(sc_at)))

        def field(vecs, s):  # the 6-bit value s of each row (i32 lanes)
            return builder.and_(builder.lshr(vecs[s // 4], vconst(_V16I32, 8 * (s % 4))), byte)

        x0 = builder.mul(sb, i64(256))
        sums = [[(lambda s=s, k=k: _k4_vector(builder, wp, base, s, k, qh_at),
                  builder.add(x0, i64(32 * s + 4 * k))) for k in range(8)]
                for s in range(8)]  # fmt: skip
        tots = [ir.Constant(_V16I32, None)] * nv

        def done(s, isums):
            sc = field(scales, s)
            for v, isum in enumerate(isums):
                tots[v] = builder.add(tots[v], builder.mul(isum, sc))

        _record_sums(builder, rows, sums, lambda s, v: ir.Constant(_V16I32, None), done,
                     prefetch_part)  # fmt: skip
        dw = _halves(builder, wp, builder.add(base, i64(d_at)))
        mw = _halves(builder, wp, builder.add(base, i64(d_at + 32)))
        for v in range(nv):
            msum = ir.Constant(_V16I32, None)
            for s in range(8):  # bs holds the sums per 16: two per sub-block, one dword;
                # m_s in both i16 halves of each lane: vpdpwssd against the pair
                m2 = builder.mul(field(mins, s), vconst(_V16I32, 0x10001))
                at = builder.add(builder.mul(sb, i64(32)), i64(4 * s))
                pair = splat(builder, load(builder, rows.bs[v], at, I32), 16)
                msum = x86(builder, "llvm.x86.avx512.vpdpwssd.512", _V16I32, msum, m2, pair)
            dxs = splat(builder, load(builder, rows.dx[v], builder.mul(sb, i64(4)), F32), 16)
            acc, macc = accs[v]
            acc.set(_fma(builder, builder.sitofp(tots[v], _V16F32), builder.fmul(dw, dxs),
                         acc.get()))  # fmt: skip
            macc.set(_fma(builder, builder.sitofp(msum, _V16F32), builder.fmul(mw, dxs),
                          macc.get()))  # fmt: skip

    return step


def _per16_record(vector, scale, zero_point: int, d_at: int):
    """The step of one Q6_K or Q3_K record into each vector's accumulator (the second unused):
    per 16 weights j of the super-block, isum_j = -zero_point * bsum_j + four vpdpbusd of the
    unsigned weights (``vector(.., blk, k)``: Q6_K's 6 bits, zero point 32; Q3_K's 3, zero
    point 4), times the signed scale sc_j (``scale(.., j)``), summed in i32 (the GGML row dot's
    integers); then acc += f32(sum_j sc_j * isum_j) * (d * dx), d the 16 f16 at ``d_at``."""

    def step(builder, wp, base, sb, rows, accs, prefetch_part):
        nv = len(accs)
        x0 = builder.mul(sb, i64(256))
        # sum j: block j // 2's weight dwords 4 (j % 2) .. 4 (j % 2) + 3
        sums = [[(lambda j=j, k=k: vector(builder, wp, base, j // 2, 4 * (j % 2) + k),
                  builder.add(x0, i64(16 * j + 4 * k))) for k in range(4)]
                for j in range(16)]  # fmt: skip
        tots = [ir.Constant(_V16I32, None)] * nv

        def init(j, v):
            at = builder.add(builder.mul(sb, i64(32)), i64(2 * j))
            bsum = builder.sext(load(builder, rows.bs[v], at, I16), I32)
            return splat(builder, builder.mul(bsum, ir.Constant(I32, -zero_point)), 16)

        def done(j, isums):
            sc = scale(builder, wp, base, j)
            for v, isum in enumerate(isums):
                tots[v] = builder.add(tots[v], builder.mul(isum, sc))

        _record_sums(builder, rows, sums, init, done, prefetch_part)
        dw = _halves(builder, wp, builder.add(base, i64(d_at)))
        for v in range(nv):
            dxs = splat(builder, load(builder, rows.dx[v], builder.mul(sb, i64(4)), F32), 16)
            acc = accs[v][0]
            acc.set(_fma(builder, builder.sitofp(tots[v], _V16F32), builder.fmul(dw, dxs),
                         acc.get()))  # fmt: skip

    return step


def _k6_scale_vector(builder, wp, base, j):
    """Scale j of each row of a Q6_K record, sign-extended (i32 lanes): byte j % 4 of scale
    vector j // 4."""
    svec = load(builder, wp, builder.add(base, i64(K6_SCALES + 64 * (j // 4))), _V16I32)
    return builder.ashr(builder.shl(svec, vconst(_V16I32, 24 - 8 * (j % 4))), vconst(_V16I32, 24))


def _k3_vector(builder, wp, base, blk, k):
    """Weight dwords 4k..4k+3 of 32-weight block ``blk`` = 4h + j of the Q3_K record at
    ``base``, unsigned 3-bit (the GGML weight + 4): bits 2j, 2j + 1 of qs bytes 32h.. as bits
    0, 1, bit 4h + j of the hmask bytes as bit 2."""
    h, j = divmod(blk, 4)
    m2, m4 = vconst(_V16I32, 0x03030303), vconst(_V16I32, 0x04040404)
    bit = 4 * h + j  # the hmask bit, moved to bit 2
    qs = load(builder, wp, builder.add(base, i64(64 * (8 * h + k))), _V16I32)
    hm = load(builder, wp, builder.add(base, i64(K3_HM + 64 * k)), _V16I32)
    lo = builder.and_(builder.lshr(qs, vconst(_V16I32, 2 * j)), m2) if j else \
        builder.and_(qs, m2)  # fmt: skip
    return builder.or_(lo, builder.and_(_bit_to(builder, hm, bit, 2), m4))


def _k3_scale_vector(builder, wp, base, j):
    """Signed scale j of each row of a Q3_K record (i32 lanes): llama.cpp's kmask unpacking of
    the 12 scale bytes (aux word j // 4, byte j % 4), minus 32."""
    a0, a1, a2 = (load(builder, wp, builder.add(base, i64(K3_SCALES + 64 * u)), _V16I32)
                  for u in range(3))  # fmt: skip
    lo_src, lo_shift, hi_shift = ((a0, 0, 0), (a1, 0, 2), (a0, 4, 4), (a1, 4, 6))[j // 4]
    lo = builder.and_(builder.lshr(lo_src, vconst(_V16I32, lo_shift)), vconst(_V16I32, 0x0F0F0F0F))
    hi = builder.and_(builder.lshr(a2, vconst(_V16I32, hi_shift)), vconst(_V16I32, 0x03030303))
    word = builder.or_(lo, builder.shl(hi, vconst(_V16I32, 4)))
    byte = builder.and_(builder.lshr(word, vconst(_V16I32, 8 * (j % 4))), vconst(_V16I32, 0xFF))
    return builder.sub(byte, vconst(_V16I32, 32))


def _k4_vector(builder, wp, base, s, k, qh_at=-1):
    """Weight dwords 4k..4k+3 of sub-block s of the Q4_K or Q5_K record at ``base``, unsigned:
    chunk s // 2's low (s even) or high nibbles; Q5_K (``qh_at`` its qh vectors) with bit s
    of the qh bytes as bit 4."""
    z = load(builder, wp, builder.add(base, i64(512 * (s // 2) + 64 * k)), _V16I32)
    if s % 2:
        z = builder.lshr(z, vconst(_V16I32, 4))
    w = builder.and_(z, vconst(_V16I32, 0x0F0F0F0F))
    if qh_at < 0:
        return w
    qh = load(builder, wp, builder.add(base, i64(qh_at + 64 * k)), _V16I32)
    return builder.or_(w, builder.and_(_bit_to(builder, qh, s, 4), vconst(_V16I32, 0x10101010)))


def _k6_vector(builder, wp, base, blk, k):
    """Weight dwords 4k..4k+3 of 32-weight block ``blk`` = 4h + c of the Q6_K record at
    ``base``, unsigned 6-bit: the low nibbles of ql 0..31 (c even) or 32..63 of half h (high
    nibbles for c >= 2), with bits 2c, 2c + 1 of its qh as bits 4, 5 (int8pack.pack_q6_k's)."""
    h, c = divmod(blk, 4)
    ql = load(builder, wp, builder.add(base, i64(1024 * h + 64 * (k + 8 * (c % 2)))), _V16I32)
    qh = load(builder, wp, builder.add(base, i64(K6_QH + 512 * h + 64 * k)), _V16I32)
    lo = builder.and_(builder.lshr(ql, vconst(_V16I32, 4 * (c // 2))), vconst(_V16I32, 0x0F0F0F0F))
    hi = builder.and_(builder.lshr(qh, vconst(_V16I32, 2 * c)), vconst(_V16I32, 0x03030303))
    return builder.or_(lo, builder.shl(hi, vconst(_V16I32, 4)))


def _k4_scales(builder, base, at):
    """The record's packed scale bytes -> (scales, mins): two pairs of vectors, dword r of the
    first holding row r's 6-bit values 0..3, of the second 4..7 (one a byte; llama.cpp's
    word-mask unpacking of get_scale_min_k4, 16 rows at a time)."""
    u0, u1, u2 = (load(builder, base, builder.add(at, i64(64 * u)), _V16I32) for u in range(3))
    k1, k2, k3 = (vconst(_V16I32, v) for v in (0x3F3F3F3F, 0x0F0F0F0F, 0x03030303))
    c4, c6 = vconst(_V16I32, 4), vconst(_V16I32, 6)
    sc_hi = builder.or_(
        builder.and_(u2, k2), builder.shl(builder.and_(builder.lshr(u0, c6), k3), c4)
    )
    m_hi = builder.or_(builder.and_(builder.lshr(u2, c4), k2),
                       builder.shl(builder.and_(builder.lshr(u1, c6), k3), c4))  # fmt: skip
    return (builder.and_(u0, k1), sc_hi), (builder.and_(u1, k1), m_hi)


def _weight_vectors(builder, base, at, qb, high=False):
    """The record's 8 vectors of unsigned weight dwords (vector k: weights 4k..4k+3 of the 16
    rows): its 4 nibble vectors' low then high nibbles, or its 8 byte vectors (Q8_0); ``high``
    (Q5_0, Q5_1): each with its fifth bits from the spread qh words after the quants."""
    if qb > NIBBLE_BYTES:
        return [load(builder, base, builder.add(at, i64(64 * k)), _V16I32) for k in range(8)]
    m4 = vconst(_V16I32, 0x0F0F0F0F)
    zs = [load(builder, base, builder.add(at, i64(64 * k)), _V16I32) for k in range(4)]
    ws = [builder.and_(z, m4) for z in zs]
    ws += [builder.and_(builder.lshr(z, vconst(_V16I32, 4)), m4) for z in zs]
    if not high:
        return ws
    qh = load(builder, base, builder.add(at, i64(qb)), _V16I32)
    bit4 = vconst(_V16I32, 0x10101010)
    for k in range(8):  # weight 4k + e's fifth bit sits at bit 8e + k: to bit 8e + 4
        ws[k] = builder.or_(ws[k], builder.and_(_bit_to(builder, qh, k, 4), bit4))
    return ws


def _bit_to(builder, v, bit: int, to: int):
    """``v``'s lanes shifted so that bit ``bit`` of each byte lands on bit ``to`` (one shift,
    or none); the caller masks."""
    if bit == to:
        return v
    if bit < to:
        return builder.shl(v, vconst(_V16I32, to - bit))
    return builder.lshr(v, vconst(_V16I32, bit - to))


def _halves(builder, base, offset):
    """16 f16 at ``offset`` widened to <16 x float>."""
    bits = load(builder, base, offset, _V16I16)
    return builder.fpext(builder.bitcast(bits, ir.VectorType(F16, 16)), _V16F32)


class Drivers(NamedTuple):
    """A type's kernels over its records (``w`` = (records,))."""

    matvec: Any
    matvecs: Any
    dequantize_rows: Any


def _make_drivers(kind: str) -> Drivers:
    """One type's kernels: closures over its name and constants only, so numba caches each."""
    act = ACT_BLOCK[kind]

    @numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
    def matvec(w, x, xq, dx, xs, bs, out):
        """out = W @ x: x quantized per 32 (Q4_K: per 256; the fused matvec's
        scratch xq, dx, xs, bs), then the row groups split over the threads in contiguous
        runs (numba's static schedule)."""
        recs = w[0]
        quantize_activations(x, act, xq, dx, xs, bs)
        xq2, bs2 = xq.reshape((1, xq.size)), bs.reshape((1, bs.size))
        dx2, xs2, out2 = (
            dx.reshape((1, dx.size)),
            xs.reshape((1, xs.size)),
            out.reshape((1, out.size)),
        )
        G = recs.shape[0]
        for c in numba.prange(CHUNKS):  # a chunk of groups, read as STREAMS runs in step
            lo, hi = G * c // CHUNKS, G * (c + 1) // CHUNKS
            n = (hi - lo) // STREAMS
            for t in range(n):
                _group_dots(kind, recs, lo + t, n, STREAMS, xq2, bs2, dx2, xs2, out2, 0, 1)
            for g in range(lo + n * STREAMS, hi):
                _group_dots(kind, recs, g, 0, 1, xq2, bs2, dx2, xs2, out2, 0, 1)

    @numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
    def matvecs(w, xs, xq, dx, xsum, bs, xt, out):
        """out[v] = W @ xs[v] for B vectors (fused.multi_scratch's scratch; ``xt`` unused):
        each record decoded once per 8 vectors, every vector's operations :func:`matvec`'s."""
        recs = w[0]
        n_vec = xs.shape[0]
        for v in range(n_vec):
            quantize_activations(xs[v], act, xq[v], dx[v], xsum[v], bs[v])
        for g in numba.prange(recs.shape[0]):
            v = 0
            while v + 8 <= n_vec:
                _group_dots(kind, recs, g, 0, 1, xq, bs, dx, xsum, out, v, 8)
                v += 8
            if v + 4 <= n_vec:
                _group_dots(kind, recs, g, 0, 1, xq, bs, dx, xsum, out, v, 4)
                v += 4
            if v + 2 <= n_vec:
                _group_dots(kind, recs, g, 0, 1, xq, bs, dx, xsum, out, v, 2)
                v += 2
            if v < n_vec:
                _group_dots(kind, recs, g, 0, 1, xq, bs, dx, xsum, out, v, 1)

    if kind in ("Q6_K", "Q3_K"):
        deq = _per16_dequantizer(kind)
    else:
        deq = _kmin_dequantizer(kind) if kind in K_MINS else _dequantizer(kind)
    return Drivers(matvec, matvecs, deq)


def _dequantizer(kind: str):
    qb, at = quant_bytes(record_bytes(kind)), scales_at(kind)
    _, _, m_at, zero_point, qh_at = LAYOUTS[kind]
    has_min, high = m_at >= 0, qh_at >= 0

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def dequantize_rows(recs, lo, hi, dst):
        """Rows [lo, hi) as f32 into dst (hi - lo, cols): GGML's (q - zp) * d (Q4_0, Q5_0),
        q * d + m (Q4_1, Q5_1), q * d (Q8_0, kept as q + 128)."""
        for r in range(lo, hi):
            g, lane = r // GROUP, r % GROUP
            h16 = recs[g].view(np.uint16)
            for b in range(recs.shape[1]):
                rec = recs[g, b]
                d = half_to_float(h16[b, at // 2 + lane])
                if qb > NIBBLE_BYTES:
                    for k in range(8):
                        for j in range(4):
                            q = np.int32(rec[k * 64 + lane * 4 + j]) - 128
                            dst[r - lo, 32 * b + 4 * k + j] = np.float32(q) * d
                    continue
                m = half_to_float(h16[b, at // 2 + GROUP + lane]) if has_min else np.float32(0)
                qh = np.int64(0)
                if high:  # row lane's spread qh word
                    for i in range(4):
                        qh |= np.int64(rec[qb + 4 * lane + i]) << (8 * i)
                for k in range(4):
                    for j in range(4):
                        q = rec[k * 64 + lane * 4 + j]
                        for half in range(2):
                            bit = (qh >> (8 * j + k + 4 * half)) & 1
                            n = np.float32(((q >> (4 * half)) & 15) | (bit << 4))
                            to = 32 * b + 16 * half + 4 * k + j
                            if has_min:
                                dst[r - lo, to] = n * d + m
                            else:
                                dst[r - lo, to] = (n - zero_point) * d

    return dequantize_rows


@numba.njit(inline="always")
def _k4_scale_min(rec, lane, s, sc_at):
    """get_scale_min_k4 of row ``lane``'s sub-block s from a Q4_K / Q5_K record's scale
    vectors (at byte ``sc_at``)."""
    at = sc_at + 4 * lane

    def byte(i):
        return np.int64(rec[at + 64 * (i // 4) + i % 4])

    if s < 4:
        return byte(s) & 63, byte(s + 4) & 63
    sc = (byte(s + 4) & 0xF) | ((byte(s - 4) >> 6) << 4)
    m = (byte(s + 4) >> 4) | ((byte(s) >> 6) << 4)
    return sc, m


def _kmin_dequantizer(kind: str):
    _, qh_at, d_at, sc_at = K_MINS[kind]

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def dequantize_rows(recs, lo, hi, dst):
        """Rows [lo, hi) of Q4_K / Q5_K records as f32 into dst: GGML's d * sc * q - dmin * m
        (Q5_K: q with bit s of its qh byte as bit 4, in sub-block s)."""
        for r in range(lo, hi):
            g, lane = r // GROUP, r % GROUP
            h16 = recs[g].view(np.uint16)
            for sb in range(recs.shape[1]):
                rec = recs[g, sb]
                d = half_to_float(h16[sb, d_at // 2 + lane])
                dmin = half_to_float(h16[sb, d_at // 2 + GROUP + lane])
                for s in range(8):
                    sc, m = _k4_scale_min(rec, lane, s, sc_at)
                    d1, m1 = d * np.float32(sc), dmin * np.float32(m)
                    for k in range(8):
                        for i in range(4):
                            q = (rec[512 * (s // 2) + 64 * k + 4 * lane + i] >> (4 * (s % 2))) & 15
                            if qh_at >= 0:
                                q |= ((rec[qh_at + 64 * k + 4 * lane + i] >> s) & 1) << 4
                            dst[r - lo, 256 * sb + 32 * s + 4 * k + i] = d1 * np.float32(q) - m1

    return dequantize_rows


@numba.njit(inline="always")
def _k6_quant(rec, lane, e):
    """Row ``lane``'s unsigned 6-bit weight e (0..255) of a Q6_K record."""
    h, c, k, i = e // 128, e % 128 // 32, e % 32 // 4, e % 4
    lo = np.int64(rec[1024 * h + 64 * (k + 8 * (c % 2)) + 4 * lane + i]) >> (4 * (c // 2))
    hi = np.int64(rec[K6_QH + 512 * h + 64 * k + 4 * lane + i]) >> (2 * c)
    return (lo & 15) | ((hi & 3) << 4)


@numba.njit(inline="always")
def _k6_scale(rec, lane, j):
    """Row ``lane``'s int8 scale of weights 16j .. 16j + 15 of a Q6_K record."""
    return np.float32(np.int8(rec[K6_SCALES + 64 * (j // 4) + 4 * lane + j % 4]))


@numba.njit(inline="always")
def _k3_scale(rec, lane, j):
    """Row ``lane``'s signed scale of weights 16j .. 16j + 15 of a Q3_K record."""
    at = K3_SCALES + 4 * lane

    def byte(i):  # scale byte i (0..11) of the row
        return np.int64(rec[at + 64 * (i // 4) + i % 4])

    lo = (byte(j % 8) >> (4 * (j // 8))) & 15
    hi = (byte(8 + j % 4) >> (2 * (j // 4))) & 3
    return np.float32((lo | (hi << 4)) - 32)


@numba.njit(inline="always")
def _k3_quant(rec, lane, e):
    """Row ``lane``'s unsigned 3-bit weight e (0..255) of a Q3_K record (the GGML weight + 4):
    bits 2j, 2j + 1 of its qs byte, bit 4h + j of its hmask byte as bit 2."""
    h, j, l = e // 128, e % 128 // 32, e % 32
    q = np.int64(rec[64 * (8 * h + l // 4) + 4 * lane + l % 4]) >> (2 * j)
    hb = np.int64(rec[K3_HM + 64 * (l // 4) + 4 * lane + l % 4]) >> (4 * h + j)
    return (q & 3) | ((hb & 1) << 2)


def _per16_dequantizer(kind: str):
    six = kind == "Q6_K"
    d_at, zero_point = (K6_D, 32) if six else (K3_D, 4)

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def dequantize_rows(recs, lo, hi, dst):
        """Rows [lo, hi) of Q6_K / Q3_K records as f32 into dst: GGML's (d * sc) * (q - zp),
        the 16 scales of a super-block taken once."""
        ds = np.empty(16, np.float32)
        for r in range(lo, hi):
            g, lane = r // GROUP, r % GROUP
            h16 = recs[g].view(np.uint16)
            for sb in range(recs.shape[1]):
                rec = recs[g, sb]
                d = half_to_float(h16[sb, d_at // 2 + lane])
                for j in range(16):
                    ds[j] = d * (_k6_scale(rec, lane, j) if six else _k3_scale(rec, lane, j))
                for e in range(256):
                    q = _k6_quant(rec, lane, e) if six else _k3_quant(rec, lane, e)
                    dst[r - lo, 256 * sb + e] = ds[e // 16] * np.float32(q - zero_point)

    return dequantize_rows


DRIVERS = {name: _make_drivers(name) for name in TYPES}


@intrinsic
def _unpack_quants(typingctx, kind, recs, g, b, wq):
    """wq[8b * 16 : (8b + 8) * 16] = record (g, b)'s quants as int8gemm's 8 vectors of 16
    unsigned weight dwords (:func:`_weight_vectors`); ``kind`` the type, a string literal.
    The K-quants: record (g, b) is super-block b, its 8 blocks the panel's 8b .. 8b + 7."""
    if not isinstance(kind, types.StringLiteral):
        return None
    record = record_bytes(kind.literal_value)
    name = kind.literal_value
    vector = {"Q6_K": _k6_vector, "Q3_K": _k3_vector}.get(name)
    if name in K_MINS:

        def vector(builder, rp, base, blk, k):
            return _k4_vector(builder, rp, base, blk, k, K_MINS[name][1])

    high = kind.literal_value in LAYOUTS and LAYOUTS[kind.literal_value][4] >= 0

    def codegen(context, builder, sig, args):
        _, rt, _, _, wqt = sig.args
        _, r_v, g_v, b_v, wq_v = args
        rp = data(context, builder, rt, r_v)
        ary = context.make_array(rt)(context, builder, r_v)
        nb, rec = builder.extract_value(ary.shape, 1), builder.extract_value(ary.shape, 2)
        base = builder.mul(builder.add(builder.mul(g_v, nb), b_v), rec)
        dst = data(context, builder, wqt, wq_v)
        if vector is not None:  # the super-block's 8 blocks, each as its record step reads it
            blocks = [[vector(builder, rp, base, blk, k) for k in range(8)] for blk in range(8)]
        else:
            blocks = [_weight_vectors(builder, rp, base, quant_bytes(record), high)]
        at = builder.mul(b_v, i64(len(blocks) * 8 * GROUP * 4))
        for n, ws in enumerate(blocks):
            for k, w in enumerate(ws):
                store(builder, w, dst, builder.add(at, i64(8 * GROUP * 4 * n + 64 * k)))
        return context.get_dummy_value()

    return types.void(kind, recs, g, b, wq), codegen


def pack_panel(kind, recs, f16, r0, wq, wd, wm):
    """int8gemm's avx512 panel (16 rows from r0, a multiple of 16) from the grouped records of
    type ``kind`` (a string literal): per block the 8 vectors of unsigned weight dwords, then
    the 16 f32 scales (and mins)."""


@overload(pack_panel, prefer_literal=True, inline="always")
def _pack_panel(kind, recs, f16, r0, wq, wd, wm):
    if not isinstance(kind, types.StringLiteral):
        return None
    name = kind.literal_value
    if name in K_MINS:
        _, _, d_at, sc_at = K_MINS[name]

        def impl_k4(kind, recs, f16, r0, wq, wd, wm):
            g = r0 // GROUP
            h16 = recs[g].view(np.uint16)
            for sb in range(recs.shape[1]):
                _unpack_quants(name, recs, g, sb, wq)
                rec = recs[g, sb]
                for r in range(GROUP):
                    d = half_to_float(h16[sb, d_at // 2 + r])
                    dmin = half_to_float(h16[sb, d_at // 2 + GROUP + r])
                    for s in range(8):  # int8pack.pack_k4_scales' d * sc and -dmin * m
                        sc, m = _k4_scale_min(rec, r, s, sc_at)
                        wd[(8 * sb + s) * GROUP + r] = d * np.float32(sc)
                        wm[(8 * sb + s) * GROUP + r] = -(dmin * np.float32(m))

        return impl_k4
    if name in ("Q6_K", "Q3_K"):  # a scale per 16 weights (Q3_K takes Q6_K's panel form)
        six, d_at = name == "Q6_K", K6_D if name == "Q6_K" else K3_D

        def impl_per16(kind, recs, f16, r0, wq, wd, wm):
            g = r0 // GROUP
            h16 = recs[g].view(np.uint16)
            for sb in range(recs.shape[1]):
                _unpack_quants(name, recs, g, sb, wq)
                rec = recs[g, sb]
                for r in range(GROUP):  # int8pack.pack_q6_k_scales' d * sc per 16 weights
                    d = half_to_float(h16[sb, d_at // 2 + r])
                    for j in range(16):
                        sc = _k6_scale(rec, r, j) if six else _k3_scale(rec, r, j)
                        wd[(16 * sb + j) * GROUP + r] = d * sc

        return impl_per16
    qh = scales_at(name) // 2  # the scales' first f16, the mins' 16 later
    has_min = LAYOUTS[name][2] >= 0

    def impl(kind, recs, f16, r0, wq, wd, wm):
        g = r0 // GROUP
        h16 = recs[g].view(np.uint16)
        for b in range(recs.shape[1]):
            _unpack_quants(name, recs, g, b, wq)
            for r in range(GROUP):
                wd[b * GROUP + r] = half_to_float(h16[b, qh + r])
            if has_min:
                for r in range(GROUP):
                    wm[b * GROUP + r] = half_to_float(h16[b, qh + GROUP + r])

    return impl
