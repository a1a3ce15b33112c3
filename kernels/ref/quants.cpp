// Scalar reference (de)quantization of the GGUF block formats (see quants.h).
//
// Where each element of a block lives (what every SIMD kernel has to reproduce):
//   q4_0 q4_1 q5_0 q5_1  element j < 16 is the low nibble of qs[j], element j >= 16 the high
//                        nibble of qs[j - 16]; q5's fifth bit of element j is bit j of qh
//                        read as a little-endian 32-bit word.
//   q8_0 q8_1 q8_K       element j is qs[j].
//   q4_K q5_K            64-element chunks c = i / 64: element l < 32 of the chunk is the low
//                        nibble of qs[32 c + l], element 32 + l the high nibble; sub-block
//                        i / 32 picks the (scale, min); q5_K's fifth bit is bit i / 32 of
//                        qh[i % 32].
//   q2_K q3_K q6_K       128-element halves h = i / 128; inside a half, element 32 k + l
//                        (k = 0..3, l = 0..31) is built from byte l of the half's quant
//                        bytes (field k of 2 bits for q2_K/q3_K; for q6_K a nibble of
//                        ql[64 h + 32 (k & 1) + l] and 2 bits of qh[32 h + l]). Scales are
//                        per 16 elements, index i / 16. q3_K's third bit is bit i / 32 of
//                        hmask[i % 32]; a SET bit means "+0", a clear bit "-4".
//
// The quantizers follow ggml's reference quantizers operation for operation (same float
// expressions in the same order), which is what makes their output bit-identical.
#include "ref/fit.h"
#include "ref/quants.h"
#include "ref/rounding.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "kiln/status.h"

namespace kiln::ref {
namespace {

inline float h2f(f16_bits h) { return fp16_to_fp32(h); }
inline f16_bits f2h(float f) { return fp32_to_fp16(f); }


// The element with the largest magnitude, with its sign (the first one on ties).
float signed_absmax(const float* x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            max = x[i];
        }
    }
    return max;
}

inline int fifth_bit32(const uint8_t* qh, int j) { return (qh[j / 8] >> (j % 8)) & 1; }

}  // namespace

// =====================================================================================
// Dequantization
// =====================================================================================

void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK4_0; ++b, y += QK4_0) {
        const float d = h2f(x[b].d);
        for (int j = 0; j < 16; ++j) {
            y[j] = float((x[b].qs[j] & 0x0f) - 8) * d;
            y[j + 16] = float((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

void dequantize_row_q4_1(const block_q4_1* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK4_1; ++b, y += QK4_1) {
        const float d = h2f(x[b].d), m = h2f(x[b].m);
        for (int j = 0; j < 16; ++j) {
            y[j] = float(x[b].qs[j] & 0x0f) * d + m;
            y[j + 16] = float(x[b].qs[j] >> 4) * d + m;
        }
    }
}

void dequantize_row_q5_0(const block_q5_0* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK5_0; ++b, y += QK5_0) {
        const float d = h2f(x[b].d);
        for (int j = 0; j < 16; ++j) {
            const int q0 = (x[b].qs[j] & 0x0f) | fifth_bit32(x[b].qh, j) << 4;
            const int q1 = (x[b].qs[j] >> 4) | fifth_bit32(x[b].qh, j + 16) << 4;
            y[j] = float(q0 - 16) * d;
            y[j + 16] = float(q1 - 16) * d;
        }
    }
}

void dequantize_row_q5_1(const block_q5_1* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK5_1; ++b, y += QK5_1) {
        const float d = h2f(x[b].d), m = h2f(x[b].m);
        for (int j = 0; j < 16; ++j) {
            const int q0 = (x[b].qs[j] & 0x0f) | fifth_bit32(x[b].qh, j) << 4;
            const int q1 = (x[b].qs[j] >> 4) | fifth_bit32(x[b].qh, j + 16) << 4;
            y[j] = float(q0) * d + m;
            y[j + 16] = float(q1) * d + m;
        }
    }
}

void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK8_0; ++b, y += QK8_0) {
        const float d = h2f(x[b].d);
        for (int j = 0; j < QK8_0; ++j) y[j] = float(x[b].qs[j]) * d;
    }
}

