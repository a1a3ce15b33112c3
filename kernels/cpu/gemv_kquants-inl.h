// Decode / verification kernels (1..8 tokens) for q4_K and q6_K, the bulk of a Q4_K_M
// file, q5_K (Q5_K_M files, the IQ mixes' output matrix) and iq4_xs (the lattice formats:
// gemv_iq_grid-inl.h). Unlike the generic row kernel, the sub-block scales stay integers: weight x
// activation pairs are summed in int16 (vpmaddubsw) and multiplied by their 6- or 8-bit
// scale while being accumulated in int32 (vpdpwssd), the whole 256-weight super-block is
// converted to float once, and the mins / offsets are one int16 dot product of the scales
// with q8_K's 16 bsums (vpmaddwd). So the float work per super-block is a handful of
// instructions instead of a few per sub-block.
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

// 512-bit registers hold two 32-weight sub-blocks: Zen 4 runs them as two 256-bit halves,
// but each instruction does twice the work, and decode here is bound by instruction count
// before memory bandwidth.
inline float hsum16(__m512 v) { return _mm512_reduce_add_ps(v); }

// 8 int16 sub-block scales (the low 128 bits of sc16) spread over the 4 registers of 64
// weights (sub-blocks 2j, 2j + 1) that vpdpwssd multiplies: 16-bit lane l of pair j gets
// scale 2j + l / 16.
struct PairScales {
    __m512i idx[4];
    PairScales() {
        for (int j = 0; j < 4; ++j) idx[j] = _mm512_inserti64x4(_mm512_set1_epi16(short(2 * j)), _mm256_set1_epi16(short(2 * j + 1)), 1);
    }
    void spread(__m512i sc16, __m512i* scp) const {
        for (int j = 0; j < 4; ++j) scp[j] = _mm512_permutexvar_epi16(idx[j], sc16);
    }
};

// Sum over a super-block of scale x (w . a) for signed weights given as |w| (w_abs, 4
// registers of 64) and their signs (neg: bit set = negative), against q8_K activations aq:
// the sign moves onto the activations (a masked negate; AVX-512 has no vpsignb) so
// vpmaddubsw sees unsigned weights; pairs in int16 stay below 2 x 127 x 127.
inline __m512i dot_signed_pairs(const __m512i* w_abs, const __mmask64* neg, const __m512i* scp, const int8_t* aq) {
    __m512i sumi = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {
        const __m512i av = _mm512_loadu_si512(aq + 64 * j);
        const __m512i as = _mm512_mask_sub_epi8(av, neg[j], _mm512_setzero_si512(), av);
        sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(w_abs[j], as), scp[j]);
    }
    return sumi;
}

// q4_K and q5_K (Block): the same scales, mins and nibbles; q5_K's 5th bits (bit 2j of qh[l]
// for weight l of sub-block 2j, bit 2j + 1 for sub-block 2j + 1) become a byte mask per 64
// weights that adds 16 (one vptestmb, one masked vpaddb). Pairs in int16: 2 x 31 x 127.
template <class Block, int NY, Ahead PF>
void rows_q45_K(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    constexpr bool q5 = std::is_same_v<Block, block_q5_K>;
    const int64_t nb = k / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i fifth_bit[4];  // [j]: bit 2j in the low 256 bits (sub-block 2j), 2j + 1 in the high
    for (int j = 0; j < 4; ++j) fifth_bit[j] = _mm512_inserti64x4(_mm512_set1_epi8(char(1 << (2 * j))), _mm256_set1_epi8(char(2 << (2 * j))), 1);
    const PairScales pairs;
    for (int64_t r = r0; r < r1; ++r) {
        const auto* blocks = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w) + size_t(r) * w_stride);
        __m512 acc[NY];
        __m256 acc_min[NY];
        for (int c = 0; c < NY; ++c) acc[c] = _mm512_setzero_ps(), acc_min[c] = _mm256_setzero_ps();
        for (int64_t ib = 0; ib < nb; ++ib) {
            const Block& b = blocks[ib];
            if constexpr (PF.any()) prefetch_ahead<PF>(&b, sizeof b);
            else _mm_prefetch(reinterpret_cast<const char*>(&blocks[ib + 2]), _MM_HINT_T0);
            const __m128i sm = q4k_scales_mins(b.scales);
            const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(sm));  // 8 scales as int16
            // Each min twice, to pair with q8_K's 16 bsums in one vpmaddwd.
            const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
            __m512i q[4], scp[4];
            for (int j = 0; j < 4; ++j) {
                const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * j));
                // [low nibbles | high nibbles] = sub-blocks 2j and 2j+1
                q[j] = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(raw), _mm256_srli_epi16(raw, 4), 1), m4);
                if constexpr (q5) {
                    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
                    const __mmask64 hi = _mm512_test_epi8_mask(_mm512_inserti64x4(_mm512_castsi256_si512(qh), qh, 1), fifth_bit[j]);
                    q[j] = _mm512_mask_add_epi8(q[j], hi, q[j], _mm512_set1_epi8(16));
                }
            }
            pairs.spread(sc16, scp);
            const float d = vnni::h2f(b.d), dmin = vnni::h2f(b.dmin);
            for (int c = 0; c < NY; ++c) {
                const block_q8_K& a = static_cast<const block_q8_K*>(act[c])[ib];
                // q*a pairs in int16 (<= 2*15*127, no saturation), then scale and sum them in
                // one vpdpwssd: two instructions per 64 weights.
                __m512i sumi = _mm512_setzero_si512();
                for (int j = 0; j < 4; ++j)
                    sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[j], _mm512_loadu_si512(a.qs + 64 * j)), scp[j]);
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(d * a.d), acc[c]);
                const __m256i mins = _mm256_madd_epi16(mn16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums)));
                acc_min[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(-dmin * a.d), acc_min[c]);
            }
        }
        for (int c = 0; c < NY; ++c) y[c][r] = hsum16(acc[c]) + vnni::hsum8(acc_min[c]);
    }
}

