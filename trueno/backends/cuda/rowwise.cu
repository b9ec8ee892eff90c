// Row-wise fused kernels: softmax, log_softmax, layer_norm, rms_norm over contiguous rows of
// length n. One thread block per row (grid = rows), blockDim.x a multiple of 32 (<= 1024);
// reductions use warp shuffles, then one shared-memory step across warps. Float32 rows
// accumulate in float32 (like the numpy reference), float64 rows in float64.
#include "_common.cu"

__device__ __forceinline__ float t_exp(float v) { return expf(v); }
__device__ __forceinline__ double t_exp(double v) { return exp(v); }
__device__ __forceinline__ float t_log(float v) { return logf(v); }
__device__ __forceinline__ double t_log(double v) { return log(v); }
__device__ __forceinline__ float t_sqrt(float v) { return sqrtf(v); }
__device__ __forceinline__ double t_sqrt(double v) { return sqrt(v); }
__device__ __forceinline__ float neg_inf(float) { return -__int_as_float(0x7f800000); }
__device__ __forceinline__ double neg_inf(double) {
    return -__longlong_as_double(0x7ff0000000000000LL);
}

template <typename T>
__device__ void softmax_row(const T* __restrict__ x, T* __restrict__ y, int n, bool log_out) {
    __shared__ T scratch[32];
    const long long base = (long long)blockIdx.x * n;
    const T* xr = x + base;
    T* yr = y + base;
    T m = neg_inf(T(0));
    for (int i = threadIdx.x; i < n; i += blockDim.x) m = nan_max(m, xr[i]);
    m = block_max(m, scratch);
    T s = T(0);
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += t_exp(xr[i] - m);
    s = block_sum(s, scratch);
    if (log_out) {
        const T log_s = t_log(s);
        for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (xr[i] - m) - log_s;
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = t_exp(xr[i] - m) / s;
    }
}

template <typename T>
__device__ void layer_norm_row(const T* __restrict__ x, T* __restrict__ y, int n,
                               const T* __restrict__ w, const T* __restrict__ b, int has_w,
                               int has_b, T eps) {
    __shared__ T scratch[32];
    const long long base = (long long)blockIdx.x * n;
    const T* xr = x + base;
    T* yr = y + base;
    T s = T(0);
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += xr[i];
    const T mean = block_sum(s, scratch) / T(n);
    T v = T(0);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const T c = xr[i] - mean;
        v += c * c;
    }
    const T inv = T(1) / t_sqrt(block_sum(v, scratch) / T(n) + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        T out = (xr[i] - mean) * inv;
        if (has_w) out *= w[i];
        if (has_b) out += b[i];
        yr[i] = out;
    }
}

// y may be x (in place: each thread rewrites only the values it read), so no __restrict__.
template <typename T>
__device__ void rms_norm_row(const T* x, T* y, int n, const T* __restrict__ w, int has_w, T eps) {
    __shared__ T scratch[32];
    const long long base = (long long)blockIdx.x * n;
    const T* xr = x + base;
    T* yr = y + base;
    T ss = T(0);
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    const T inv = T(1) / t_sqrt(block_sum(ss, scratch) / T(n) + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const T out = xr[i] * inv;
        yr[i] = has_w ? out * w[i] : out;
    }
}

#define TRUENO_ROWWISE(SUFFIX, T)                                                               \
    extern "C" __global__ void softmax_##SUFFIX(const T* x, T* y, int n) {                      \
        softmax_row<T>(x, y, n, false);                                                         \
    }                                                                                           \
    extern "C" __global__ void log_softmax_##SUFFIX(const T* x, T* y, int n) {                  \
        softmax_row<T>(x, y, n, true);                                                          \
    }                                                                                           \
    extern "C" __global__ void layer_norm_##SUFFIX(const T* x, T* y, int n, const T* w,        \
                                                   const T* b, int has_w, int has_b, T eps) {   \
        layer_norm_row<T>(x, y, n, w, b, has_w, has_b, eps);                                    \
    }                                                                                           \
    extern "C" __global__ void rms_norm_##SUFFIX(const T* x, T* y, int n, const T* w,          \
                                                 int has_w, T eps) {                            \
        rms_norm_row<T>(x, y, n, w, has_w, eps);                                                \
    }

TRUENO_ROWWISE(f32, float)
TRUENO_ROWWISE(f64, double)