void dequantize_row_q8_1(const block_q8_1* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK8_1; ++b, y += QK8_1) {
        const float d = h2f(x[b].d);  // s is a cached sum for dot products, not data
        for (int j = 0; j < QK8_1; ++j) y[j] = float(x[b].qs[j]) * d;
    }
}

// value = (d * scale) * q - (dmin * min), scale and min 4 bits each, per 16 elements.
void dequantize_row_q2_K(const block_q2_K* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
        for (int h = 0; h < 2; ++h) {
            const uint8_t* q = x[b].qs + 32 * h;
            for (int k = 0; k < 4; ++k) {
                for (int l = 0; l < 32; ++l) {
                    const int i = 128 * h + 32 * k + l;
                    const uint8_t sc = x[b].scales[i / 16];
                    const float dl = d * float(sc & 0x0f), ml = dmin * float(sc >> 4);
                    *y++ = dl * float((q[l] >> (2 * k)) & 3) - ml;
                }
            }
        }
    }
}

// value = (d * (scale - 32)) * (q - 4), q = 2 low bits from qs + third bit from hmask.
void dequantize_row_q3_K(const block_q3_K* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = h2f(x[b].d);
        for (int h = 0; h < 2; ++h) {
            const uint8_t* q = x[b].qs + 32 * h;
            for (int k = 0; k < 4; ++k) {
                for (int l = 0; l < 32; ++l) {
                    const int i = 128 * h + 32 * k + l;
                    const float dl = d * float(unpack_scale_q3_K(i / 16, x[b].scales));
                    const int low = (q[l] >> (2 * k)) & 3;
                    const bool high = (x[b].hmask[l] >> (i / 32)) & 1;
                    *y++ = dl * float(low - (high ? 0 : 4));
                }
            }
        }
    }
}

// value = (d * scale) * q - (dmin * min) with 6-bit (scale, min) per 32 elements.
void dequantize_row_q4_K(const block_q4_K* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
        for (int s = 0; s < 8; ++s) {  // sub-block s: chunk s / 2, nibble s % 2
            uint8_t sc, m;
            unpack_scale_min_k4(s, x[b].scales, &sc, &m);
            const float ds = d * float(sc), ms = dmin * float(m);
            const uint8_t* q = x[b].qs + 32 * (s / 2);
            for (int l = 0; l < 32; ++l) *y++ = ds * float((q[l] >> (4 * (s % 2))) & 0x0f) - ms;
        }
    }
}

void dequantize_row_q5_K(const block_q5_K* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
        for (int s = 0; s < 8; ++s) {
            uint8_t sc, m;
            unpack_scale_min_k4(s, x[b].scales, &sc, &m);
            const float ds = d * float(sc), ms = dmin * float(m);
            const uint8_t* q = x[b].qs + 32 * (s / 2);
            for (int l = 0; l < 32; ++l) {
                const int code = ((q[l] >> (4 * (s % 2))) & 0x0f) | ((x[b].qh[l] >> s) & 1) << 4;
                *y++ = ds * float(code) - ms;
            }
        }
    }
}

// value = (d * scale) * (q - 32), q = 4 bits from ql + 2 bits from qh, int8 scale per 16.
void dequantize_row_q6_K(const block_q6_K* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float d = h2f(x[b].d);
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = x[b].ql + 64 * h;
            const uint8_t* qh = x[b].qh + 32 * h;
            for (int k = 0; k < 4; ++k) {
                for (int l = 0; l < 32; ++l) {
                    const int i = 128 * h + 32 * k + l;
                    const int low = (ql[32 * (k & 1) + l] >> (4 * (k >> 1))) & 0x0f;
                    const int high = (qh[l] >> (2 * k)) & 3;
                    *y++ = d * float(x[b].scales[i / 16]) * float((low | high << 4) - 32);
                }
            }
        }
    }
}