template <int NY, Ahead PF>
void rows_q4_K(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    rows_q45_K<block_q4_K, NY, PF>(k, w, w_stride, r0, r1, act, y);
}
template <int NY, Ahead PF>
void rows_q5_K(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    rows_q45_K<block_q5_K, NY, PF>(k, w, w_stride, r0, r1, act, y);
}

template <int NY, Ahead PF>
void rows_q6_K(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    const int64_t nb = k / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x30);
    // Per 256-bit half of a register: the shifts that bring qh bits 2t..2t+1 to bits 4..5.
    const __m512i shl_01 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);  // t = 0, 1: << 4, << 2
    const __m512i shr_23 = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);  // t = 2, 3: >> 0, >> 2
    __m512i q6_idx[4];
    for (int p = 0; p < 4; ++p) {
        alignas(64) int16_t idx[32];
        for (int l = 0; l < 32; ++l) idx[l] = int16_t(4 * p + l / 8);
        q6_idx[p] = _mm512_load_si512(idx);
    }
    for (int64_t r = r0; r < r1; ++r) {
        const auto* blocks = reinterpret_cast<const block_q6_K*>(static_cast<const uint8_t*>(w) + size_t(r) * w_stride);
        float acc[NY];  // one float per token: the r16 kernel's order, see below
        for (int c = 0; c < NY; ++c) acc[c] = 0.0f;
        for (int64_t ib = 0; ib < nb; ++ib) {
            const block_q6_K& b = blocks[ib];
            if constexpr (PF.any()) prefetch_ahead<PF>(&b, sizeof b);
            else _mm_prefetch(reinterpret_cast<const char*>(&blocks[ib + 2]), _MM_HINT_T0);
            const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
            const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);  // for the -32 offset term
            __m512i q[4], scp[4];
            for (int half = 0; half < 2; ++half) {
                const __m512i ql = _mm512_loadu_si512(b.ql + 64 * half);  // [ql0 | ql1]
                const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * half)));
                q[2 * half] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, shl_01), m3));
                q[2 * half + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_and_si512(_mm512_srlv_epi16(qh, shr_23), m3));
            }
            const __m512i sc16x = _mm512_castsi256_si512(sc16);
            for (int p = 0; p < 4; ++p)  // pair p = sub-blocks 2p, 2p+1: 16-bit lane l needs scale 4p + l / 8
                scp[p] = _mm512_permutexvar_epi16(q6_idx[p], sc16x);
            const float d = vnni::h2f(b.d);
            for (int c = 0; c < NY; ++c) {
                const block_q8_K& a = static_cast<const block_q8_K*>(act[c])[ib];
                __m512i sumi = _mm512_setzero_si512();  // pairs in int16: <= 2*63*127, no saturation
                for (int p = 0; p < 4; ++p) sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[p], _mm512_loadu_si512(a.qs + 64 * p)), scp[p]);
                // q - 32: subtract 32 * sum_g scale_g * bsum_g
                const __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums)));
                sumi = _mm512_sub_epi32(sumi, _mm512_castsi256_si512(_mm256_slli_epi32(off, 5)));
                // The super-block's exact integer total, then one fused multiply-add: the
                // float operations of the r16 kernel, so both give the same bits and decode
                // can read these 6.56-bit rows while verification uses the r16 copy.
                acc[c] = std::fma(float(_mm512_reduce_add_epi32(sumi)), d * a.d, acc[c]);
            }
        }
        for (int c = 0; c < NY; ++c) y[c][r] = acc[c];
    }
}

