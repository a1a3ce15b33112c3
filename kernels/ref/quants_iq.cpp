// The IQ formats' scalar reference: IQ4_NL and IQ4_XS (de)quantization and the grid
// formats' dequantization, bit-exact with ggml (kernels/ref/quants.h). Compiled without
// -m flags like quants.cpp, so no float operation is contracted into an FMA and the
// searches round as ggml's reference does.
#include <cmath>
#include <cstring>

#include "ref/iq_grids.h"
#include "ref/quants.h"
#include "ref/rounding.h"

#include "kiln/status.h"

namespace kiln::ref {

namespace {

// The index of the level nearest to x (levels ascending; the lower one on ties), by
// bisection: ggml's best_index_int8.
int nearest_level(const int8_t* levels, int n, float x) {
    if (x <= float(levels[0])) return 0;
    if (x >= float(levels[n - 1])) return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < float(levels[mid])) hi = mid;
        else lo = mid;
    }
    return x - float(levels[hi - 1]) < float(levels[hi]) - x ? hi - 1 : hi;
}

// Least-squares scale of one 32-element block against the levels, trying 15 starting
// scales around the one that puts the largest value on the outermost level: codes L, and
// the scale (0 for an all-zero block, whose codes are left as they were).
float search_block_scale(const float* x, const float* w, uint8_t* L) {
    const int8_t* v = kIq4nlValues;
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j)
        if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
    if (amax < kGroupMaxEps) return 0;
    constexpr int kTries = 7;
    float id = 1 / (-max / float(v[0]));
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
        const int l = nearest_level(v, 16, id * x[j]);
        L[j] = uint8_t(l);
        const float q = float(v[l]);
        sumqx += w[j] * q * x[j];
        sumq2 += w[j] * q * q;
    }
    float d = sumq2 > 0 ? sumqx / sumq2 : 0.0f, best = d * sumqx;
    for (int t = -kTries; t <= kTries; ++t) {
        id = float(t + v[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            const float q = float(v[nearest_level(v, 16, id * x[j])]);
            sumqx += w[j] * q * x[j];
            sumq2 += w[j] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) d = sumqx / sumq2, best = d * sumqx;
    }
    return d;
}

// Per-element weights of a block: x^2, or with an importance row qw * sqrt(sigma2 + x^2).
void element_weights(const float* x, const float* importance, float sigma2, float* w) {
    for (int j = 0; j < 32; ++j) w[j] = importance ? importance[j] * std::sqrt(sigma2 + x[j] * x[j]) : x[j] * x[j];
}

// 2 * mean square of a super-block (the importance weights' floor).
float sigma2_of(const float* x, int n) {
    float s = 0;
    for (int j = 0; j < n; ++j) s += x[j] * x[j];
    return s * (2.f / float(n));
}

// Codes L (32 per sub-block) into nibbles: low = elements 0..15, high = 16..31.
void pack_nibbles(const uint8_t* L, int n, uint8_t* qs) {
    for (int i = 0; i < n / 32; ++i)
        for (int j = 0; j < 16; ++j) qs[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

}  // namespace

// As ggml: d * level, the fp16 scale widened first (IQ4_XS: d * (ls - 32) in float, then
// times the level).
void dequantize_row_iq4_nl(const block_iq4_nl* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK4_NL; ++b, y += QK4_NL) {
        const float d = fp16_to_fp32(x[b].d);
        for (int j = 0; j < QK4_NL / 2; ++j) {
            y[j] = d * float(kIq4nlValues[x[b].qs[j] & 0xF]);
            y[j + QK4_NL / 2] = d * float(kIq4nlValues[x[b].qs[j] >> 4]);
        }
    }
}

void dequantize_row_iq4_xs(const block_iq4_xs* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = fp16_to_fp32(x[b].d);
        for (int ib = 0; ib < QK_K / 32; ++ib, y += 32) {
            const float dl = d * float(iq4xs_scale(x[b], ib));
            const uint8_t* qs = x[b].qs + 16 * ib;
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * float(kIq4nlValues[qs[j] & 0xF]);
                y[j + 16] = dl * float(kIq4nlValues[qs[j] >> 4]);
            }
        }
    }
}

