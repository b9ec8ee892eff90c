// CPU emulation of the quantized matvec kernels in trueno/quant/quant_matvec.cu.
// Built by tests/gpu/test_quant_kernels.py with `nvcc -shared` (host code only, no GPU) and
// called through ctypes: it runs the kernels' own __host__ __device__ block-dot functions in
// the kernels' loop order, lane by lane, so the block decoding is checked against gguf-py.
#include "quant_matvec.cu"

template <int BYTES>
static void emulate_32(float (*dot)(const u8*, const float*), const u8* w, const float* x,
                       float* y, int rows, int cols) {
    const int nb = cols / 32;
    for (int row = 0; row < rows; ++row) {
        const u8* wr = w + (long long)row * nb * BYTES;
        float acc = 0.f;
        for (int lane = 0; lane < TRUENO_WARP; ++lane)
            for (int b = lane; b < nb; b += TRUENO_WARP) acc += dot(wr + (long long)b * BYTES, x + 32 * b);
        y[row] = acc;
    }
}

template <int BYTES>
static void emulate_k(float (*dot_lane)(const u8*, const float*, int), const u8* w,
                      const float* x, float* y, int rows, int cols) {
    const int nb = cols / 256;
    for (int row = 0; row < rows; ++row) {
        const u8* wr = w + (long long)row * nb * BYTES;
        float acc = 0.f;
        for (int lane = 0; lane < TRUENO_WARP; ++lane)
            for (int b = 0; b < nb; ++b) acc += dot_lane(wr + (long long)b * BYTES, x + 256 * b, lane);
        y[row] = acc;
    }
}

// ggml_type: the GGML type number (2 = Q4_0, 3 = Q4_1, 6 = Q5_0, 7 = Q5_1, 8 = Q8_0, 12 = Q4_K, 14 = Q6_K).
extern "C" int emulate_matvec(int ggml_type, const u8* w, const float* x, float* y, int rows,
                              int cols) {
    switch (ggml_type) {
        case 2: emulate_32<18>(dot_q4_0, w, x, y, rows, cols); return 0;
        case 3: emulate_32<20>(dot_q4_1, w, x, y, rows, cols); return 0;
        case 6: emulate_32<22>(dot_q5_0, w, x, y, rows, cols); return 0;
        case 7: emulate_32<24>(dot_q5_1, w, x, y, rows, cols); return 0;
        case 8: emulate_32<34>(dot_q8_0, w, x, y, rows, cols); return 0;
        case 12: emulate_k<144>(dot_q4_K_lane, w, x, y, rows, cols); return 0;
        case 14: emulate_k<210>(dot_q6_K_lane, w, x, y, rows, cols); return 0;
        default: return -1;
    }
}

extern "C" float emulate_half_to_float(u16 h) { return half_to_float(h); }
