"""llama.cpp's reference K-quant quantizers (quantize_row_q{4,5,6}_K_ref, no imatrix).

The per-sub-block searches (make_qkx2_quants, make_qx_quants) are sequential f32 code in C;
they run here as numba loops with every operation kept in f32 in the C order, so the result
is bit-identical. The per-super-block packing is vectorized numpy.
"""

from __future__ import annotations

import numba
import numpy as np

F32 = np.float32
MAGIC = np.float32(12582912.0)  # 1.5 * 2**23: adding it rounds an f32 to the nearest int


@numba.njit(cache=True, inline="always")
def nearest_int(v):
    return np.int64(v + MAGIC) - 12582912


@numba.njit(cache=True, error_model="numpy")
def make_qkx2_quants(xs, nmax, rmin, rdelta, nstep):
    """Per row of xs (m, n): asymmetric fit x ~ scale * L - the_min, weights av_x + |x|."""
    m, n = xs.shape
    scales = np.zeros(m, dtype=np.float32)
    mins = np.zeros(m, dtype=np.float32)
    big_l = np.zeros((m, n), dtype=np.uint8)
    w = np.empty(n, dtype=np.float32)
    laux = np.empty(n, dtype=np.uint8)
    fnmax = np.float32(nmax)
    for r in range(m):
        x = xs[r]
        lr = big_l[r]
        sum_x2 = np.float32(0)
        for i in range(n):
            sum_x2 += x[i] * x[i]
        av_x = np.sqrt(sum_x2 / np.float32(n))
        for i in range(n):
            w[i] = av_x + np.abs(x[i])
        vmin = x[0]
        vmax = x[0]
        sum_w = w[0]
        sum_x = sum_w * x[0]
        for i in range(1, n):
            if x[i] < vmin:
                vmin = x[i]
            if x[i] > vmax:
                vmax = x[i]
            sum_w += w[i]
            sum_x += w[i] * x[i]
        if vmin > 0:
            vmin = np.float32(0)
        if vmax == vmin:
            mins[r] = -vmin
            continue
        iscale = fnmax / (vmax - vmin)
        scale = np.float32(1) / iscale
        best_error = np.float32(0)
        for i in range(n):
            q = min(nmax, max(0, nearest_int(iscale * (x[i] - vmin))))
            lr[i] = q
            diff = scale * np.float32(q) + vmin - x[i]
            best_error += w[i] * (diff * diff)
        for step in range(nstep + 1):
            iscale = (rmin + rdelta * np.float32(step) + fnmax) / (vmax - vmin)
            sum_l = np.float32(0)
            sum_l2 = np.float32(0)
            sum_xl = np.float32(0)
            for i in range(n):
                q = min(nmax, max(0, nearest_int(iscale * (x[i] - vmin))))
                laux[i] = q
                fq = np.float32(q)
                sum_l += w[i] * fq
                sum_l2 += w[i] * fq * fq
                sum_xl += w[i] * fq * x[i]
            det = sum_w * sum_l2 - sum_l * sum_l
            if det > 0:
                this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
                this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
                if this_min > 0:
                    this_min = np.float32(0)
                    this_scale = sum_xl / sum_l2
                cur_error = np.float32(0)
                for i in range(n):
                    diff = this_scale * np.float32(laux[i]) + this_min - x[i]
                    cur_error += w[i] * (diff * diff)
                if cur_error < best_error:
                    for i in range(n):
                        lr[i] = laux[i]
                    best_error = cur_error
                    scale = this_scale
                    vmin = this_min
        scales[r] = scale
        mins[r] = -vmin
    return scales, mins, big_l


@numba.njit(cache=True, error_model="numpy")
def make_qx_quants(xs, nmax):
    """Per row of xs (m, n): symmetric fit x ~ scale * (L - nmax), weights x*x (rmse_type 1)."""
    m, n = xs.shape
    scales = np.zeros(m, dtype=np.float32)
    big_l = np.zeros((m, n), dtype=np.uint8)
    fnmax = np.float32(nmax)
    for r in range(m):
        x = xs[r]
        vmax = np.float32(0)
        amax = np.float32(0)
        for i in range(n):
            ax = np.abs(x[i])
            if ax > amax:
                amax = ax
                vmax = x[i]
        if amax < np.float32(1e-15):
            continue
        iscale = -fnmax / vmax
        sumlx = np.float32(0)
        suml2 = np.float32(0)
        for i in range(n):
            q = max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
            big_l[r, i] = q + nmax
            w = x[i] * x[i]
            sumlx += w * x[i] * np.float32(q)
            suml2 += w * np.float32(q) * np.float32(q)
        scale = sumlx / suml2 if suml2 != 0 else np.float32(0)
        best = scale * sumlx
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = -(fnmax + np.float32(0.1) * np.float32(step)) / vmax
            sumlx = np.float32(0)
            suml2 = np.float32(0)
            for i in range(n):
                q = max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
                w = x[i] * x[i]
                sumlx += w * x[i] * np.float32(q)
                suml2 += w * np.float32(q) * np.float32(q)
            if suml2 > 0 and sumlx * sumlx > best * suml2:
                for i in range(n):
                    q = max(-nmax, min(nmax - 1, nearest_int(iscale * x[i])))
                    big_l[r, i] = q + nmax
                scale = sumlx / suml2
                best = scale * sumlx
        scales[r] = scale
    return scales, big_l