void dequantize_row_q8_K(const block_q8_K* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b, y += QK_K) {
        for (int j = 0; j < QK_K; ++j) y[j] = x[b].d * float(x[b].qs[j]);
    }
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
    const DTypeInfo* info = dtype_info(uint32_t(t));
    KILN_ASSERT(info != nullptr, "dequantize_row: unknown type id %u", unsigned(t));
    KILN_ASSERT(n % info->block_size == 0, "dequantize_row: n=%lld is not a multiple of %s's block size %u",
                (long long)n, info->name, info->block_size);
    switch (t) {
        case DType::F32: std::memcpy(dst, src, size_t(n) * sizeof(float)); return;
        case DType::F16: {
            const auto* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
            return;
        }
        case DType::BF16: {
            const auto* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
            return;
        }
        case DType::Q4_0: return dequantize_row_q4_0(static_cast<const block_q4_0*>(src), dst, n);
        case DType::Q4_1: return dequantize_row_q4_1(static_cast<const block_q4_1*>(src), dst, n);
        case DType::Q5_0: return dequantize_row_q5_0(static_cast<const block_q5_0*>(src), dst, n);
        case DType::Q5_1: return dequantize_row_q5_1(static_cast<const block_q5_1*>(src), dst, n);
        case DType::Q8_0: return dequantize_row_q8_0(static_cast<const block_q8_0*>(src), dst, n);
        case DType::Q8_1: return dequantize_row_q8_1(static_cast<const block_q8_1*>(src), dst, n);
        case DType::Q2_K: return dequantize_row_q2_K(static_cast<const block_q2_K*>(src), dst, n);
        case DType::Q3_K: return dequantize_row_q3_K(static_cast<const block_q3_K*>(src), dst, n);
        case DType::Q4_K: return dequantize_row_q4_K(static_cast<const block_q4_K*>(src), dst, n);
        case DType::Q5_K: return dequantize_row_q5_K(static_cast<const block_q5_K*>(src), dst, n);
        case DType::Q6_K: return dequantize_row_q6_K(static_cast<const block_q6_K*>(src), dst, n);
        case DType::Q8_K: return dequantize_row_q8_K(static_cast<const block_q8_K*>(src), dst, n);
        case DType::IQ4_NL: return dequantize_row_iq4_nl(static_cast<const block_iq4_nl*>(src), dst, n);
        case DType::IQ4_XS: return dequantize_row_iq4_xs(static_cast<const block_iq4_xs*>(src), dst, n);
        case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S: case DType::IQ3_XXS: case DType::IQ3_S:
        case DType::IQ1_S: case DType::IQ1_M: return dequantize_row_iq_grid(t, src, dst, n);
    }
    KILN_ASSERT(false, "dequantize_row: no dequantizer for %s", info->name);
}

// =====================================================================================
// Legacy 32-element formats
// =====================================================================================
namespace {

// q4_0 / q5_0: d = max / -2^(b-1), where max is the largest-magnitude value WITH its sign.
// That value then lands exactly on code 0 (= -2^(b-1) d) and the grid's short end
// (+2^(b-1) - 1) faces the opposite sign, so one extra level is used where it matters.
// Codes are trunc(x/d + 2^(b-1) + 0.5): round half UP in code space (not to even), and
// an opposite-sign value of the same magnitude (code 2^(b-1)) is clamped to 2^b - 1.
template <int Bits>
float quantize_block_signed_max(const float* x, uint8_t* q) {
    constexpr int kHalf = 1 << (Bits - 1), kTop = (1 << Bits) - 1;
    const float d = signed_absmax(x, 32) / -kHalf;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; ++j) {
        const float v = x[j] * id;  // in [-2^(b-1), 2^(b-1)]
        q[j] = uint8_t(std::min(kTop, int(v + (float(kHalf) + 0.5f))));
    }
    return d;
}

