// Decode-time kernels of the transformer block, the GPU twins of trueno/llm/kernels.py:
// RoPE in place and attention of one query token over the KV cache. Float32, output first.
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

// One thread block per query head (grid = n_heads), the query at pos = positions[0] (device
// memory, as in kv_store_f32). q, out: (n_heads, head_dim); k_cache, v_cache: (n_kv_heads,
// ctx, head_dim) holding keys 0..pos; window > 0 keeps keys with pos - j < window; scores:
// (n_heads, ctx) global scratch. blockDim.x: a multiple of 32, at least head_dim, at most 1024.
extern "C" __global__ void attend_one_f32(float* __restrict__ out, const float* __restrict__ q,
                                          const float* __restrict__ k_cache,
                                          const float* __restrict__ v_cache,
                                          const int* __restrict__ positions, int window,
                                          float scale, int groups, int ctx, int head_dim,
                                          float* __restrict__ scores) {
    __shared__ float scratch[32];
    const int pos = positions[0];
    __shared__ float partial[1024];
    const int h = blockIdx.x, kv = h / groups;
    const int lane = threadIdx.x % TRUENO_WARP, warp = threadIdx.x / TRUENO_WARP;
    const int n_warps = blockDim.x / TRUENO_WARP;
    const int first = (window > 0 && pos - window + 1 > 0) ? pos - window + 1 : 0;
    const float* qh = q + (long long)h * head_dim;
    const float* kh = k_cache + (long long)kv * ctx * head_dim;
    const float* vh = v_cache + (long long)kv * ctx * head_dim;
    float* sc = scores + (long long)h * ctx;

    // scores: one warp per key, lanes over head_dim
    float m = -__int_as_float(0x7f800000);
    for (int j = first + warp; j <= pos; j += n_warps) {
        const float* kj = kh + (long long)j * head_dim;
        float s = 0.f;
        for (int i = lane; i < head_dim; i += TRUENO_WARP) s += qh[i] * kj[i];
        s = warp_sum(s) * scale;
        if (lane == 0) sc[j] = s;
        m = nan_max(m, s);
    }
    m = block_max(m, scratch);  // its __syncthreads also publishes sc[] to the block
    float total = 0.f;
    for (int j = first + threadIdx.x; j <= pos; j += blockDim.x) {
        const float e = expf(sc[j] - m);
        sc[j] = e;
        total += e;
    }
    total = block_sum(total, scratch);

    // out = sum_j p_j v_j: thread (g, i) sums keys j = first + g, first + g + G, ...
    const int n_groups = blockDim.x / head_dim;
    const int i = threadIdx.x % head_dim, g = threadIdx.x / head_dim;
    float acc = 0.f;
    if (g < n_groups)
        for (int j = first + g; j <= pos; j += n_groups) acc += sc[j] * vh[(long long)j * head_dim + i];
    partial[threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.x < head_dim) {
        float sum = 0.f;
        for (int k = 0; k < n_groups; ++k) sum += partial[k * head_dim + threadIdx.x];
        out[(long long)h * head_dim + threadIdx.x] = sum / total;
    }
}
