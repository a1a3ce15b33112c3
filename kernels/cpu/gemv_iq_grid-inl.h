// Decode / verification kernels (1..8 tokens) for the lattice formats whose grids fit in
// registers, iq2_xxs, iq3_xxs (8-bit indices), iq2_xs and iq3_s (9-bit), and iq2_s (10-bit,
// half its table from L1), in rows_q4_K's shape (integer sub-block
// scales in vpdpwssd, one float conversion per super-block). What makes them fast is that
// nothing is gathered: 256 grid points fit in 8 registers as 16-bit codes (a 2- or 3-bit
// code per value), looked up 32 at a time by two-register word permutes; vpmultishiftqb
// then moves each value's code to the bottom of its own byte and a byte permute turns codes
// into values. Needs AVX-512 VBMI and BITALG (kiln's AVX-512 level requires them).
// Included only by isa_avx512.cpp, after gemv_kquants-inl.h.

namespace kiln::cpu::KILN_ISA_NS {

namespace gemv {

// A grid's 256 points as codes: value i of a point (of `per_point`, each one of the sorted
// `levels`) in bits `bits` x i.. of its uint16.
template <int N = 256>
struct GridCodes {
    alignas(64) uint16_t code[N];
    GridCodes(const uint8_t* grid, int per_point, int bits, const uint8_t* levels, int n_levels) {
        for (int e = 0; e < N; ++e) {
            code[e] = 0;
            for (int i = 0; i < per_point; ++i) {
                int c = 0;
                while (c + 1 < n_levels && levels[c] != grid[per_point * e + i]) ++c;
                code[e] = uint16_t(code[e] | c << (bits * i));
            }
        }
    }
};

// The codes of 32 points (word indices 0..255) from the 8 table registers: four 64-entry
// permutes, the index's bits 6 and 7 choosing among them.
inline __m512i grid_lookup(const __m512i* table, __m512i idx) {
    const __mmask32 b6 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(64)), b7 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(128));
    const __m512i lo = _mm512_mask_blend_epi16(b6, _mm512_permutex2var_epi16(table[0], idx, table[1]), _mm512_permutex2var_epi16(table[2], idx, table[3]));
    const __m512i hi = _mm512_mask_blend_epi16(b6, _mm512_permutex2var_epi16(table[4], idx, table[5]), _mm512_permutex2var_epi16(table[6], idx, table[7]));
    return _mm512_mask_blend_epi16(b7, lo, hi);
}

// The same for 512 points (9-bit indices) in 16 registers: eight permutes, bit 8 choosing
// between the two halves' results.
inline __m512i grid_lookup512(const __m512i* table, __m512i idx) {
    return _mm512_mask_blend_epi16(_mm512_test_epi16_mask(idx, _mm512_set1_epi16(256)), grid_lookup(table, idx), grid_lookup(table + 8, idx));
}

// The signs of a super-block whose 8 sub-blocks each keep a 32-bit word of 4 x 7 sign bits
// (ggml's ksigns: the 8th bit makes the count of negatives even) and a 4-bit scale on top:
// vpmultishiftqb cuts out the 7-bit fields, vpopcntb gives each one's parity, which sets its
// 8th bit; the 32 sign bytes (one per 8 weights) are transposed so that qword q holds those
// of groups q, 8 + q, 16 + q, 24 + q, and vpshufbitqmb with selectors 8j + i in every qword
// gives 64-weight chunk j's mask (bit 8q + i: weight i of group 8j + q).
struct EvenSigns {
    __m512i cut7, transpose, bit_select[4];
    EvenSigns() {
        alignas(64) uint8_t cut[64], tr[64];
        for (int i = 0; i < 64; ++i) cut[i] = uint8_t(i % 8 < 4 ? 7 * (i % 8) : 32 + 7 * (i % 8 - 4));  // 2 sign words per qword
        for (int i = 0; i < 64; ++i) tr[i] = uint8_t(i % 8 < 4 ? 8 * (i % 8) + i / 8 : 0);
        cut7 = _mm512_load_si512(cut), transpose = _mm512_load_si512(tr);
        for (int j = 0; j < 4; ++j) bit_select[j] = _mm512_set1_epi64(int64_t(0x0706050403020100ull + 0x0808080808080808ull * uint64_t(j)));
    }
    // aux: the 8 sign words in dwords 0..7. neg[j]: set bits negate weights of chunk j.
    void masks(__m512i aux, __mmask64* neg) const { masks_of_fields(_mm512_and_si512(_mm512_multishift_epi64_epi8(cut7, aux), _mm512_set1_epi8(127)), neg); }
    // The same from the 32 7-bit fields as bytes (group order, low 256 bits).
    void masks_of_fields(__m512i fields, __mmask64* neg) const {
        const __mmask64 odd = _mm512_test_epi8_mask(_mm512_popcnt_epi8(fields), _mm512_set1_epi8(1));
        const __m512i sign_bytes = _mm512_permutexvar_epi8(transpose, _mm512_mask_add_epi8(fields, odd, fields, _mm512_set1_epi8(-128)));
        for (int j = 0; j < 4; ++j) neg[j] = _mm512_bitshuffle_epi64_mask(sign_bytes, bit_select[j]);
    }
    // The 4-bit scales s on top of the sign words as the odd integers 2s + 1, int16 (low 128 bits).
    static __m512i odd_scales(__m512i aux) {
        const __m256i top = _mm256_srli_epi32(_mm512_castsi512_si256(aux), 28);
        return _mm512_castsi128_si512(_mm256_cvtepi32_epi16(_mm256_add_epi32(_mm256_add_epi32(top, top), _mm256_set1_epi32(1))));
    }
};