// q4_1 / q5_1: x ~ d * q + min with d = (max - min) / (2^b - 1), q = trunc((x - min)/d + 0.5)
// (round half up; x - min >= 0 so truncation is floor).
template <int Bits>
void quantize_block_min_max(const float* x, float* d_out, float* min_out, uint8_t* q) {
    constexpr int kTop = (1 << Bits) - 1;
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < 32; ++j) {
        min = std::min(min, x[j]);
        max = std::max(max, x[j]);
    }
    const float d = (max - min) / kTop;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; ++j) {
        const float v = (x[j] - min) * id;  // in [0, 2^b - 1] up to rounding
        q[j] = uint8_t(std::min(kTop, int(v + 0.5f)));
    }
    *d_out = d;
    *min_out = min;
}

// q8_0 / q8_1: d = max|x| / 127, q = round(x / d) with ties AWAY from zero (C's roundf).
float quantize_block_q8(const float* x, int8_t* qs) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; ++j) qs[j] = int8_t(std::round(x[j] * id));
    return d;
}

}  // namespace

void quantize_row_q4_0(const float* x, block_q4_0* y, int64_t n) {
    for (int64_t b = 0; b < n / QK4_0; ++b, x += QK4_0) {
        uint8_t q[32];
        y[b].d = f2h(quantize_block_signed_max<4>(x, q));
        pack_nibbles32(q, y[b].qs);
    }
}

void quantize_row_q5_0(const float* x, block_q5_0* y, int64_t n) {
    for (int64_t b = 0; b < n / QK5_0; ++b, x += QK5_0) {
        uint8_t q[32];
        y[b].d = f2h(quantize_block_signed_max<5>(x, q));
        pack_nibbles32(q, y[b].qs);
        pack_fifth_bits32(q, y[b].qh);
    }
}

void quantize_row_q4_1(const float* x, block_q4_1* y, int64_t n) {
    for (int64_t b = 0; b < n / QK4_1; ++b, x += QK4_1) {
        uint8_t q[32];
        float d, min;
        quantize_block_min_max<4>(x, &d, &min, q);
        y[b].d = f2h(d);
        y[b].m = f2h(min);
        pack_nibbles32(q, y[b].qs);
    }
}

void quantize_row_q5_1(const float* x, block_q5_1* y, int64_t n) {
    for (int64_t b = 0; b < n / QK5_1; ++b, x += QK5_1) {
        uint8_t q[32];
        float d, min;
        quantize_block_min_max<5>(x, &d, &min, q);
        y[b].d = f2h(d);
        y[b].m = f2h(min);
        pack_nibbles32(q, y[b].qs);
        pack_fifth_bits32(q, y[b].qh);
    }
}

void quantize_row_q8_0(const float* x, block_q8_0* y, int64_t n) {
    for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) y[b].d = f2h(quantize_block_q8(x, y[b].qs));
}

void quantize_row_q8_1(const float* x, block_q8_1* y, int64_t n) {
    for (int64_t b = 0; b < n / QK8_1; ++b, x += QK8_1) {
        const float d = quantize_block_q8(x, y[b].qs);
        int sum = 0;
        for (int j = 0; j < QK8_1; ++j) sum += y[b].qs[j];
        y[b].d = f2h(d);
        y[b].s = f2h(float(sum) * d);  // with the unrounded d, as ggml
    }
}

void quantize_row_q8_K(const float* x, block_q8_K* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        const float max = signed_absmax(x, QK_K);
        if (max == 0.0f) {  // ggml leaves bsums unwritten here; we zero them
            std::memset(&y[b], 0, sizeof(block_q8_K));
            continue;
        }
        // -127 rather than -128: codes stay in [-127, 127], so |q| fits in 7 bits and
        // int8 sign tricks (vpsignb, maddubs on |q|) cannot overflow in the SIMD kernels.
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; ++j) y[b].qs[j] = int8_t(round_clamp(iscale * x[j], -127, 127));
        for (int g = 0; g < QK_K / 16; ++g) {
            int sum = 0;
            for (int j = 0; j < 16; ++j) sum += y[b].qs[16 * g + j];
            y[b].bsums[g] = int16_t(sum);
        }
        y[b].d = 1 / iscale;
    }
}