// IQ4_XS for 1..8 tokens in rows_q4_K's shape. The 16 non-linear levels come from one
// in-lane byte shuffle; they are signed, so each pair is |w| x (a with w's sign) in int16
// (|w|, |a| <= 127: at most 32258, no saturation; AVX-512 has no vpsignb, so the sign is a
// masked negate of the activations). The 6-bit sub-block scales (less 32) multiply the
// pairs in int32 (vpdpwssd) and the super-block is converted to float once.
template <int NY, Ahead PF>
void rows_iq4_xs(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    const int64_t nb = k / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i levels = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
    // A 64-byte half block holds sub-blocks 4h..4h+3, 16 bytes each: their low nibbles are
    // weights 0..15 and high nibbles 16..31. Pair registers [lo(s) | hi(s) | lo(s+1) | hi(s+1)]
    // (128-bit lanes, in activation order) are picked from the lo and hi registers by qword.
    const __m512i pick_01 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), pick_23 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    const PairScales pairs;
    for (int64_t r = r0; r < r1; ++r) {
        const auto* blocks = reinterpret_cast<const block_iq4_xs*>(static_cast<const uint8_t*>(w) + size_t(r) * w_stride);
        __m512 acc[NY];
        for (int c = 0; c < NY; ++c) acc[c] = _mm512_setzero_ps();
        for (int64_t ib = 0; ib < nb; ++ib) {
            const block_iq4_xs& b = blocks[ib];
            if constexpr (PF.any()) prefetch_ahead<PF>(&b, sizeof b);
            else _mm_prefetch(reinterpret_cast<const char*>(&blocks[ib + 2]), _MM_HINT_T0);
            // Byte s of ls = scale s: its low nibble is bits 4s..4s+3 of scales_l, its top two
            // bits are bits 2s..2s+1 of scales_h (one bit deposit each).
            uint32_t sl;
            std::memcpy(&sl, b.scales_l, 4);
            const uint64_t ls = _pdep_u64(sl, 0x0F0F0F0F0F0F0F0Full) | _pdep_u64(b.scales_h, 0x3030303030303030ull);
            const __m512i sc16 = _mm512_castsi128_si512(_mm_sub_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(ls))), _mm_set1_epi16(32)));
            __m512i qabs[4], scp[4];
            __mmask64 neg[4];
            for (int h = 0; h < 2; ++h) {
                const __m512i raw = _mm512_loadu_si512(b.qs + 64 * h);
                const __m512i lo = _mm512_shuffle_epi8(levels, _mm512_and_si512(raw, m4));
                const __m512i hi = _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4));
                const __m512i q0 = _mm512_permutex2var_epi64(lo, pick_01, hi), q1 = _mm512_permutex2var_epi64(lo, pick_23, hi);
                qabs[2 * h] = _mm512_abs_epi8(q0), neg[2 * h] = _mm512_movepi8_mask(q0);
                qabs[2 * h + 1] = _mm512_abs_epi8(q1), neg[2 * h + 1] = _mm512_movepi8_mask(q1);
            }
            pairs.spread(sc16, scp);
            const float d = vnni::h2f(b.d);
            for (int c = 0; c < NY; ++c) {
                const block_q8_K& a = static_cast<const block_q8_K*>(act[c])[ib];
                const __m512i sumi = dot_signed_pairs(qabs, neg, scp, a.qs);
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(d * a.d), acc[c]);
            }
        }
        for (int c = 0; c < NY; ++c) y[c][r] = hsum16(acc[c]);
    }
}

}  // namespace gemv

}  // namespace kiln::cpu::KILN_ISA_NS
