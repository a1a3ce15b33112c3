// Scores of quantized queries against a Q8_0 / Q4_0 K panel with AVX-512 VNNI: one
// vpdpbusd multiplies 4 dims of 16 keys (unsigned codes, kv_layout.h) by 4 broadcast
// query bytes, so a 32-dim block is 8 instructions per query for 16 keys. The unsigned
// offset (128 or 8) is removed with the query block's sum: sum((k + o) q) - o sum(q).
// Also the AVX-512 forms of the vector helpers the other attention headers use
// (load_f16, times_pow2, lane_max); flash_attn_q_portable-inl.h has the portable ones.

namespace kiln::cpu::KILN_ISA_NS {

namespace attn {

// x 2^n for integer-valued n <= 0 in one vscalefps, gradual underflow to 0 (for exp).
inline xsimd::batch<float, Arch> times_pow2(xsimd::batch<float, Arch> x, xsimd::batch<float, Arch> n) { return _mm512_scalef_ps(x, n); }

// The largest of the 16 lanes, by a shuffle tree.
inline float lane_max(xsimd::batch<float, Arch> x) { return _mm512_reduce_max_ps(x); }

// 16 fp16 keys as floats, converted in registers.
inline xsimd::batch<float, Arch> load_f16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

// Q8_0 value rows used in place by decode and verification (flash_attn-inl.h): 16 values
// of row j from column c, the int8 codes widened in registers times the block's scale,
// the same products the float copy of the rows would hold.
constexpr bool kQ8ValuesInPlace = true;
struct Q8ValueRows {
    const uint8_t* v;
    size_t v_row;  // bytes
    xsimd::batch<float, Arch> operator()(int j, int c) const {
        const block_q8_0* b = reinterpret_cast<const block_q8_0*>(v + size_t(j) * v_row) + c / 32;
        const __m512 codes = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs + c % 32))));
        return _mm512_mul_ps(codes, _mm512_set1_ps(_cvtsh_ss(b->d)));
    }
};

// NP consecutive panels (k_panel bytes apart) at once, for more independent chains.
template <int QB, int NP>
inline void quant_panel_scores(DType t, const uint8_t* panel, size_t k_panel, int D, const AttnQ8* const* q, float* s, size_t s_stride) {
    const bool q8 = t == DType::Q8_0;
    const __m512i bias = _mm512_set1_epi32(q8 ? 128 : 8), low4 = _mm512_set1_epi8(0x0F);
    const size_t block_bytes = k_panel_bytes(t, 32);
    __m512 acc[QB][NP];
    for (int r = 0; r < QB; ++r)
        for (int np = 0; np < NP; ++np) acc[r][np] = _mm512_setzero_ps();
    for (int b = 0; b < D / 32; ++b) {
        __m512i dot[QB][NP];
        for (int r = 0; r < QB; ++r)
            for (int np = 0; np < NP; ++np) dot[r][np] = _mm512_setzero_si512();
        auto quad = [&](const __m512i* codes, int e) {  // 4 dims (e..e+3) of all 16 NP keys
            for (int r = 0; r < QB; ++r) {
                int32_t qq;
                std::memcpy(&qq, q[r][b].qs + e, 4);
                const __m512i qv = _mm512_set1_epi32(qq);
                for (int np = 0; np < NP; ++np) dot[r][np] = _mm512_dpbusd_epi32(dot[r][np], codes[np], qv);
            }
        };
        const uint8_t* payload = panel + size_t(b) * block_bytes + 2 * kKvPanel;
        __m512i codes[NP];
        if (q8) {
            for (int i = 0; i < 8; ++i) {
                for (int np = 0; np < NP; ++np) codes[np] = _mm512_loadu_si512(payload + np * k_panel + i * 64);
                quad(codes, 4 * i);
            }
        } else {
            for (int i = 0; i < 4; ++i) {
                __m512i raw[NP];
                for (int np = 0; np < NP; ++np) raw[np] = _mm512_loadu_si512(payload + np * k_panel + i * 64), codes[np] = _mm512_and_si512(raw[np], low4);
                quad(codes, 4 * i);
                for (int np = 0; np < NP; ++np) codes[np] = _mm512_and_si512(_mm512_srli_epi16(raw[np], 4), low4);
                quad(codes, 16 + 4 * i);
            }
        }
        for (int np = 0; np < NP; ++np) {
            const __m512 dk = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + np * k_panel + size_t(b) * block_bytes)));  // (16) key scales
            for (int r = 0; r < QB; ++r) {
                const __m512i exact = _mm512_sub_epi32(dot[r][np], _mm512_mullo_epi32(bias, _mm512_set1_epi32(q[r][b].sum)));
                acc[r][np] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(dk, _mm512_set1_ps(q[r][b].d)), acc[r][np]);
            }
        }
    }
    for (int r = 0; r < QB; ++r)
        for (int np = 0; np < NP; ++np) _mm512_storeu_ps(s + r * s_stride + np * kKvPanel, acc[r][np]);
}

}  // namespace attn

}  // namespace kiln::cpu::KILN_ISA_NS