// A byte permute's table: byte i = levels[i % 2^bits] (the code in a byte's low bits; the
// bits above it, left by vpmultishiftqb, are ignored by taking i modulo 2^bits); codes past
// the n levels never occur and map to 0.
inline __m512i level_table(const uint8_t* levels, int n, int bits) {
    alignas(64) uint8_t t[64];
    for (int i = 0; i < 64; ++i) t[i] = i % (1 << bits) < n ? levels[i % (1 << bits)] : 0;
    return _mm512_load_si512(t);
}

// vpmultishiftqb selectors: byte i of every qword takes the bits from offset off[i].
inline __m512i cut_at(const int* off) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(off[i]) << (8 * i);
    return _mm512_set1_epi64(int64_t(v));
}

// The IQ3 kernels' order of their 64 points: two lookups of 32, register R holding chunks 2R
// and 2R + 1, word 4q + m being point p = 16 j + 2q + m % 2 of chunk j = 2R + m / 2, so qword q
// holds the two points (8 values) of group q of both chunks; chunk j is cut out at bit
// 32 (j % 2). pick[R]: byte-permute indices, the low byte of word wd = byte p of the first
// source, the high byte = byte 64 + p (IQ3_S's 9th bits in the second source; IQ3_XXS
// zeroes it with a mask).
struct Iq3Order {
    __m512i pick[2], cut[2];
    Iq3Order() {
        alignas(64) uint8_t idx[2][64];
        for (int R = 0; R < 2; ++R)
            for (int wd = 0; wd < 32; ++wd) {
                const int q = wd / 4, m = wd % 4, j = 2 * R + m / 2, p = 16 * j + 2 * q + m % 2;
                idx[R][2 * wd] = uint8_t(p), idx[R][2 * wd + 1] = uint8_t(64 + p);
            }
        for (int R = 0; R < 2; ++R) pick[R] = _mm512_load_si512(idx[R]);
        for (int h = 0; h < 2; ++h) {
            const int off[8] = {32 * h, 32 * h + 3, 32 * h + 6, 32 * h + 9, 32 * h + 16, 32 * h + 19, 32 * h + 22, 32 * h + 25};
            cut[h] = cut_at(off);
        }
    }
};

// The super-block loop the kernels share: decode(b, q, neg, scp) gives the unsigned values
// of its 4 chunks of 64, their sign masks and the odd integer scales spread over each
// chunk's int16 pairs (PairScales: a scale per 32; IQ2_XS: per 16), which d x factor turns
// into the format's scales.
template <class Block, int NY, Ahead PF, class Decode>
void rows_signed_grid(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y, float factor,
                      const Decode& decode) {
    const int64_t nb = k / QK_K;
    for (int64_t r = r0; r < r1; ++r) {
        const auto* blocks = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w) + size_t(r) * w_stride);
        __m512 acc[NY];
        for (int c = 0; c < NY; ++c) acc[c] = _mm512_setzero_ps();
        for (int64_t ib = 0; ib < nb; ++ib) {
            const Block& b = blocks[ib];
            if constexpr (PF.any()) prefetch_ahead<PF>(&b, sizeof b);
            else _mm_prefetch(reinterpret_cast<const char*>(&blocks[ib + 2]), _MM_HINT_T0);
            __m512i q[4], scp[4];
            __mmask64 neg[4];
            decode(b, q, neg, scp);
            const float d = vnni::h2f(b.d) * factor;
            for (int c = 0; c < NY; ++c) {
                const block_q8_K& a = static_cast<const block_q8_K*>(act[c])[ib];
                const __m512i sumi = dot_signed_pairs(q, neg, scp, a.qs);
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(d * a.d), acc[c]);
            }
        }
        for (int c = 0; c < NY; ++c) y[c][r] = hsum16(acc[c]);
    }
}

