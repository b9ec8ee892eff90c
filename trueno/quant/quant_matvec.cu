// Quantized matrix-vector products y = W x straight from GGML blocks (no f32 weights).
// W is (rows, row_bytes) uint8 exactly as in the GGUF file; x is f32 (cols); y is f32 (rows).
// One warp per row, blockDim.x = 32 * rows-per-block. Block layouts follow ggml-common.h:
//   block_q4_0 {half d; u8 qs[16]}                    18 bytes / 32 values
//   block_q4_1 {half d; half m; u8 qs[16]}            20 bytes / 32 values
//   block_q5_0 {half d; u8 qh[4]; u8 qs[16]}          22 bytes / 32 values
//   block_q5_1 {half d; half m; u8 qh[4]; u8 qs[16]}  24 bytes / 32 values
//   block_q8_0 {half d; i8 qs[32]}            34 bytes / 32 values
//   block_q4_K {half d; half dmin; u8 scales[12]; u8 qs[128]}           144 bytes / 256
//   block_q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; half d}           210 bytes / 256
// The 32-value formats give each lane whole blocks; the 256-value K formats spread one
// super-block over the 32 lanes (8 values each), so a warp reads it in one coalesced sweep.
#include "_common.cu"

// ---- 32-value formats: dot of one block with 32 values of x --------------------------------

// The 4- and 5-bit formats share one loop: value j of a block is (nibble | high bit j of qh
// << 4) - OFFSET, scaled by d, plus the minimum m in the _1 formats. Returns sum(q x) and, for
// the _1 formats, sum(x) (their dot is d * sum(q x) + m * sum(x)).
template <bool HIGH_BIT, bool SUM_X>
TRUENO_HD float dot_nibbles(const u8* qs, u32 qh, int offset, const float* x, float* sum_x) {
    float s = 0.f, sx = 0.f;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const u32 q = load_u32_a2(qs + 4 * k);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int j = 4 * k + i;
            const u32 byte = (q >> (8 * i)) & 0xffu;
            u32 lo = byte & 0xfu, hi = byte >> 4;
            if (HIGH_BIT) {
                lo |= ((qh >> j) & 1u) << 4;
                hi |= ((qh >> (j + 16)) & 1u) << 4;
            }
            s += (float)((int)lo - offset) * x[j] + (float)((int)hi - offset) * x[j + 16];
            if (SUM_X) sx += x[j] + x[j + 16];
        }
    }
    if (SUM_X) *sum_x = sx;
    return s;
}

TRUENO_HD float dot_q4_0(const u8* b, const float* x) {
    return half_at(b) * dot_nibbles<false, false>(b + 2, 0u, 8, x, nullptr);
}

TRUENO_HD float dot_q4_1(const u8* b, const float* x) {
    float sx;
    const float s = dot_nibbles<false, true>(b + 4, 0u, 0, x, &sx);
    return half_at(b) * s + half_at(b + 2) * sx;
}

TRUENO_HD float dot_q5_0(const u8* b, const float* x) {
    return half_at(b) * dot_nibbles<true, false>(b + 6, load_u32_a2(b + 2), 16, x, nullptr);
}

TRUENO_HD float dot_q5_1(const u8* b, const float* x) {
    float sx;
    const float s = dot_nibbles<true, true>(b + 8, load_u32_a2(b + 4), 0, x, &sx);
    return half_at(b) * s + half_at(b + 2) * sx;
}

TRUENO_HD float dot_q8_0(const u8* b, const float* x) {
    const u8* qs = b + 2;
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        const u32 q = load_u32_a2(qs + 4 * k);
#pragma unroll
        for (int i = 0; i < 4; ++i) s += (float)(i8)((q >> (8 * i)) & 0xffu) * x[4 * k + i];
    }
    return half_at(b) * s;
}

// ---- 256-value K formats: one lane's share (8 values) of one super-block -------------------

