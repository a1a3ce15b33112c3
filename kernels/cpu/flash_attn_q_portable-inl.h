// Scores of quantized queries against a Q8_0 / Q4_0 K panel, portable: exact integer dot
// products per 32-dim block in scalar code, scaled and summed block by block like the
// VNNI kernel (flash_attn_q_vnni-inl.h) does. Also the portable forms of the vector
// helpers the other attention headers use (load_f16, times_pow2, lane_max).

namespace kiln::cpu::KILN_ISA_NS {

namespace attn {

// Q8_0 value rows are widened to a float copy of the tile here (flash_attn-inl.h): this is
// declared only, for attn_tile's discarded `if constexpr (kQ8ValuesInPlace)` branch.
constexpr bool kQ8ValuesInPlace = false;
struct Q8ValueRows {
    const uint8_t* v;
    size_t v_row;
    xsimd::batch<float, Arch> operator()(int j, int c) const;
};

// x 2^n for integer-valued n <= 0, by putting n into the exponent bits; 0 below 2^-126
// (where those bits would wrap).
inline xsimd::batch<float, Arch> times_pow2(xsimd::batch<float, Arch> x, xsimd::batch<float, Arch> n) {
    using VF = xsimd::batch<float, Arch>;
    using VI = xsimd::batch<int32_t, Arch>;
    const VF two_n = xsimd::bitwise_cast<VF>((xsimd::to_int(n) + VI(127)) << 23);
    return xsimd::select(n >= VF(-126.0f), x * two_n, VF(0.0f));
}

// The largest lane.
inline float lane_max(xsimd::batch<float, Arch> x) {
    alignas(64) float t[xsimd::batch<float, Arch>::size];
    x.store_aligned(t);
    return *std::max_element(t, t + xsimd::batch<float, Arch>::size);
}

// One SIMD vector of fp16 keys as floats (through the TU's f16_to_f32).
inline xsimd::batch<float, Arch> load_f16(const uint16_t* p) {
    alignas(64) float t[xsimd::batch<float, Arch>::size];
    f16_to_f32(p, t, int64_t(xsimd::batch<float, Arch>::size));
    return xsimd::batch<float, Arch>::load_aligned(t);
}

template <int QB>
inline void quant_panel_scores_1(DType t, const uint8_t* panel, int D, const AttnQ8* const* q, float* s, size_t s_stride) {
    const bool q8 = t == DType::Q8_0;
    const int bias = q8 ? 128 : 8;
    const size_t block_bytes = k_panel_bytes(t, 32);
    for (int r = 0; r < QB; ++r)
        for (int j = 0; j < kKvPanel; ++j) s[r * s_stride + j] = 0.0f;
    for (int b = 0; b < D / 32; ++b) {
        const uint8_t* blk = panel + size_t(b) * block_bytes;
        const uint8_t* payload = blk + 2 * kKvPanel;
        for (int j = 0; j < kKvPanel; ++j) {
            uint16_t dh;
            std::memcpy(&dh, blk + 2 * j, 2);
            const float dk = fp16_to_fp32(dh);
            for (int r = 0; r < QB; ++r) {
                const AttnQ8& qb = q[r][b];
                int32_t dot = 0;
                for (int e = 0; e < 32; ++e) {
                    int quad = e / 4, code;
                    if (q8) code = payload[(size_t(quad) * kKvPanel + j) * 4 + e % 4];
                    else {
                        const uint8_t byte = payload[(size_t(quad % 4) * kKvPanel + j) * 4 + e % 4];
                        code = quad >= 4 ? byte >> 4 : byte & 0x0F;
                    }
                    dot += code * qb.qs[e];
                }
                float& out = s[r * s_stride + j];
                out = std::fma(float(dot - bias * qb.sum), dk * qb.d, out);
            }
        }
    }
}

// NP consecutive panels (k_panel bytes apart), one after the other.
template <int QB, int NP>
inline void quant_panel_scores(DType t, const uint8_t* panel, size_t k_panel, int D, const AttnQ8* const* q, float* s, size_t s_stride) {
    for (int np = 0; np < NP; ++np) quant_panel_scores_1<QB>(t, panel + np * k_panel, D, q, s + np * kKvPanel, s_stride);
}

}  // namespace attn

}  // namespace kiln::cpu::KILN_ISA_NS