// The IQ2 kernels' point order and decode: looked-up code word 4q + j is point 8j + q, so
// qword q holds point q of each 64-weight chunk j, which one vpmultishiftqb cuts out at bit
// 16j before a byte permute maps codes to the values 8, 25, 43. IQ2_XS and IQ2_S keep 4-bit
// scales per 16 values (8 bytes of nibbles), d (0.5 + s) / 4 = d / 8 x (2s + 1), spread so
// that int16 pair l of chunk j gets the scale of its 16 values (4j + l / 8).
struct Iq2Order {
    static constexpr uint8_t kLevels[3] = {8, 25, 43};
    __m512i levels, cut[4], spread[4];
    Iq2Order() : levels(level_table(kLevels, 3, 2)) {
        alignas(64) uint16_t per16[4][32];
        for (int j = 0; j < 4; ++j) {
            for (int l = 0; l < 32; ++l) per16[j][l] = uint16_t(4 * j + l / 8);
            const int off[8] = {16 * j, 16 * j + 2, 16 * j + 4, 16 * j + 6, 16 * j + 8, 16 * j + 10, 16 * j + 12, 16 * j + 14};
            cut[j] = cut_at(off), spread[j] = _mm512_load_si512(per16[j]);
        }
    }
    // The 4 chunks' unsigned values from the 32 looked-up codes.
    void values(__m512i pts, __m512i* q) const {
        for (int j = 0; j < 4; ++j) q[j] = _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(cut[j], pts), levels);
    }
    // The 16 scales (nibbles, low first) as odd integers 2s + 1 over each chunk's int16 pairs.
    void scales16(const uint8_t* scales, __m512i* scp) const {
        uint64_t sc;
        std::memcpy(&sc, scales, 8);
        const __m128i nib = _mm_unpacklo_epi8(_mm_cvtsi64_si128(int64_t(sc & 0x0F0F0F0F0F0F0F0Full)), _mm_cvtsi64_si128(int64_t((sc >> 4) & 0x0F0F0F0F0F0F0F0Full)));
        const __m256i s16 = _mm256_cvtepu8_epi16(nib);  // the 16 scales, in order
        const __m512i odd = _mm512_castsi256_si512(_mm256_add_epi16(_mm256_add_epi16(s16, s16), _mm256_set1_epi16(1)));
        for (int j = 0; j < 4; ++j) scp[j] = _mm512_permutexvar_epi16(spread[j], odd);
    }
};

// IQ2_XXS: sub-block s is 8 bytes of qs, 4 grid indices then its sign word; a point is 8
// values (8, 25, 43: 2-bit codes). d (0.5 + s) / 4 = d / 8 x (2s + 1). Pairs in int16:
// 2 x 43 x 127, no saturation (q8_K codes stay in [-127, 127], so negating them cannot
// overflow).
template <int NY, Ahead PF>
void rows_iq2_xxs(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    static const GridCodes<> codes(&ref::kIqGrids.iq2xxs[0][0], 8, 2, Iq2Order::kLevels, 3);
    __m512i table[8];  // [t]: the codes of points 32 t .. 32 t + 31
    for (int t = 0; t < 8; ++t) table[t] = _mm512_load_si512(codes.code + 32 * t);
    // Index word wd is point p = 8 (wd % 4) + wd / 4 (Iq2Order), raw byte 8 (p / 4) + p % 4.
    alignas(64) uint8_t idx_bytes[64];
    for (int wd = 0; wd < 32; ++wd) {
        const int p = 8 * (wd % 4) + wd / 4;
        idx_bytes[2 * wd] = uint8_t(8 * (p / 4) + p % 4), idx_bytes[2 * wd + 1] = 0;
    }
    const __m512i pick = _mm512_load_si512(idx_bytes);
    const Iq2Order order;
    const __m512i aux_words = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15);
    const EvenSigns signs;
    const PairScales pairs;
    rows_signed_grid<block_iq2_xxs, NY, PF>(k, w, w_stride, r0, r1, act, y, 0.125f, [&](const block_iq2_xxs& b, __m512i* q, __mmask64* neg, __m512i* scp) {
        const __m512i raw = _mm512_loadu_si512(b.qs);
        const __m512i pts = grid_lookup(table, _mm512_maskz_permutexvar_epi8(0x5555555555555555ull, pick, raw));
        order.values(pts, q);
        const __m512i aux = _mm512_permutexvar_epi32(aux_words, raw);
        signs.masks(aux, neg);
        pairs.spread(EvenSigns::odd_scales(aux), scp);
    });
}

