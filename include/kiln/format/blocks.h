// The GGUF/ggml quantized block layouts, byte for byte, and the scalar fp16/bf16
// conversions: for the file-format tools and the kernels, not needed by apps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kiln/dtype.h"

namespace kiln {

// ---- scalar conversions ------------------------------------------------------------

inline float fp16_to_fp32(uint16_t h) {
    // Exact conversion for normals, subnormals, inf and NaN.
    uint32_t sign = uint32_t(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: renormalize
            int e = -1;
            do {
                mant <<= 1;
                ++e;
            } while ((mant & 0x400) == 0);
            bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | mant << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | mant << 13;
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// Round to nearest even, as F16C's vcvtps2ph with imm 0 does.
inline uint16_t fp32_to_fp16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx > 0x7f800000) return uint16_t(sign | 0x7e00);              // NaN
    if (absx >= 0x477ff000) return uint16_t(sign | 0x7c00);             // overflow -> inf
    if (absx < 0x38800000) {                                            // subnormal or zero
        if (absx < 0x33000000) return uint16_t(sign);                   // below half the smallest subnormal
        uint32_t mant = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - int(absx >> 23);                              // 14..24
        uint32_t r = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) ++r;
        return uint16_t(sign | r);
    }
    uint32_t r = (absx >> 13) - ((127 - 15) << 10);
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
    return uint16_t(sign | r);
}

inline float bf16_to_fp32(uint16_t h) {
    uint32_t bits = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline uint16_t fp32_to_bf16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 64);  // quiet NaN
    return uint16_t((x + (0x7fff + ((x >> 16) & 1))) >> 16);           // round to nearest even
}

// ---- block layouts (ggml-common.h) -------------------------------------------------

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32;
constexpr int QK_K = 256;         // super-block size of the k-quants
constexpr int K_SCALE_SIZE = 12;  // packed 6-bit scales and mins of q4_K / q5_K

using f16_bits = uint16_t;

struct block_q4_0 {
    f16_bits d;             // scale
    uint8_t qs[QK4_0 / 2];  // nibbles: low = element i, high = element i + 16
};
struct block_q4_1 {
    f16_bits d, m;  // x = d * q + m
    uint8_t qs[QK4_1 / 2];
};
struct block_q5_0 {
    f16_bits d;
    uint8_t qh[4];  // 5th bit of each of the 32 elements
    uint8_t qs[QK5_0 / 2];
};
struct block_q5_1 {
    f16_bits d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
};
struct block_q8_0 {
    f16_bits d;
    int8_t qs[QK8_0];
};
struct block_q8_1 {
    f16_bits d, s;  // s = d * sum(qs)
    int8_t qs[QK8_1];
};
struct block_q2_K {
    uint8_t scales[QK_K / 16];  // low nibble scale, high nibble min, per 16 elements
    uint8_t qs[QK_K / 4];       // 2-bit quants
    f16_bits d, dmin;
};
struct block_q3_K {
    uint8_t hmask[QK_K / 8];  // high bit
    uint8_t qs[QK_K / 4];     // low 2 bits
    uint8_t scales[12];       // 16 6-bit scales
    f16_bits d;
};
struct block_q4_K {
    f16_bits d, dmin;
    uint8_t scales[K_SCALE_SIZE];  // 8 (scale, min) pairs, 6 bits each
    uint8_t qs[QK_K / 2];
};
struct block_q5_K {
    f16_bits d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
struct block_q6_K {
    uint8_t ql[QK_K / 2];      // low 4 bits
    uint8_t qh[QK_K / 4];      // high 2 bits
    int8_t scales[QK_K / 16];  // 8-bit scales per 16 elements
    f16_bits d;
};
struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];  // sums of qs per 16 elements
};