def _f16(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float16)


def _rint(v: np.ndarray) -> np.ndarray:
    return np.rint(v).astype(np.int64)


def pack_scale_min(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(n, 8) 6-bit scales and mins -> (n, 12) bytes (inverse of q4_k.scale_min)."""
    ls, lm = ls.astype(np.uint8), lm.astype(np.uint8)
    out = np.empty((ls.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    out[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    return out


def _qkx_superblocks(x: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """Shared Q4_K / Q5_K part: (n, 256) -> d16, dmin16, packed scales (n, 12), L (n, 256)."""
    n = x.shape[0]
    sub = np.ascontiguousarray(x, dtype=np.float32).reshape(n * 8, 32)
    scales, mins, big_l = make_qkx2_quants(sub, nmax, F32(rmin), F32(rdelta), nstep)
    scales, mins, big_l = scales.reshape(n, 8), mins.reshape(n, 8), big_l.reshape(n, 8, 32)
    max_scale = np.maximum(scales.max(axis=1, initial=F32(0)), F32(0))[:, None]
    max_min = np.maximum(mins.max(axis=1, initial=F32(0)), F32(0))[:, None]
    with np.errstate(divide="ignore"):
        inv_scale = np.where(max_scale > 0, F32(63) / max_scale, F32(0))
        inv_min = np.where(max_min > 0, F32(63) / max_min, F32(0))
    ls = np.minimum(_rint(inv_scale * scales) & 0xFF, 63)
    lm = np.minimum(_rint(inv_min * mins) & 0xFF, 63)
    d16, dmin16 = _f16(max_scale / F32(63)), _f16(max_min / F32(63))
    d = d16.astype(np.float32) * ls.astype(np.float32)  # (n, 8)
    dm = dmin16.astype(np.float32) * lm.astype(np.float32)
    xs = x.reshape(n, 8, 32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(_rint((xs + dm[..., None]) / d[..., None]), 0, nmax)
    big_l = np.where(d[..., None] != 0, q, big_l).astype(np.uint8)
    return d16, dmin16, pack_scale_min(ls, lm), big_l.reshape(n, 256)


def quantize_q4_k_ref(x: np.ndarray) -> np.ndarray:
    """(n, 256) f32 -> (n, 144) Q4_K blocks (quantize_row_q4_K_ref)."""
    d16, dmin16, sc, big_l = _qkx_superblocks(x, 15, -1.0, 0.1, 20)
    big_l = big_l.reshape(-1, 4, 2, 32)
    qs = (big_l[:, :, 0] | (big_l[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([d16.view(np.uint8), dmin16.view(np.uint8), sc, qs], axis=-1)


def quantize_q5_k_ref(x: np.ndarray) -> np.ndarray:
    """(n, 256) f32 -> (n, 176) Q5_K blocks (quantize_row_q5_K_ref)."""
    d16, dmin16, sc, big_l = _qkx_superblocks(x, 31, -0.5, 0.1, 15)
    big_l = big_l.reshape(-1, 8, 32)
    hi = (big_l >> 4).astype(np.uint8)  # (n, 8, 32): 5th bit of each weight
    qh = np.zeros((big_l.shape[0], 32), dtype=np.uint8)
    for s in range(8):
        qh |= hi[:, s] << np.uint8(s)
    lo = (big_l & 0xF).reshape(-1, 4, 2, 32)
    qs = (lo[:, :, 0] | (lo[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([d16.view(np.uint8), dmin16.view(np.uint8), sc, qh, qs], axis=-1)


def quantize_q6_k_ref(x: np.ndarray) -> np.ndarray:
    """(n, 256) f32 -> (n, 210) Q6_K blocks (quantize_row_q6_K_ref)."""
    n = x.shape[0]
    sub = np.ascontiguousarray(x, dtype=np.float32).reshape(n * 16, 16)
    scales, big_l = make_qx_quants(sub, 32)
    scales, big_l = scales.reshape(n, 16), big_l.reshape(n, 16, 16).astype(np.int64)
    imax = np.abs(scales).argmax(axis=1)[:, None]
    max_scale = np.take_along_axis(scales, imax, axis=1)
    zero = np.abs(max_scale) < F32(1e-15)
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(zero, F32(1), F32(-128) / max_scale)
        d16 = np.where(zero, F32(0), F32(1) / iscale).astype(np.float16)
        sc = np.minimum(_rint(iscale * scales), 127).astype(np.int8)  # wraps like the C store
        d = d16.astype(np.float32) * sc.astype(np.float32)
        q = np.clip(_rint(x.reshape(n, 16, 16) / d[..., None]), -32, 31) + 32
    big_l = np.where(d[..., None] != 0, q, big_l).astype(np.uint8).reshape(n, 2, 4, 32)
    lo = big_l & np.uint8(0xF)
    ql = np.concatenate(
        [lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], axis=-1
    ).reshape(n, 128)
    hi = big_l >> 4
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    out = np.concatenate([ql, qh.reshape(n, 64), sc.view(np.uint8), d16.view(np.uint8)], axis=-1)
    out[zero[:, 0]] = 0
    return out