// IQ2_XS: a uint16 per 8 values, the 9-bit grid index below 7 sign bits (parity as
// IQ2_XXS's); 512 points (8, 25, 43: 2-bit codes) in 16 registers; 4-bit scales per 16
// values (Iq2Order::scales16).
template <int NY, Ahead PF>
void rows_iq2_xs(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    static const GridCodes<512> codes(&ref::kIqGrids.iq2xs[0][0], 8, 2, Iq2Order::kLevels, 3);
    __m512i table[16];
    for (int t = 0; t < 16; ++t) table[t] = _mm512_load_si512(codes.code + 32 * t);
    alignas(64) uint16_t points[32];  // index word wd: point 8 (wd % 4) + wd / 4 (Iq2Order)
    for (int wd = 0; wd < 32; ++wd) points[wd] = uint16_t(8 * (wd % 4) + wd / 4);
    const __m512i pick = _mm512_load_si512(points);
    const Iq2Order order;
    const EvenSigns signs;
    rows_signed_grid<block_iq2_xs, NY, PF>(k, w, w_stride, r0, r1, act, y, 0.125f, [&](const block_iq2_xs& b, __m512i* q, __mmask64* neg, __m512i* scp) {
        const __m512i raw = _mm512_loadu_si512(b.qs);  // 32 words, point order
        order.values(grid_lookup512(table, _mm512_and_si512(_mm512_permutexvar_epi16(pick, raw), _mm512_set1_epi16(511))), q);
        signs.masks_of_fields(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srli_epi16(raw, 9))), neg);
        order.scales16(b.scales, scp);
    });
}

// IQ2_S: 10-bit grid indices (low bytes in qs, the top two bits of point p at bits 2 (p % 4)
// of qh[p / 4]), a plain sign byte per 8 values after them (chunk j's mask is the signs'
// 64-bit word j), 4-bit scales per 16 as IQ2_XS's. The 1024 points' codes take 32
// registers' worth: the permutes read half their tables from memory (L1), sixteen per 32
// points, bits 6..9 choosing among the results. Index words in IQ2_XS's order.
template <int NY, Ahead PF>
void rows_iq2_s(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    static const GridCodes<1024> codes(&ref::kIqGrids.iq2s[0][0], 8, 2, Iq2Order::kLevels, 3);
    const auto* table = reinterpret_cast<const __m512i*>(codes.code);  // (32) 32 codes each
    // Word wd is point p = 8 (wd % 4) + wd / 4: low byte qs[p], high byte qh[p / 4] (byte 64 +
    // p / 4 of the two-source permute), whose bits 2 (p % 4).. hold p's top bits.
    alignas(64) uint8_t gather[64];
    alignas(64) uint16_t shift[32];
    for (int wd = 0; wd < 32; ++wd) {
        const int p = 8 * (wd % 4) + wd / 4;
        gather[2 * wd] = uint8_t(p), gather[2 * wd + 1] = uint8_t(64 + p / 4), shift[wd] = uint16_t(2 * (p % 4));
    }
    const __m512i pick = _mm512_load_si512(gather), top_shift = _mm512_load_si512(shift);
    const Iq2Order order;
    rows_signed_grid<block_iq2_s, NY, PF>(k, w, w_stride, r0, r1, act, y, 0.125f, [&](const block_iq2_s& b, __m512i* q, __mmask64* neg, __m512i* scp) {
        const __m512i raw = _mm512_loadu_si512(b.qs), qh = _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qh)));
        const __m512i words = _mm512_permutex2var_epi8(raw, pick, qh);  // qs[p] | qh[p / 4] << 8
        const __m512i idx = _mm512_ternarylogic_epi32(_mm512_and_si512(words, _mm512_set1_epi16(0xFF)),
                                                      _mm512_srlv_epi16(words, top_shift), _mm512_set1_epi16(0x300), 0xF8);  // a | (b & c)
        const __mmask32 b9 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(512));
        order.values(_mm512_mask_blend_epi16(b9, grid_lookup512(table, idx), grid_lookup512(table + 16, idx)), q);
        for (int j = 0; j < 4; ++j) {
            uint64_t m;
            std::memcpy(&m, b.qs + QK_K / 8 + 8 * j, 8);
            neg[j] = _cvtu64_mask64(m);
        }
        order.scales16(b.scales, scp);
    });
}

