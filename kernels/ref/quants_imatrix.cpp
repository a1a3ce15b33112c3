// The k-quant and legacy quantizers with an importance matrix (kernels/ref/quants.h):
// llama-quantize --imatrix calls ggml's quantize_row_*_impl for them, which weigh each
// value's rounding error by importance x sqrt(sigma2 + x^2) and search the scales harder
// than the plain quantizers; these give its bytes. Compiled without -m flags like
// quants.cpp, so no float operation is contracted into an FMA.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ref/fit.h"
#include "ref/quants.h"
#include "ref/rounding.h"

namespace kiln::ref {

namespace {

float sum_squares(const float* x, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
    return s;
}

// Error weights of n values: importance x sqrt(sigma2 + x^2).
void importance_weights(const float* x, const float* qw, float sigma2, float* w, int n) {
    for (int i = 0; i < n; ++i) w[i] = qw[i] * std::sqrt(sigma2 + x[i] * x[i]);
}

// q4_K (Bits 4) and q5_K (Bits 5) super-block codes L (256) with the scales and mins of its
// eight sub-blocks as ggml's quantize_row_q{4,5}_K_impl fits them: each sub-block by
// make_qkx3_quants (37 grids), the scales and mins then by make_qp_quants weighted by the
// sub-blocks' total weight (store_scales_k then redoes the codes).
template <int Bits>
void superblock_k_weighted(const float* x, const float* qw, f16_bits* d, f16_bits* dmin, uint8_t* scales12, uint8_t* L) {
    constexpr int kNmax = (1 << Bits) - 1;
    const float sigma2 = superblock_sigma2(x);
    float weights[32], sw[8], scales[8], mins[8];  // (32) one sub-block's; (8) per sub-block
    for (int j = 0; j < 8; ++j) {
        importance_weights(x + 32 * j, qw + 32 * j, sigma2, weights, 32);
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = fit_scale_min(32, kNmax, x + 32 * j, weights, L + 32 * j, &mins[j], -0.9f, 0.05f, 36, false);
    }
    uint8_t ls[8], lm[8];
    const float d_block = make_qp_quants(8, 63, scales, ls, sw), m_block = make_qp_quants(8, 63, mins, lm, sw);
    store_scales_k(x, kNmax, ls, lm, d_block, m_block, d, dmin, scales12, L);
}

// q4_0 / q5_0 (signed codes, nmax 8 / 16) and q4_1 / q5_1 (codes and a min) blocks of a row,
// sigma2 over the whole row as ggml's *_impl take it.
template <class Block, int Nmax, bool WithMin>
void legacy_weighted(const float* x, Block* y, int64_t n, const float* qw) {
    const float sigma2 = sum_squares(x, n) / float(n);
    for (int64_t b = 0; b < n / 32; ++b) {
        const float* xb = x + 32 * b;
        float w[32];  // (32) error weights
        importance_weights(xb, qw + 32 * b, sigma2, w, 32);
        uint8_t L[32];
        if constexpr (WithMin) {
            float min;
            y[b].d = fp32_to_fp16(fit_scale_min(32, Nmax, xb, w, L, &min, -0.9f, 0.05f, 36, false));
            y[b].m = fp32_to_fp16(-min);
        } else {
            y[b].d = fp32_to_fp16(fit_scale_signed(32, Nmax, xb, reinterpret_cast<int8_t*>(L), w));
        }
        pack_nibbles32(L, y[b].qs);
        if constexpr (requires { y[b].qh; }) pack_fifth_bits32(L, y[b].qh);
    }
}

}  // namespace

bool has_imatrix_variant(DType t) {
    switch (t) {
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1:
        case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: return true;
        default: return false;
    }
}

void quantize_row_imatrix(DType t, const float* x, void* dst, int64_t n, const float* qw) {
    switch (t) {
        case DType::Q4_0: legacy_weighted<block_q4_0, 8, false>(x, static_cast<block_q4_0*>(dst), n, qw); return;
        case DType::Q5_0: legacy_weighted<block_q5_0, 16, false>(x, static_cast<block_q5_0*>(dst), n, qw); return;
        case DType::Q4_1: legacy_weighted<block_q4_1, 15, true>(x, static_cast<block_q4_1*>(dst), n, qw); return;
        case DType::Q5_1: legacy_weighted<block_q5_1, 31, true>(x, static_cast<block_q5_1*>(dst), n, qw); return;
        default: break;
    }
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K, qw += QK_K) {
        if (t == DType::Q4_K || t == DType::Q5_K) {
            uint8_t L[QK_K];
            if (t == DType::Q4_K) {
                block_q4_K& y = static_cast<block_q4_K*>(dst)[b];
                superblock_k_weighted<4>(x, qw, &y.d, &y.dmin, y.scales, L);
                store_codes(L, &y);
            } else {
                block_q5_K& y = static_cast<block_q5_K*>(dst)[b];
                superblock_k_weighted<5>(x, qw, &y.d, &y.dmin, y.scales, L);
                store_codes(L, &y);
            }
            continue;
        }
        // q6_K: per 16 values make_qx_quants weighted by the importance alone (ggml's impl
        // leaves the sigma2 term out here).
        int8_t L[QK_K];
        float scales[16];  // (16) per 16 values
        for (int g = 0; g < 16; ++g) scales[g] = fit_scale_signed(16, 32, x + 16 * g, L + 16 * g, qw + 16 * g);
        store_q6_K(x, scales, L, &static_cast<block_q6_K*>(dst)[b]);
    }
}

}  // namespace kiln::ref
