// The IQ1-IQ3 formats' lattices ("grids", ggml's iq2xxs_grid ... iq1s_grid) and the
// decoding of their 32-weight sub-blocks into small integers and scales. One decoding,
// shared by the reference dequantization (quants_iq.cpp) and the portable kernels, so
// the two cannot drift; the SIMD decoders read the same tables.
#pragma once

#include <bit>
#include <cstring>
#include <cstdint>

#include "kiln/format/blocks.h"

namespace kiln::ref {

struct IqGrids {
    uint8_t iq2xxs[256][8];  // values 8, 25, 43
    uint8_t iq2xs[512][8];
    uint8_t iq2s[1024][8];
    uint8_t iq3xxs[256][4];  // values 4, 12, ..., 52, 62
    uint8_t iq3s[512][4];    // values 1, 3, ..., 15
    int8_t iq1s[2048][8];    // values -1, 0, 1
};
extern const IqGrids kIqGrids;  // expanded at compile time from iq_grids.inc

// ggml's ksigns_iq2xs: 7 stored sign bits of 8 weights, the 8th making the number of
// negatives even (the quantizer flips the least important weight to keep it so).
inline uint8_t iq_signs(uint32_t idx7) { return uint8_t(idx7 | (std::popcount(idx7) & 1u) << 7); }

// Sub-block s (0..7) of a block as w[i] = scale[i / 16] * q[i] for its 32 weights,
// exactly the floats ggml dequantizes to. IQ1: q = 8 x point +- 1 and scale = dl / 8 (the
// +-1/8 shift made an integer; dl / 8 is exact, so the product is ggml's dl x (point +- 1/8)).
void iq_unpack(const block_iq2_xxs& b, int s, int8_t* q, float* scale);
void iq_unpack(const block_iq2_xs& b, int s, int8_t* q, float* scale);
void iq_unpack(const block_iq2_s& b, int s, int8_t* q, float* scale);
void iq_unpack(const block_iq3_xxs& b, int s, int8_t* q, float* scale);
void iq_unpack(const block_iq3_s& b, int s, int8_t* q, float* scale);
void iq_unpack(const block_iq1_s& b, int s, int8_t* q, float* scale);
void iq_unpack(const block_iq1_m& b, int s, int8_t* q, float* scale);

// IQ1_M keeps its fp16 super-block scale in the top nibbles of its four scale words.
inline f16_bits iq1m_d(const block_iq1_m& b) {
    uint16_t sc[4];
    std::memcpy(sc, b.scales, 8);
    return f16_bits((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
}

}  // namespace kiln::ref