// IQ3_XXS: 64 grid indices (one per 4 values), then the 8 sign words; a point is 4 values
// (4, 12, ..., 52, 62: 3-bit codes). d (0.5 + s) / 2 = d / 4 x (2s + 1). Pairs in int16:
// 2 x 62 x 127.
template <int NY, Ahead PF>
void rows_iq3_xxs(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    static const uint8_t kLevels[8] = {4, 12, 20, 28, 36, 44, 52, 62};
    static const GridCodes<> codes(&ref::kIqGrids.iq3xxs[0][0], 4, 3, kLevels, 8);
    __m512i table[8];
    for (int t = 0; t < 8; ++t) table[t] = _mm512_load_si512(codes.code + 32 * t);
    const Iq3Order order;
    const __m512i levels = level_table(kLevels, 8, 3);
    const EvenSigns signs;
    const PairScales pairs;
    rows_signed_grid<block_iq3_xxs, NY, PF>(k, w, w_stride, r0, r1, act, y, 0.25f, [&](const block_iq3_xxs& b, __m512i* q, __mmask64* neg, __m512i* scp) {
        const __m512i raw = _mm512_loadu_si512(b.qs);
        for (int R = 0; R < 2; ++R) {
            const __m512i pts = grid_lookup(table, _mm512_maskz_permutexvar_epi8(0x5555555555555555ull, order.pick[R], raw));
            for (int h = 0; h < 2; ++h) q[2 * R + h] = _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(order.cut[h], pts), levels);
        }
        const __m512i aux = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + QK_K / 4)));
        signs.masks(aux, neg);
        pairs.spread(EvenSigns::odd_scales(aux), scp);
    });
}

// IQ3_S: 64 grid indices of 9 bits (low bytes in qs, the 9th bit of point p is bit p of the
// 8 qh bytes), a sign bit per weight (sign byte g = the 8 weights of group g, so chunk j's
// mask is the signs' 64-bit word j), a 4-bit scale per 32: d (1 + 2s). A point is 4 values
// (1, 3, ..., 15: 3-bit codes); the 512 codes take 16 registers. Index words and chunk
// order as rows_iq3_xxs's (Iq3Order); each word's high byte is its 9th bit, spread to bytes
// by vpmovm2b.
template <int NY, Ahead PF>
void rows_iq3_s(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    static const uint8_t kLevels[8] = {1, 3, 5, 7, 9, 11, 13, 15};
    static const GridCodes<512> codes(&ref::kIqGrids.iq3s[0][0], 4, 3, kLevels, 8);
    __m512i table[16];
    for (int t = 0; t < 16; ++t) table[t] = _mm512_load_si512(codes.code + 32 * t);
    const Iq3Order order;
    const __m512i levels = level_table(kLevels, 8, 3);
    const PairScales pairs;
    rows_signed_grid<block_iq3_s, NY, PF>(k, w, w_stride, r0, r1, act, y, 1.0f, [&](const block_iq3_s& b, __m512i* q, __mmask64* neg, __m512i* scp) {
        const __m512i low = _mm512_loadu_si512(b.qs);
        uint64_t qh, sg[4];
        std::memcpy(&qh, b.qh, 8);
        std::memcpy(sg, b.signs, 32);
        const __m512i ninth = _mm512_abs_epi8(_mm512_movm_epi8(_cvtu64_mask64(qh)));  // byte p: 1 if point p's 9th bit is set
        for (int R = 0; R < 2; ++R) {
            const __m512i pts = grid_lookup512(table, _mm512_permutex2var_epi8(low, order.pick[R], ninth));
            for (int h = 0; h < 2; ++h) q[2 * R + h] = _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(order.cut[h], pts), levels);
        }
        for (int j = 0; j < 4; ++j) neg[j] = _cvtu64_mask64(sg[j]);
        uint32_t sc;
        std::memcpy(&sc, b.scales, 4);
        const __m128i nib = _mm_unpacklo_epi8(_mm_cvtsi32_si128(int(sc & 0x0F0F0F0F)), _mm_cvtsi32_si128(int((sc >> 4) & 0x0F0F0F0F)));  // s0..s7
        const __m128i s16 = _mm_cvtepu8_epi16(nib);
        pairs.spread(_mm512_castsi128_si512(_mm_add_epi16(_mm_add_epi16(s16, s16), _mm_set1_epi16(1))), scp);
    });
}

}  // namespace gemv

}  // namespace kiln::cpu::KILN_ISA_NS