// =====================================================================================
// k-quants
// =====================================================================================
namespace {

// Shared by q4_K (Bits 4) and q5_K (Bits 5): codes L[256] in [0, 2^b - 1] for one super-block.
//  1. per 32-element sub-block, fit (scale, min) with weights rms(sub-block) + |x|;
//  2. quantize the 8 scales and 8 mins to 6 bits against the largest of each
//     (d = max_scale / 63, dmin = max_min / 63, both stored as fp16);
//  3. store_scales_k: every code redone against the scales as stored.
template <int Bits>
void quantize_superblock_k(const float* x, f16_bits* d_out, f16_bits* dmin_out, uint8_t* scales12, uint8_t* L) {
    constexpr int kNmax = (1 << Bits) - 1;
    constexpr float kRmin = Bits == 4 ? -1.0f : -0.5f;  // search grids of ggml's q4_K / q5_K
    constexpr int kSteps = Bits == 4 ? 20 : 15;
    float scales[8], mins[8], weights[32];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int s = 0; s < 8; ++s) {
        const float* xs = x + 32 * s;
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
        const float rms = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = rms + std::fabs(xs[l]);
        scales[s] = fit_scale_min(32, kNmax, xs, weights, L + 32 * s, &mins[s], kRmin, 0.1f, kSteps);
        max_scale = std::max(max_scale, scales[s]);
        max_min = std::max(max_min, mins[s]);
    }
    const float inv_scale = max_scale > 0.0f ? 63.f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.f / max_min : 0.0f;
    uint8_t sc[8], m[8];
    for (int s = 0; s < 8; ++s) {
        sc[s] = uint8_t(round_clamp(inv_scale * scales[s], 0, 63));
        m[s] = uint8_t(round_clamp(inv_min * mins[s], 0, 63));
    }
    store_scales_k(x, kNmax, sc, m, max_scale / 63.f, max_min / 63.f, d_out, dmin_out, scales12, L);
}

}  // namespace

void quantize_row_q4_K(const float* x, block_q4_K* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        uint8_t L[QK_K];
        quantize_superblock_k<4>(x, &y[b].d, &y[b].dmin, y[b].scales, L);
        store_codes(L, &y[b]);
    }
}

void quantize_row_q5_K(const float* x, block_q5_K* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        uint8_t L[QK_K];
        quantize_superblock_k<5>(x, &y[b].d, &y[b].dmin, y[b].scales, L);
        store_codes(L, &y[b]);
    }
}

// q6_K: per 16 elements a signed fit (fit_scale_signed, codes -32..31), stored by store_q6_K.
void quantize_row_q6_K(const float* x, block_q6_K* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        int8_t L[QK_K];
        float scales[16];  // (16) per 16 values
        for (int g = 0; g < 16; ++g) scales[g] = fit_scale_signed(16, 32, x + 16 * g, L + 16 * g);
        store_q6_K(x, scales, L, &y[b]);
    }
}

// =====================================================================================
// Dispatch and dot product
// =====================================================================================

bool has_quantizer(DType t) {
    switch (t) {
        case DType::F32: case DType::F16: case DType::BF16:
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1:
        case DType::Q8_0: case DType::Q8_1: case DType::Q8_K:
        case DType::Q2_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
        case DType::IQ4_NL: case DType::IQ4_XS: case DType::IQ3_S:
            return true;
        default:
            return false;
    }
}

bool needs_importance(DType t) {
    return t == DType::IQ2_XXS || t == DType::IQ2_XS || t == DType::IQ2_S || t == DType::IQ3_XXS || t == DType::IQ1_S || t == DType::IQ1_M;
}

size_t quantize_row(DType t, const float* x, void* dst, int64_t n) { return quantize_row(t, x, dst, n, nullptr); }