// IQ4_NL / IQ4_XS: 4-bit indices into one non-linear table of 16 int8 levels (denser near
// zero, where weights are), times a scale: a 32-element block with an fp16 scale, or a
// 256-element super-block with an fp16 scale and eight 6-bit sub-block scales (ls - 32).
// Nibbles as q4_0: the low ones are elements 0..15 of a 32, the high ones 16..31.
constexpr int QK4_NL = 32;
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
struct block_iq4_nl {
    f16_bits d;
    uint8_t qs[QK4_NL / 2];
};
struct block_iq4_xs {
    f16_bits d;
    uint16_t scales_h;            // bits 4-5 of each sub-block scale, 2 per sub-block
    uint8_t scales_l[QK_K / 64];  // bits 0-3, a nibble per sub-block
    uint8_t qs[QK_K / 2];
};
// The 6-bit scale of sub-block ib (0..7) of an IQ4_XS block, less its offset of 32.
inline int iq4xs_scale(const block_iq4_xs& b, int ib) {
    return int(((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

// The IQ1-IQ3 formats: 256-element super-blocks whose groups of 8 (IQ3: 4) weights are
// points of a fixed lattice ("grid", kernels/ref/iq_grids.h) chosen by an index, with
// sign bits (IQ2/IQ3) or a shared +-1/8 shift (IQ1) and small per-32 or per-16 scales.
// Layouts exactly as ggml-common.h.
struct block_iq2_xxs {
    f16_bits d;
    uint16_t qs[QK_K / 8];  // per 32: 4 grid bytes, then 4 x 7 sign bits and a 4-bit scale (top)
};
struct block_iq2_xs {
    f16_bits d;
    uint16_t qs[QK_K / 8];       // 9-bit grid index | 7-bit sign index << 9, one per 8
    uint8_t scales[QK_K / 32];   // two 4-bit scales per 32 (low: first 16)
};
struct block_iq2_s {
    f16_bits d;
    uint8_t qs[QK_K / 4];        // low 8 bits of a grid index per 8 (first 32 bytes), then sign bytes
    uint8_t qh[QK_K / 32];       // top 2 index bits of 4 groups of 8 per byte
    uint8_t scales[QK_K / 32];   // two 4-bit scales per 32
};
struct block_iq3_xxs {
    f16_bits d;
    uint8_t qs[3 * QK_K / 8];    // 64 grid bytes (one per 4), then per 32 one uint32: 4 x 7 sign bits, 4-bit scale
};
struct block_iq3_s {
    f16_bits d;
    uint8_t qs[QK_K / 4];        // low 8 bits of a grid index per 4
    uint8_t qh[QK_K / 32];       // 9th index bits
    uint8_t signs[QK_K / 8];     // one sign bit per weight
    uint8_t scales[QK_K / 64];   // two 4-bit scales per 64 (one per 32)
};
struct block_iq1_s {
    f16_bits d;
    uint8_t qs[QK_K / 8];        // low 8 bits of a grid index per 8
    uint16_t qh[QK_K / 32];      // per 32: 4 x 3 high index bits, 3-bit scale (bits 12-14), shift sign (bit 15)
};
struct block_iq1_m {
    uint8_t qs[QK_K / 8];        // low 8 bits of a grid index per 8
    uint8_t qh[QK_K / 16];       // per 16: two (3 high index bits, shift sign bit) nibbles
    uint8_t scales[QK_K / 32];   // 4 uint16: 3-bit scales per 16, the fp16 d in their top nibbles
};

static_assert(sizeof(block_q4_0) == 18);
static_assert(sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22);
static_assert(sizeof(block_q5_1) == 24);
static_assert(sizeof(block_q8_0) == 34);
static_assert(sizeof(block_q8_1) == 36);
static_assert(sizeof(block_q2_K) == 84);
static_assert(sizeof(block_q3_K) == 110);
static_assert(sizeof(block_q4_K) == 144);
static_assert(sizeof(block_q5_K) == 176);
static_assert(sizeof(block_q6_K) == 210);
static_assert(sizeof(block_q8_K) == 292);
static_assert(sizeof(block_iq4_nl) == 18);
static_assert(sizeof(block_iq4_xs) == 136);
static_assert(sizeof(block_iq2_xxs) == 66);
static_assert(sizeof(block_iq2_xs) == 74);
static_assert(sizeof(block_iq2_s) == 82);
static_assert(sizeof(block_iq3_xxs) == 98);
static_assert(sizeof(block_iq3_s) == 110);
static_assert(sizeof(block_iq1_s) == 50);
static_assert(sizeof(block_iq1_m) == 56);

}  // namespace kiln
