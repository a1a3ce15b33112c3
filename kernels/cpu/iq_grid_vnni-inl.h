// AVX-512 decoders (vnni::Dec) for the IQ1-IQ3 grid formats: one 32-weight sub-block as
// 32 signed bytes and its scales, for the generic row kernel (decode, verification) and
// the GEMM (prefill). A sub-block is 4 grid points of 8 values (IQ3: 8 points of 4),
// loaded as 64-bit (32-bit) lanes, and its sign bits one 32-bit mask that negates bytes
// under it. IQ1's +-1/8 shift is made an integer: q = 8 x value +- 1 with the scale / 8.
// Included only by isa_avx512.cpp, after matmul_vnni-inl.h.

namespace kiln::cpu::KILN_ISA_NS {

namespace vnni {

using ref::iq_signs;
using ref::kIqGrids;

inline uint64_t grid8(const uint8_t (*grid)[8], int i) {
    uint64_t v;
    std::memcpy(&v, grid[i], 8);
    return v;
}
inline uint32_t grid4(const uint8_t (*grid)[4], int i) {
    uint32_t v;
    std::memcpy(&v, grid[i], 4);
    return v;
}
// Bytes under the mask negated.
inline __m256i negate_where(__m256i q, uint32_t mask) { return _mm256_mask_sub_epi8(q, __mmask32(mask), _mm256_setzero_si256(), q); }
// Four 7-bit sign indices (bits 0..27 of x) as the 32 sign bits of a sub-block.
inline uint32_t signs4x7(uint32_t x) {
    return uint32_t(iq_signs(x & 127)) | uint32_t(iq_signs((x >> 7) & 127)) << 8 | uint32_t(iq_signs((x >> 14) & 127)) << 16 |
           uint32_t(iq_signs((x >> 21) & 127)) << 24;
}
inline float iq2_scale(float d, uint32_t s) { return d * (0.5f + float(s)) * 0.25f; }

template <>
struct Dec<DType::IQ2_XXS> {
    using Block = block_iq2_xxs;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = true, kMin = false, kHalvesEqual = true;
    explicit Dec(const Block& b) : b_(b), d_(h2f(b.d)) {}
    Sub decode(int s) const {
        uint32_t aux[2];
        std::memcpy(aux, b_.qs + 4 * s, 8);
        const auto& g = kIqGrids.iq2xxs;
        const __m256i q = _mm256_setr_epi64x(int64_t(grid8(g, aux[0] & 0xFF)), int64_t(grid8(g, (aux[0] >> 8) & 0xFF)),
                                             int64_t(grid8(g, (aux[0] >> 16) & 0xFF)), int64_t(grid8(g, aux[0] >> 24)));
        return {negate_where(q, signs4x7(aux[1])), _mm256_set1_ps(iq2_scale(d_, aux[1] >> 28)), 0, 0};
    }
    const Block& b_;
    float d_;
};

template <>
struct Dec<DType::IQ2_XS> {
    using Block = block_iq2_xs;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = true, kMin = false, kHalvesEqual = false;  // a scale per 16
    explicit Dec(const Block& b) : b_(b), d_(h2f(b.d)) {}
    Sub decode(int s) const {
        const uint16_t* qs = b_.qs + 4 * s;
        const auto& g = kIqGrids.iq2xs;
        const __m256i q = _mm256_setr_epi64x(int64_t(grid8(g, qs[0] & 511)), int64_t(grid8(g, qs[1] & 511)), int64_t(grid8(g, qs[2] & 511)),
                                             int64_t(grid8(g, qs[3] & 511)));
        uint32_t mask = 0;
        for (int l = 0; l < 4; ++l) mask |= uint32_t(iq_signs(qs[l] >> 9)) << (8 * l);
        return {negate_where(q, mask), two_halves(iq2_scale(d_, b_.scales[s] & 0xF), iq2_scale(d_, b_.scales[s] >> 4)), 0, 0};
    }
    const Block& b_;
    float d_;
};

template <>
struct Dec<DType::IQ2_S> {
    using Block = block_iq2_s;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = true, kMin = false, kHalvesEqual = false;  // a scale per 16
    explicit Dec(const Block& b) : b_(b), d_(h2f(b.d)) {}
    Sub decode(int s) const {
        const uint8_t* idx = b_.qs + 4 * s;
        const int qh = b_.qh[s];
        const auto& g = kIqGrids.iq2s;
        const __m256i q = _mm256_setr_epi64x(int64_t(grid8(g, idx[0] | ((qh << 8) & 0x300))), int64_t(grid8(g, idx[1] | ((qh << 6) & 0x300))),
                                             int64_t(grid8(g, idx[2] | ((qh << 4) & 0x300))), int64_t(grid8(g, idx[3] | ((qh << 2) & 0x300))));
        uint32_t mask;
        std::memcpy(&mask, b_.qs + QK_K / 8 + 4 * s, 4);  // one sign byte per 8 weights
        return {negate_where(q, mask), two_halves(iq2_scale(d_, b_.scales[s] & 0xF), iq2_scale(d_, b_.scales[s] >> 4)), 0, 0};
    }
    const Block& b_;
    float d_;
};

template <>
struct Dec<DType::IQ3_XXS> {
    using Block = block_iq3_xxs;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = true, kMin = false, kHalvesEqual = true;
    explicit Dec(const Block& b) : b_(b), d_(h2f(b.d)) {}
    Sub decode(int s) const {
        const uint8_t* idx = b_.qs + 8 * s;
        uint32_t aux;
        std::memcpy(&aux, b_.qs + QK_K / 4 + 4 * s, 4);
        const auto& g = kIqGrids.iq3xxs;
        const __m256i q = _mm256_setr_epi32(int(grid4(g, idx[0])), int(grid4(g, idx[1])), int(grid4(g, idx[2])), int(grid4(g, idx[3])),
                                            int(grid4(g, idx[4])), int(grid4(g, idx[5])), int(grid4(g, idx[6])), int(grid4(g, idx[7])));
        return {negate_where(q, signs4x7(aux)), _mm256_set1_ps(d_ * (0.5f + float(aux >> 28)) * 0.5f), 0, 0};
    }
    const Block& b_;
    float d_;
};

template <>
struct Dec<DType::IQ3_S> {
    using Block = block_iq3_s;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = true, kMin = false, kHalvesEqual = true;
    explicit Dec(const Block& b) : b_(b), d_(h2f(b.d)) {}
    Sub decode(int s) const {
        const uint8_t* idx = b_.qs + 8 * s;
        const int qh = b_.qh[s];
        const auto& g = kIqGrids.iq3s;
        int p[8];
        for (int j = 0; j < 8; ++j) p[j] = int(grid4(g, idx[j] | ((qh << (8 - j)) & 256)));  // bit j of qh: 9th bit of point j
        uint32_t mask;
        std::memcpy(&mask, b_.signs + 4 * s, 4);
        const float scale = d_ * float(1 + 2 * ((b_.scales[s / 2] >> (4 * (s % 2))) & 0xF));
        return {negate_where(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), mask), _mm256_set1_ps(scale), 0, 0};
    }
    const Block& b_;
    float d_;
};

// IQ1: 8 x the grid's -1/0/1 plus the group's shift (+1 or -1 per 8 weights).
inline __m256i iq1_values(__m256i grid, __m256i shift) {
    const __m256i g2 = _mm256_add_epi8(grid, grid), g4 = _mm256_add_epi8(g2, g2);
    return _mm256_add_epi8(_mm256_add_epi8(g4, g4), shift);
}
inline int64_t iq1_shift(bool minus) { return minus ? -1 : 0x0101010101010101; }  // 8 bytes of -1 or +1

template <>
struct Dec<DType::IQ1_S> {
    using Block = block_iq1_s;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = true, kMin = false, kHalvesEqual = true;
    explicit Dec(const Block& b) : b_(b), d_(h2f(b.d)) {}
    Sub decode(int s) const {
        const uint8_t* idx = b_.qs + 4 * s;
        const uint32_t qh = b_.qh[s];
        const auto& g = kIqGrids.iq1s;
        const __m256i grid = _mm256_setr_epi64x(int64_t(grid8(reinterpret_cast<const uint8_t(*)[8]>(g), idx[0] | ((qh << 8) & 0x700))),
                                                int64_t(grid8(reinterpret_cast<const uint8_t(*)[8]>(g), idx[1] | ((qh << 5) & 0x700))),
                                                int64_t(grid8(reinterpret_cast<const uint8_t(*)[8]>(g), idx[2] | ((qh << 2) & 0x700))),
                                                int64_t(grid8(reinterpret_cast<const uint8_t(*)[8]>(g), idx[3] | ((qh >> 1) & 0x700))));
        const float scale = d_ * float(2 * ((qh >> 12) & 7) + 1) * 0.125f;
        return {iq1_values(grid, _mm256_set1_epi64x(iq1_shift(qh & 0x8000))), _mm256_set1_ps(scale), 0, 0};
    }
    const Block& b_;
    float d_;
};

template <>
struct Dec<DType::IQ1_M> {
    using Block = block_iq1_m;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = true, kMin = false, kHalvesEqual = false;  // a scale per 16
    explicit Dec(const Block& b) : b_(b), d_(h2f(ref::iq1m_d(b))) { std::memcpy(sc_, b.scales, 8); }
    Sub decode(int s) const {
        const uint8_t* idx = b_.qs + 4 * s;
        const uint8_t* qh = b_.qh + 2 * s;
        const auto* g = reinterpret_cast<const uint8_t(*)[8]>(kIqGrids.iq1s);
        // Built in registers: four 8-byte stores read back as one 32-byte load stall store
        // forwarding (this decoder once ran at a sixth of IQ1_S's speed).
        const int h0 = qh[0], h1 = qh[1];  // per 8 weights: 3 index bits, then the shift's sign
        const __m256i grid = _mm256_setr_epi64x(int64_t(grid8(g, idx[0] | ((h0 & 7) << 8))), int64_t(grid8(g, idx[1] | ((h0 & 0x70) << 4))),
                                                int64_t(grid8(g, idx[2] | ((h1 & 7) << 8))), int64_t(grid8(g, idx[3] | ((h1 & 0x70) << 4))));
        const __m256i shift = _mm256_setr_epi64x(iq1_shift(h0 & 8), iq1_shift(h0 & 0x80), iq1_shift(h1 & 8), iq1_shift(h1 & 0x80));
        const int sc = sc_[s / 2] >> (6 * (s % 2));
        return {iq1_values(grid, shift),
                two_halves(d_ * float(2 * (sc & 7) + 1) * 0.125f, d_ * float(2 * ((sc >> 3) & 7) + 1) * 0.125f), 0, 0};
    }
    const Block& b_;
    float d_;
    uint16_t sc_[4];
};

}  // namespace vnni

}  // namespace kiln::cpu::KILN_ISA_NS