size_t quantize_row(DType t, const float* x, void* dst, int64_t n, const float* importance) {
    if (needs_importance(t) && importance) {
        KILN_ASSERT(n % QK_K == 0, "quantize_row: n=%lld is not whole %s blocks", (long long)n, dtype_name(t));
        if (t == DType::IQ2_XXS) quantize_row_iq2_xxs(x, static_cast<block_iq2_xxs*>(dst), n, importance);
        else if (t == DType::IQ2_XS) quantize_row_iq2_xs(x, static_cast<block_iq2_xs*>(dst), n, importance);
        else if (t == DType::IQ2_S) quantize_row_iq2_s(x, static_cast<block_iq2_s*>(dst), n, importance);
        else if (t == DType::IQ1_S) quantize_row_iq1_s(x, static_cast<block_iq1_s*>(dst), n, importance);
        else if (t == DType::IQ1_M) quantize_row_iq1_m(x, static_cast<block_iq1_m*>(dst), n, importance);
        else quantize_row_iq3_xxs(x, static_cast<block_iq3_xxs*>(dst), n, importance);
        return row_bytes(t, n);
    }
    if (!has_quantizer(t)) return 0;
    const DTypeInfo& info = dtype_info(t);
    if (importance && has_imatrix_variant(t)) {
        KILN_ASSERT(n % info.block_size == 0, "quantize_row: n=%lld is not whole %s blocks", (long long)n, info.name);
        quantize_row_imatrix(t, x, dst, n, importance);
        return row_bytes(t, n);
    }
    KILN_ASSERT(n % info.block_size == 0, "quantize_row: n=%lld is not a multiple of %s's block size %u",
                (long long)n, info.name, info.block_size);
    switch (t) {
        case DType::F32: std::memcpy(dst, x, size_t(n) * sizeof(float)); break;
        case DType::F16:
            for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = fp32_to_fp16(x[i]);
            break;
        case DType::BF16:
            for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = fp32_to_bf16(x[i]);
            break;
        case DType::Q4_0: quantize_row_q4_0(x, static_cast<block_q4_0*>(dst), n); break;
        case DType::Q4_1: quantize_row_q4_1(x, static_cast<block_q4_1*>(dst), n); break;
        case DType::Q5_0: quantize_row_q5_0(x, static_cast<block_q5_0*>(dst), n); break;
        case DType::Q5_1: quantize_row_q5_1(x, static_cast<block_q5_1*>(dst), n); break;
        case DType::Q8_0: quantize_row_q8_0(x, static_cast<block_q8_0*>(dst), n); break;
        case DType::Q8_1: quantize_row_q8_1(x, static_cast<block_q8_1*>(dst), n); break;
        case DType::Q8_K: quantize_row_q8_K(x, static_cast<block_q8_K*>(dst), n); break;
        case DType::Q2_K: quantize_row_q2_K(x, static_cast<block_q2_K*>(dst), n, importance); break;
        case DType::Q4_K: quantize_row_q4_K(x, static_cast<block_q4_K*>(dst), n); break;
        case DType::Q5_K: quantize_row_q5_K(x, static_cast<block_q5_K*>(dst), n); break;
        case DType::Q6_K: quantize_row_q6_K(x, static_cast<block_q6_K*>(dst), n); break;
        case DType::IQ4_NL: quantize_row_iq4_nl(x, static_cast<block_iq4_nl*>(dst), n, importance); break;
        case DType::IQ4_XS: quantize_row_iq4_xs(x, static_cast<block_iq4_xs*>(dst), n, importance); break;
        case DType::IQ3_S: quantize_row_iq3_s(x, static_cast<block_iq3_s*>(dst), n, importance); break;
        default: return 0;
    }
    return row_bytes(t, n);
}

float vec_dot_ref(DType wt, const void* w_row, const float* x, int64_t n) {
    const DTypeInfo* info = dtype_info(uint32_t(wt));
    KILN_ASSERT(info != nullptr, "vec_dot_ref: unknown type id %u", unsigned(wt));
    // Dequantize one block (or 256 plain floats) at a time.
    const int64_t chunk = info->block_size == 1 ? 256 : info->block_size;
    const auto* w = static_cast<const uint8_t*>(w_row);
    float buf[QK_K];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i += chunk) {
        const int64_t len = std::min(chunk, n - i);
        dequantize_row(wt, w + row_bytes(wt, i), buf, len);
        for (int64_t j = 0; j < len; ++j) sum += double(buf[j]) * double(x[i + j]);
    }
    return float(sum);
}

}  // namespace kiln::ref
