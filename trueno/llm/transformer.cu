// Decode-time kernels of the transformer block, the GPU twins of trueno/llm/kernels.py:
// RoPE in place, the KV cache write and attention of one query token over the KV cache.
// Float32, output first.
#include "_common.cu"

// grid (n_tokens, n_heads); rotates the first 2 * half values of each head in place.
// neox pairs (i, i + half); otherwise adjacent pairs (2i, 2i + 1) as in GGUF llama files.
extern "C" __global__ void rope_f32(float* __restrict__ x, const int* __restrict__ positions,
                                    int n_heads, int head_dim, const float* __restrict__ cos_t,
                                    const float* __restrict__ sin_t, int half, int neox) {
    const int t = blockIdx.x, h = blockIdx.y;
    float* v = x + ((long long)t * n_heads + h) * head_dim;
    const float* c = cos_t + (long long)positions[t] * half;
    const float* s = sin_t + (long long)positions[t] * half;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
        const float a = v[ia], b = v[ib];
        v[ia] = a * c[i] - b * s[i];
        v[ib] = a * s[i] + b * c[i];
    }
}

// Decode writes the token's keys and values into the cache at row pos = positions[0], read
// from device memory (so a captured CUDA graph replays it for every position). grid =
// n_kv_heads; k, v: (n_kv_heads * head_dim); caches (n_kv_heads, ctx, head_dim).
extern "C" __global__ void kv_store_f32(float* __restrict__ k_cache, float* __restrict__ v_cache,
                                        const float* __restrict__ k, const float* __restrict__ v,
                                        const int* __restrict__ positions, int ctx, int head_dim) {
    const int h = blockIdx.x;
    const long long row = ((long long)h * ctx + positions[0]) * head_dim;
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        k_cache[row + i] = k[h * head_dim + i];
        v_cache[row + i] = v[h * head_dim + i];
    }
}

// Decode attention, the design of trueno/llm/attention.py on the GPU (flash-decoding):
// grid (n_kv_heads, n_split). Block (kv, s) serves all G = groups query heads of KV head kv
// over slice s of the positions first..pos (pos = positions[0], read from device memory as in
// kv_store_f32, so a captured CUDA graph replays the launch for every token; the slices are cut
// from pos on the device), a tile of ATTN_TILE positions at a time, with an online softmax:
//   1. scores: warp w takes the (head g, position t) pairs w, w + n_warps, ... of the tile:
//      q_g . k_t over head_dim (lanes), times scale, capped as softcap * tanh(s / softcap)
//      when softcap > 0 (gemma2), into tile[g][t];
//   2. warp g (strided over the heads): the tile's max, the new running max m, p = exp(s - m)
//      in place of the scores, the old state's correction exp(m_old - m) and the running sum;
//   3. thread (g, i) pairs: acc = acc * correction + sum_t p[g][t] * v_t[i].
// Each key and value row of the slice is read from memory once for the whole GQA group (the
// group's other warps find it in L1), and scores, softmax and the value sum are one pass.
// n_split == 1: out = acc / sum. Otherwise each block writes its running state (max, sum,
// acc[head_dim]) to part + ((kv * n_split + s) * G + g) * (head_dim + 2) and attend_merge_f32
// combines the slices (a slice left empty writes sum 0 and is skipped there).
// q, out: (n_heads, head_dim); k_cache, v_cache: (n_kv_heads, ctx, head_dim) holding keys
// 0..pos; window > 0 keeps keys with pos - j < window. Limits: groups <= ATTN_MAX_GROUPS,
// groups * head_dim <= ATTN_MAX_PAIRS * blockDim.x; blockDim.x a multiple of 32, <= 1024.
#define ATTN_TILE 32  // positions per tile: one warp's lanes in step 2
#define ATTN_MAX_GROUPS 32
#define ATTN_MAX_PAIRS 8  // (head, value index) accumulators per thread, in registers