void quantize_row_iq4_nl(const float* x, block_iq4_nl* y, int64_t n, const float* importance) {
    for (int64_t b = 0; b < n / QK4_NL; ++b, x += QK4_NL) {
        float w[32];
        uint8_t L[32] = {};
        element_weights(x, importance ? importance + b * QK4_NL : nullptr, sigma2_of(x, 32), w);
        const float d = search_block_scale(x, w, L);
        y[b].d = fp32_to_fp16(d);
        const float id = d != 0 ? 1 / d : 0.0f;  // the codes again at the chosen scale
        for (int j = 0; j < 32; ++j) L[j] = uint8_t(nearest_level(kIq4nlValues, 16, id * x[j]));
        pack_nibbles(L, 32, y[b].qs);
    }
}

void quantize_row_iq4_xs(const float* x, block_iq4_xs* y, int64_t n, const float* importance) {
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        const float sigma2 = sigma2_of(x, QK_K);
        float scales[8], w[32], max_scale = 0, amax_scale = 0;
        uint8_t L[QK_K] = {};
        for (int ib = 0; ib < 8; ++ib) {
            element_weights(x + 32 * ib, importance ? importance + b * QK_K + 32 * ib : nullptr, sigma2, w);
            scales[ib] = search_block_scale(x + 32 * ib, w, L + 32 * ib);
            if (std::fabs(scales[ib]) > amax_scale) amax_scale = std::fabs(scales[ib]), max_scale = scales[ib];
        }
        // One fp16 scale for the super-block, each sub-block's a 6-bit multiple of it.
        const float d = -max_scale / 32, id = d != 0 ? 1 / d : 0.0f;
        y[b].d = fp32_to_fp16(d);
        y[b].scales_h = 0;
        std::memset(y[b].scales_l, 0, sizeof y[b].scales_l);
        for (int ib = 0; ib < 8; ++ib) {
            int l = round_clamp(id * scales[ib], -32, 31);  // (clamping before or after rounding: the same)
            const float dl = d * float(l), idl = dl != 0 ? 1 / dl : 0.0f;
            for (int j = 0; j < 32; ++j) L[32 * ib + j] = uint8_t(nearest_level(kIq4nlValues, 16, idl * x[32 * ib + j]));
            l += 32;
            y[b].scales_l[ib / 2] = uint8_t(y[b].scales_l[ib / 2] | ((l & 0xF) << (4 * (ib % 2))));
            y[b].scales_h = uint16_t(y[b].scales_h | ((l >> 4) << (2 * ib)));
        }
        pack_nibbles(L, QK_K, y[b].qs);
    }
}

namespace {
template <class Block>
void dequantize_grid_blocks(const Block* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; ++i)
        for (int s = 0; s < QK_K / 32; ++s, y += 32) {
            int8_t q[32];
            float scale[2];
            iq_unpack(x[i], s, q, scale);
            for (int j = 0; j < 32; ++j) y[j] = scale[j / 16] * float(q[j]);
        }
}
}  // namespace

void dequantize_row_iq_grid(DType t, const void* x, float* y, int64_t n) {
    switch (t) {
        case DType::IQ2_XXS: return dequantize_grid_blocks(static_cast<const block_iq2_xxs*>(x), y, n);
        case DType::IQ2_XS: return dequantize_grid_blocks(static_cast<const block_iq2_xs*>(x), y, n);
        case DType::IQ2_S: return dequantize_grid_blocks(static_cast<const block_iq2_s*>(x), y, n);
        case DType::IQ3_XXS: return dequantize_grid_blocks(static_cast<const block_iq3_xxs*>(x), y, n);
        case DType::IQ3_S: return dequantize_grid_blocks(static_cast<const block_iq3_s*>(x), y, n);
        case DType::IQ1_S: return dequantize_grid_blocks(static_cast<const block_iq1_s*>(x), y, n);
        case DType::IQ1_M: return dequantize_grid_blocks(static_cast<const block_iq1_m*>(x), y, n);
        default: KILN_ASSERT(false, "dequantize_row_iq_grid: %s is not a grid format", dtype_name(t));
    }
}

}  // namespace kiln::ref
