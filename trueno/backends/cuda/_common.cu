// Shared device helpers for trueno's CUDA kernels. Included by the other .cu files; compiled
// by NVRTC through cupy at run time and by nvcc in the compile-check test. No system headers:
// half -> float goes through PTX so the sources build the same under NVRTC and nvcc.
#pragma once

#define TRUENO_WARP 32
#define TRUENO_FULL_MASK 0xffffffffu

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;

// __host__ __device__: the block-dot helpers also build for the host, where a CPU emulation of
// the quantized kernels runs them in the tests (no GPU needed).
#define TRUENO_HD __host__ __device__ __forceinline__

TRUENO_HD float half_to_float(u16 h) {
#ifdef __CUDA_ARCH__
    float f;
    asm("{ .reg .b16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(f) : "h"(h));
    return f;
#else
    union { u32 u; float f; } v;
    const u32 sign = (u32)(h & 0x8000u) << 16, ex = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (ex == 0) {  // zero or subnormal: man * 2^-24
        v.f = (float)man * 5.9604644775390625e-08f;
        v.u |= sign;
    } else if (ex == 31) {
        v.u = sign | 0x7f800000u | (man << 13);
    } else {
        v.u = sign | ((ex + 112u) << 23) | (man << 13);
    }
    return v.f;
#endif
}

// Little-endian loads from byte pointers with the alignment GGML blocks guarantee (2 bytes).
TRUENO_HD u16 load_u16(const u8* p) {
    return *reinterpret_cast<const u16*>(p);
}

TRUENO_HD u32 load_u32_a2(const u8* p) {
    const u16* q = reinterpret_cast<const u16*>(p);
    return (u32)q[0] | ((u32)q[1] << 16);
}

TRUENO_HD float half_at(const u8* p) { return half_to_float(load_u16(p)); }

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = TRUENO_WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(TRUENO_FULL_MASK, v, o);
    return v;
}

// NaN-propagating max (like numpy.max): a NaN on either side wins.
template <typename T>
__device__ __forceinline__ T nan_max(T a, T b) {
    return (a > b || a != a) ? a : b;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
    for (int o = TRUENO_WARP / 2; o > 0; o >>= 1)
        v = nan_max(v, __shfl_xor_sync(TRUENO_FULL_MASK, v, o));
    return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024). Every thread gets the
// result. ``scratch`` holds 32 values of shared memory and is reusable after the call.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
    const int lane = threadIdx.x % TRUENO_WARP, warp = threadIdx.x / TRUENO_WARP;
    const int n_warps = blockDim.x / TRUENO_WARP;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : T(0);
    v = warp_sum(v);
    __syncthreads();
    return v;
}

template <typename T>
__device__ __forceinline__ T block_max(T v, T* scratch) {
    const int lane = threadIdx.x % TRUENO_WARP, warp = threadIdx.x / TRUENO_WARP;
    const int n_warps = blockDim.x / TRUENO_WARP;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : scratch[0];
    v = warp_max(v);
    __syncthreads();
    return v;
}