extern "C" __global__ void attend_one_f32(float* __restrict__ out, const float* __restrict__ q,
                                          const float* __restrict__ k_cache,
                                          const float* __restrict__ v_cache,
                                          const int* __restrict__ positions, int window,
                                          float scale, float softcap, int groups, int ctx,
                                          int head_dim, float* __restrict__ part) {
    __shared__ float tile[ATTN_MAX_GROUPS * ATTN_TILE];
    __shared__ float run_m[ATTN_MAX_GROUPS], run_l[ATTN_MAX_GROUPS], corr[ATTN_MAX_GROUPS];
    const float neg_inf = -__int_as_float(0x7f800000);
    const int kv = blockIdx.x, split = blockIdx.y, n_split = gridDim.y;
    const int pos = positions[0];
    const int first = (window > 0 && pos - window + 1 > 0) ? pos - window + 1 : 0;
    const int step = (pos + 1 - first + n_split - 1) / n_split;
    const int lo = first + split * step;
    const int hi = min(pos + 1, lo + step);  // lo >= hi: an empty slice
    const int lane = threadIdx.x % TRUENO_WARP, warp = threadIdx.x / TRUENO_WARP;
    const int n_warps = blockDim.x / TRUENO_WARP;
    const int pairs = groups * head_dim;
    const float* qk = q + (long long)kv * groups * head_dim;  // the group's query heads
    const float* kh = k_cache + (long long)kv * ctx * head_dim;
    const float* vh = v_cache + (long long)kv * ctx * head_dim;
    float acc[ATTN_MAX_PAIRS];
#pragma unroll
    for (int r = 0; r < ATTN_MAX_PAIRS; ++r) acc[r] = 0.f;
    for (int g = threadIdx.x; g < groups; g += blockDim.x) {
        run_m[g] = neg_inf;
        run_l[g] = 0.f;
    }
    __syncthreads();
    for (int j0 = lo; j0 < hi; j0 += ATTN_TILE) {
        const int nt = min(ATTN_TILE, hi - j0);
        for (int pr = warp; pr < groups * nt; pr += n_warps) {  // 1. scores
            const int g = pr / nt, t = pr % nt;
            const float* qg = qk + (long long)g * head_dim;
            const float* kt = kh + (long long)(j0 + t) * head_dim;
            float s = 0.f;
            for (int i = lane; i < head_dim; i += TRUENO_WARP) s += qg[i] * kt[i];
            s = warp_sum(s) * scale;
            if (softcap > 0.f) s = softcap * tanhf(s / softcap);
            if (lane == 0) tile[g * ATTN_TILE + t] = s;
        }
        __syncthreads();
        for (int g = warp; g < groups; g += n_warps) {  // 2. online softmax, lane = position
            const float s = lane < nt ? tile[g * ATTN_TILE + lane] : neg_inf;
            const float m_old = run_m[g];
            const float m_new = nan_max(m_old, warp_max(s));
            const float e = lane < nt ? expf(s - m_new) : 0.f;
            tile[g * ATTN_TILE + lane] = e;
            const float total = warp_sum(e);
            if (lane == 0) {
                const float c = expf(m_old - m_new);  // the first tile: exp(-inf) = 0
                corr[g] = c;
                run_l[g] = run_l[g] * c + total;
                run_m[g] = m_new;
            }
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < ATTN_MAX_PAIRS; ++r) {  // 3. values
            const int pr = threadIdx.x + r * blockDim.x;
            if (pr < pairs) {
                const int g = pr / head_dim, i = pr % head_dim;
                const float* pg = tile + g * ATTN_TILE;
                const float* vi = vh + (long long)j0 * head_dim + i;
                float a = acc[r] * corr[g];
                for (int t = 0; t < nt; ++t) a += pg[t] * vi[(long long)t * head_dim];
                acc[r] = a;
            }
        }
        __syncthreads();  // the tile and corr are rewritten by the next tile's steps 1 and 2
    }
    float* mine = part + (long long)(kv * n_split + split) * groups * (head_dim + 2);
    if (n_split > 1)
        for (int g = threadIdx.x; g < groups; g += blockDim.x) {
            mine[g * (head_dim + 2)] = run_m[g];
            mine[g * (head_dim + 2) + 1] = run_l[g];
        }
#pragma unroll
    for (int r = 0; r < ATTN_MAX_PAIRS; ++r) {
        const int pr = threadIdx.x + r * blockDim.x;
        if (pr < pairs) {
            const int g = pr / head_dim, i = pr % head_dim;
            if (n_split == 1)
                out[((long long)kv * groups + g) * head_dim + i] = acc[r] / run_l[g];
            else
                mine[g * (head_dim + 2) + 2 + i] = acc[r];
        }
    }
}

// The slices' running states of attend_one_f32 combined (grid = n_heads, threads over
// head_dim): out[h] = sum_s exp(m_s - m) acc_s / sum_s exp(m_s - m) l_s, m = max_s m_s over
// the slices with l_s > 0 (the max-rescaled sums of flash-decoding).
extern "C" __global__ void attend_merge_f32(float* __restrict__ out,
                                            const float* __restrict__ part, int groups,
                                            int n_split, int head_dim) {
    const int h = blockIdx.x, kv = h / groups, g = h % groups;
    const long long stride = (long long)groups * (head_dim + 2);  // from one slice to the next
    const float* p0 = part + ((long long)kv * n_split * groups + g) * (head_dim + 2);
    float m = -__int_as_float(0x7f800000), total = 0.f;
    for (int s = 0; s < n_split; ++s)
        if (p0[s * stride + 1] > 0.f) m = nan_max(m, p0[s * stride]);
    for (int s = 0; s < n_split; ++s)
        if (p0[s * stride + 1] > 0.f) total += expf(p0[s * stride] - m) * p0[s * stride + 1];
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float o = 0.f;
        for (int s = 0; s < n_split; ++s)
            if (p0[s * stride + 1] > 0.f) o += expf(p0[s * stride] - m) * p0[s * stride + 2 + i];
        out[(long long)h * head_dim + i] = o / total;
    }
}
