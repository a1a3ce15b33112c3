// Decode / verification kernels (1..8 tokens) for q4_K and q6_K, the bulk of a Q4_K_M
// file. Unlike the generic row kernel, the sub-block scales stay integers: each 32-weight
// dot product (vpdpbusd) is multiplied by its 6- or 8-bit scale in int32 (vpmulld) and the
// whole 256-weight super-block is converted to float once, and the mins / offsets are one
// int16 dot product of the scales with q8_K's 16 bsums (vpmaddwd). So the float work per
// super-block is a handful of instructions instead of a few per sub-block.
// Included only by isa_avx512.cpp, after matmul_vnni-inl.h.

namespace kiln::cpu::KILN_ISA_NS {

namespace gemv {

// Sum of the 8 int32 lanes.
inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

// The 8 pairwise sums bsums[2j] + bsums[2j+1] of a q8_K block (one per 32 activations).
inline __m128i bsum_pairs(const block_q8_K& a) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums + 8));
    return _mm_hadd_epi16(lo, hi);
}

// q4_K's 12 packed bytes -> 8 scale bytes (low 8 bytes) and 8 min bytes (high 8 bytes):
// scale/min j < 4 are the low 6 bits of bytes j / j+4; for j >= 4 the low nibble comes
// from byte j+4 (scale) or its high nibble (min) and the top 2 bits from bytes j-4 / j.
inline __m128i q4k_scales_mins(const uint8_t* packed) {
    uint32_t u[3];
    std::memcpy(u, packed, 12);
    const uint32_t k6 = 0x3f3f3f3f, k4 = 0x0f0f0f0f, k2 = 0x03030303;
    const uint32_t sc_lo = u[0] & k6, mn_lo = u[1] & k6;
    const uint32_t sc_hi = (u[2] & k4) | (((u[0] >> 6) & k2) << 4);
    const uint32_t mn_hi = ((u[2] >> 4) & k4) | (((u[1] >> 6) & k2) << 4);
    return _mm_setr_epi32(int(sc_lo), int(sc_hi), int(mn_lo), int(mn_hi));
}

template <int NY>
void rows_q4_K(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    const int64_t nb = k / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t r = r0; r < r1; ++r) {
        const auto* blocks = reinterpret_cast<const block_q4_K*>(static_cast<const uint8_t*>(w) + size_t(r) * w_stride);
        __m256 acc[NY];
        __m128 acc_min[NY];
        for (int c = 0; c < NY; ++c) acc[c] = _mm256_setzero_ps(), acc_min[c] = _mm_setzero_ps();
        for (int64_t ib = 0; ib < nb; ++ib) {
            const block_q4_K& b = blocks[ib];
            _mm_prefetch(reinterpret_cast<const char*>(&blocks[ib + 2]), _MM_HINT_T0);
            const __m128i sm = q4k_scales_mins(b.scales);
            const __m256i sc32 = _mm256_cvtepu8_epi32(sm);                          // 8 scales as int32
            const __m128i mn16 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm));     // 8 mins as int16
            __m256i q[8], scb[8];
            for (int s = 0; s < 8; ++s) scb[s] = _mm256_permutevar8x32_epi32(sc32, _mm256_set1_epi32(s));
            for (int j = 0; j < 4; ++j) {
                const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * j));
                q[2 * j] = _mm256_and_si256(raw, m4);
                q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            }
            const float d = vnni::h2f(b.d), dmin = vnni::h2f(b.dmin);
            for (int c = 0; c < NY; ++c) {
                const block_q8_K& a = static_cast<const block_q8_K*>(act[c])[ib];
                __m256i sumi = _mm256_setzero_si256();
                for (int s = 0; s < 8; ++s) {
                    const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q[s], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 32 * s)));
                    sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(p, scb[s]));
                }
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d * a.d), acc[c]);
                // mins: -dmin * d_a * sum_j min_j * (bsum pair j)
                const __m128i mp = _mm_madd_epi16(mn16, bsum_pairs(a));
                acc_min[c] = _mm_fmadd_ps(_mm_cvtepi32_ps(mp), _mm_set1_ps(-dmin * a.d), acc_min[c]);
            }
        }
        for (int c = 0; c < NY; ++c) {
            __m128 m = acc_min[c];
            m = _mm_add_ps(m, _mm_movehl_ps(m, m));
            m = _mm_add_ss(m, _mm_movehdup_ps(m));
            y[c][r] = vnni::hsum8(acc[c]) + _mm_cvtss_f32(m);
        }
    }
}

template <int NY>
void rows_q6_K(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    const int64_t nb = k / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x30);
    for (int64_t r = r0; r < r1; ++r) {
        const auto* blocks = reinterpret_cast<const block_q6_K*>(static_cast<const uint8_t*>(w) + size_t(r) * w_stride);
        __m256 acc[NY];
        for (int c = 0; c < NY; ++c) acc[c] = _mm256_setzero_ps();
        for (int64_t ib = 0; ib < nb; ++ib) {
            const block_q6_K& b = blocks[ib];
            _mm_prefetch(reinterpret_cast<const char*>(&blocks[ib + 2]), _MM_HINT_T0);
            // 16 int8 scales: as int16 for the offset term, and per sub-block s as the lane
            // pattern [scale 2s x4, scale 2s+1 x4] in int32 for the dot products.
            const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
            const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
            __m256i q[8], scv[8];
            for (int half = 0; half < 2; ++half) {
                const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * half));
                const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * half + 32));
                const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * half));
                // sub-block t of this half: nibble (t >> 1) of ql[t & 1], high bits 2t..2t+1 of qh
                q[4 * half + 0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m3));
                q[4 * half + 1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m3));
                q[4 * half + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m3));
                q[4 * half + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3));
            }
            for (int s = 0; s < 8; ++s) {
                const __m128i pat = _mm_setr_epi8(char(2 * s), char(2 * s), char(2 * s), char(2 * s), char(2 * s + 1), char(2 * s + 1),
                                                  char(2 * s + 1), char(2 * s + 1), 0, 0, 0, 0, 0, 0, 0, 0);
                scv[s] = _mm256_cvtepi8_epi32(_mm_shuffle_epi8(sc8, pat));
            }
            const float d = vnni::h2f(b.d);
            for (int c = 0; c < NY; ++c) {
                const block_q8_K& a = static_cast<const block_q8_K*>(act[c])[ib];
                __m256i sumi = _mm256_setzero_si256();
                for (int s = 0; s < 8; ++s) {
                    const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q[s], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + 32 * s)));
                    sumi = _mm256_add_epi32(sumi, _mm256_mullo_epi32(p, scv[s]));
                }
                // q - 32: subtract 32 * sum_g scale_g * bsum_g
                const __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums)));
                sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(off, 5));
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d * a.d), acc[c]);
            }
        }
        for (int c = 0; c < NY; ++c) y[c][r] = vnni::hsum8(acc[c]);
    }
}

}  // namespace gemv

}  // namespace kiln::cpu::KILN_ISA_NS