TRUENO_HD void scale_min_k4(int j, const u8* q, float* sc, float* m) {
    if (j < 4) {
        *sc = (float)(q[j] & 63);
        *m = (float)(q[j + 4] & 63);
    } else {
        *sc = (float)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// Lane l reads qs bytes [32 j + 4 p, +4) of chunk j = l / 8 (p = l % 8): their low nibbles are
// values 64 j + 4 p + i (scale 2 j), their high nibbles 64 j + 32 + 4 p + i (scale 2 j + 1).
TRUENO_HD float dot_q4_K_lane(const u8* b, const float* x, int lane) {
    const int j = lane / 8, p = lane % 8;
    float s1, m1, s2, m2;
    scale_min_k4(2 * j, b + 4, &s1, &m1);
    scale_min_k4(2 * j + 1, b + 4, &s2, &m2);
    const u32 q = load_u32_a2(b + 16 + 32 * j + 4 * p);
    const float* x1 = x + 64 * j + 4 * p;
    const float* x2 = x1 + 32;
    float a1 = 0.f, a2 = 0.f, sx1 = 0.f, sx2 = 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        a1 += (float)((q >> (8 * i)) & 0xfu) * x1[i];
        a2 += (float)((q >> (8 * i + 4)) & 0xfu) * x2[i];
        sx1 += x1[i];
        sx2 += x2[i];
    }
    return half_at(b) * (s1 * a1 + s2 * a2) - half_at(b + 2) * (m1 * sx1 + m2 * sx2);
}

// Lane l works in half h = l / 16 of the super-block (ql += 64 h, qh += 32 h, scales += 8 h,
// values += 128 h) on positions l' = 2 (l % 16) and l' + 1, each giving four values
// l' + {0, 32, 64, 96} as in dequantize_row_q6_K.
TRUENO_HD float dot_q6_K_lane(const u8* b, const float* x, int lane) {
    const int h = lane / 16, li = 2 * (lane % 16);
    const u8* ql = b + 64 * h;
    const u8* qh = b + 128 + 32 * h;
    const i8* sc = reinterpret_cast<const i8*>(b + 192) + 8 * h;
    const float* xs = x + 128 * h;
    const u16 ql_a = load_u16(ql + li), ql_b = load_u16(ql + li + 32), qh_ab = load_u16(qh + li);
    float acc = 0.f;
#pragma unroll
    for (int t = 0; t < 2; ++t) {
        const int l = li + t, is = l / 16;
        const int qa = (ql_a >> (8 * t)) & 0xff, qb = (ql_b >> (8 * t)) & 0xff;
        const int hh = (qh_ab >> (8 * t)) & 0xff;
        const int q1 = ((qa & 0xf) | ((hh & 3) << 4)) - 32;
        const int q2 = ((qb & 0xf) | (((hh >> 2) & 3) << 4)) - 32;
        const int q3 = ((qa >> 4) | (((hh >> 4) & 3) << 4)) - 32;
        const int q4 = ((qb >> 4) | (((hh >> 6) & 3) << 4)) - 32;
        acc += (float)sc[is] * (float)q1 * xs[l] + (float)sc[is + 2] * (float)q2 * xs[l + 32]
             + (float)sc[is + 4] * (float)q3 * xs[l + 64] + (float)sc[is + 6] * (float)q4 * xs[l + 96];
    }
    return half_at(b + 208) * acc;
}

// ---- kernels (left out of the CPU emulation build, which has no CUDA runtime) -------------
#ifndef TRUENO_HOST_EMULATION

#define TRUENO_MATVEC_32(NAME, BYTES, DOT)                                                      \
    extern "C" __global__ void NAME(const u8* __restrict__ w, const float* __restrict__ x,       \
                                    float* __restrict__ y, int rows, int cols) {                \
        const int row = blockIdx.x * (blockDim.x / TRUENO_WARP) + threadIdx.x / TRUENO_WARP;    \
        const int lane = threadIdx.x % TRUENO_WARP;                                             \
        if (row >= rows) return; /* the whole warp leaves together */                           \
        const int nb = cols / 32;                                                               \
        const u8* wr = w + (long long)row * nb * (BYTES);                                       \
        float acc = 0.f;                                                                        \
        _Pragma("unroll 4") /* several blocks' loads in flight per lane */                      \
        for (int b = lane; b < nb; b += TRUENO_WARP)                                            \
            acc += DOT(wr + (long long)b * (BYTES), x + 32 * b);                                \
        acc = warp_sum(acc);                                                                    \
        if (lane == 0) y[row] = acc;                                                            \
    }

#define TRUENO_MATVEC_K(NAME, BYTES, DOT_LANE)                                                  \
    extern "C" __global__ void NAME(const u8* __restrict__ w, const float* __restrict__ x,       \
                                    float* __restrict__ y, int rows, int cols) {                \
        const int row = blockIdx.x * (blockDim.x / TRUENO_WARP) + threadIdx.x / TRUENO_WARP;    \
        const int lane = threadIdx.x % TRUENO_WARP;                                             \
        if (row >= rows) return;                                                                \
        const int nb = cols / 256;                                                              \
        const u8* wr = w + (long long)row * nb * (BYTES);                                       \
        float acc = 0.f;                                                                        \
        _Pragma("unroll 4") /* several super-blocks' loads in flight per warp */                \
        for (int b = 0; b < nb; ++b)                                                            \
            acc += DOT_LANE(wr + (long long)b * (BYTES), x + 256 * b, lane);                    \
        acc = warp_sum(acc);                                                                    \
        if (lane == 0) y[row] = acc;                                                            \
    }

// Batched form for prompt processing: Y (n, rows) = X (n, cols) @ W.T, X and Y row-major.
// grid.y walks column groups of TRUENO_NCOLS vectors, so W is read ceil(n / NCOLS) times
// instead of n times; each block's bytes are decoded once per vector from L1.
#define TRUENO_NCOLS 8

#define TRUENO_MATMUL(NAME, BYTES, PER_BLOCK, DOT_EXPR, FIRST, STEP)                            \
    extern "C" __global__ void NAME(const u8* __restrict__ w, const float* __restrict__ x,       \
                                    float* __restrict__ y, int rows, int cols, int n) {         \
        const int row = blockIdx.x * (blockDim.x / TRUENO_WARP) + threadIdx.x / TRUENO_WARP;    \
        const int lane = threadIdx.x % TRUENO_WARP;                                             \
        if (row >= rows) return;                                                                \
        const int c0 = blockIdx.y * TRUENO_NCOLS;                                               \
        const int nc = min(TRUENO_NCOLS, n - c0);                                               \
        const int nb = cols / (PER_BLOCK);                                                      \
        const u8* wr = w + (long long)row * nb * (BYTES);                                       \
        const float* xc = x + (long long)c0 * cols;                                             \
        float acc[TRUENO_NCOLS];                                                                \
        _Pragma("unroll") for (int c = 0; c < TRUENO_NCOLS; ++c) acc[c] = 0.f;                  \
        for (int b = (FIRST); b < nb; b += (STEP)) {                                            \
            const u8* blk = wr + (long long)b * (BYTES);                                        \
            _Pragma("unroll") for (int c = 0; c < TRUENO_NCOLS; ++c) {                          \
                if (c < nc) {                                                                   \
                    const float* xb = xc + (long long)c * cols + (PER_BLOCK) * b;               \
                    acc[c] += DOT_EXPR;                                                         \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        _Pragma("unroll") for (int c = 0; c < TRUENO_NCOLS; ++c) {                              \
            const float v = warp_sum(acc[c]);                                                   \
            if (lane == 0 && c < nc) y[(long long)(c0 + c) * rows + row] = v;                   \
        }                                                                                       \
    }

TRUENO_MATVEC_32(matvec_q4_0, 18, dot_q4_0)
TRUENO_MATVEC_32(matvec_q4_1, 20, dot_q4_1)
TRUENO_MATVEC_32(matvec_q5_0, 22, dot_q5_0)
TRUENO_MATVEC_32(matvec_q5_1, 24, dot_q5_1)
TRUENO_MATVEC_32(matvec_q8_0, 34, dot_q8_0)
TRUENO_MATVEC_K(matvec_q4_K, 144, dot_q4_K_lane)
TRUENO_MATVEC_K(matvec_q6_K, 210, dot_q6_K_lane)

TRUENO_MATMUL(matmul_q4_0, 18, 32, dot_q4_0(blk, xb), lane, TRUENO_WARP)
TRUENO_MATMUL(matmul_q4_1, 20, 32, dot_q4_1(blk, xb), lane, TRUENO_WARP)
TRUENO_MATMUL(matmul_q5_0, 22, 32, dot_q5_0(blk, xb), lane, TRUENO_WARP)
TRUENO_MATMUL(matmul_q5_1, 24, 32, dot_q5_1(blk, xb), lane, TRUENO_WARP)
TRUENO_MATMUL(matmul_q8_0, 34, 32, dot_q8_0(blk, xb), lane, TRUENO_WARP)
TRUENO_MATMUL(matmul_q4_K, 144, 256, dot_q4_K_lane(blk, xb, lane), 0, 1)
TRUENO_MATMUL(matmul_q6_K, 210, 256, dot_q6_K_lane(blk, xb, lane), 0, 1)
#endif  // TRUENO_HOST_EMULATION
