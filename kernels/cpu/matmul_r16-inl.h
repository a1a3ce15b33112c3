// Kernels over the row-interleaved r16 layouts (kernels/cpu/r16.h): one 16-row group at a
// time, NY <= 8 tokens per pass. Per 4 weights of 16 rows: one vpdpbusd per token against
// the broadcast activation bytes; per sub-block the int32 sums take their 16 row scales
// (vpmulld); per super-block they become float once. The 16 results of a group are one
// vector store: no horizontal sums. The same kernel serves decode (1 token), speculative
// verification (k + 1 tokens) and prefill (groups of 8 tokens while the group's weights
// stay in L1).
// Included only by isa_avx512.cpp, after matmul_vnni-inl.h.

namespace kiln::cpu::KILN_ISA_NS {

namespace r16 {

inline __m512i bcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
inline __m512 load_f16x16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

// The activation block(s) at act[c][ib] into L1, for each of the NY tokens. Why: a weight
// stream evicts the activation row from L1 between two groups' uses of it once the row is
// large (q8_K of 18944 values: 21.6 KB), and its reloads from L2, waiting in the same miss
// queue as the stream, cost a core a third of its streaming rate (q6_K, k = 18944, one
// core past L3: 22 -> 31 GB/s with this one block ahead).
// Addresses are integers: the block past a row's end is only prefetched, never read (and
// GCC 12 drops the prefetches altogether if an `ib < nb` test guards them).
template <class ActBlock, int NY>
inline void prefetch_act(const void* const* act, int64_t ib) {
    for (int c = 0; c < NY; ++c) {
        const uintptr_t p = reinterpret_cast<uintptr_t>(act[c]) + uintptr_t(ib) * sizeof(ActBlock);
        for (size_t off = 0; off < sizeof(ActBlock); off += 64) _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(p + sizeof(ActBlock) - 1), _MM_HINT_T0);  // the last line (blocks are not line-aligned)
    }
}

// n consecutive 64-byte lines, loaded in address order. Why: the compiler otherwise
// schedules the loads in any order (seen: lines 0, 6, 4, 1, 7, 5, 2, 3), and a decode
// stream read out of order runs ~30% slower on Zen 4 (q6_K, one core, past L3: 22 vs
// 31 GB/s), as if the prefetchers lost the stream. The empty asm pins each load in place.
template <int N>
inline void load_lines_in_order(const uint8_t* p, __m512i* out) {
    for (int j = 0; j < N; ++j) {
        out[j] = _mm512_loadu_si512(p + 64 * j);
        asm volatile("" : "+v"(out[j]));
    }
}

// Part s (of 8) of the next block into L1, so a block of several KB arrives spread over
// the current block's sub-blocks (the hardware prefetchers lag once several tokens' work
// per byte slows the stream down). For 2-8 tokens where the table has no prefetch_ahead
// (Zen 4); with it, the batch kernels prefetch ahead like decode, half as far again
// (kBatchAhead; Zen 5, verifying 4-8 tokens: 1.1B q8_0 +20%, q4_K_M +10%, SmolLM2 q4_1
// +21% at the decode distance).
template <class Block>
inline void prefetch_part(const Block* next, int s) {
    constexpr size_t kPart = (sizeof(Block) + 8 * 64 - 1) / (8 * 64) * 64;  // bytes per part, whole lines
    const char* p = reinterpret_cast<const char*>(next) + size_t(s) * kPart;
    for (size_t off = 0; off < kPart; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

template <int NY, Ahead PF>
void q4_K(int64_t k, const void* w, size_t group_bytes, int64_t g0, int64_t g1, const void* const* act, float* const* y) {
    const int64_t nb = k / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t g = g0; g < g1; ++g) {
        const auto* blocks = reinterpret_cast<const r16_q4_K*>(static_cast<const uint8_t*>(w) + size_t(g) * group_bytes);
        __m512 acc[NY];
        for (int c = 0; c < NY; ++c) acc[c] = _mm512_setzero_ps();
        for (int64_t ib = 0; ib < nb; ++ib) {
            const r16_q4_K& b = blocks[ib];
            prefetch_act<block_q8_K, NY>(act, ib + 1);
            __m512i sumi[NY];
            for (int c = 0; c < NY; ++c) sumi[c] = _mm512_setzero_si512();
            for (int s = 0; s < 8; ++s) {
                if constexpr (NY > 1 && !PF.any()) prefetch_part(&b + 1, s);
                else prefetch_ahead<PF>(reinterpret_cast<const uint8_t*>(&b) + s * sizeof b / 8, sizeof b / 8);
                __m512i wq[8];
                load_lines_in_order<4>(b.qs[s][0], wq + 4);
                for (int ch = 0; ch < 4; ++ch) {
                    wq[ch] = _mm512_and_si512(wq[ch + 4], m4);
                    wq[ch + 4] = _mm512_and_si512(_mm512_srli_epi16(wq[ch + 4], 4), m4);
                }
                const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[s])));
                for (int c = 0; c < NY; ++c) {
                    const int8_t* aq = static_cast<const block_q8_K*>(act[c])[ib].qs + 32 * s;
                    // Two chains of 4 vpdpbusd, not one of 8: each waits for the one before
                    // (5 cycles), and one chain of 8 held a core to ~25 GB/s in L2 (two: 30-35;
                    // the integer sum is the same either way). q6_K keeps its two (per scale).
                    __m512i d0 = _mm512_setzero_si512(), d1 = _mm512_setzero_si512();
                    for (int j = 0; j < 4; ++j) d0 = _mm512_dpbusd_epi32(d0, wq[j], bcast4(aq + 4 * j));
                    for (int j = 4; j < 8; ++j) d1 = _mm512_dpbusd_epi32(d1, wq[j], bcast4(aq + 4 * j));
                    sumi[c] = _mm512_add_epi32(sumi[c], _mm512_mullo_epi32(_mm512_add_epi32(d0, d1), sc));
                }
            }
            // mins: per row, sum over sub-blocks of min x (activation sum of the sub-block),
            // as int16 pairs (sub-blocks 2t, 2t+1) in vpdpwssd.
            __m512i mp[4];
            for (int t = 0; t < 4; ++t) {
                const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.mn[2 * t]));
                const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.mn[2 * t + 1]));
                mp[t] = _mm512_cvtepu8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi)));
            }
            const __m512 d = load_f16x16(b.d), dmin = load_f16x16(b.dmin);
            for (int c = 0; c < NY; ++c) {
                const block_q8_K& a = static_cast<const block_q8_K*>(act[c])[ib];
                const __m128i pairs = _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums)),
                                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums + 8)));
                __m512i summ = _mm512_setzero_si512();
                summ = _mm512_dpwssd_epi32(summ, mp[0], _mm512_set1_epi32(_mm_extract_epi32(pairs, 0)));
                summ = _mm512_dpwssd_epi32(summ, mp[1], _mm512_set1_epi32(_mm_extract_epi32(pairs, 1)));
                summ = _mm512_dpwssd_epi32(summ, mp[2], _mm512_set1_epi32(_mm_extract_epi32(pairs, 2)));
                summ = _mm512_dpwssd_epi32(summ, mp[3], _mm512_set1_epi32(_mm_extract_epi32(pairs, 3)));
                const __m512 da = _mm512_set1_ps(a.d);
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[c]), _mm512_mul_ps(d, da), acc[c]);
                acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(summ), _mm512_mul_ps(dmin, da), acc[c]);
            }
        }
        for (int c = 0; c < NY; ++c) _mm512_storeu_ps(y[c] + g * kR16Rows, acc[c]);
    }
}

// The 16 IQ4 levels + 128 (1..241) in every 128-bit lane: vpdpbusd's unsigned operand.
inline __m512i iq4_levels_u8() {
    const __m128i v = _mm_add_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)), _mm_set1_epi8(char(-128)));
    return _mm512_broadcast_i32x4(v);
}
// The 8 steps of sub-block s of an iq4_xs group as levels + 128.
inline void unpack_iq4(const r16_iq4_xs& b, int s, __m512i levels, __m512i* wq) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    load_lines_in_order<4>(b.qs[s][0], wq + 4);
    for (int ch = 0; ch < 4; ++ch) {
        wq[ch] = _mm512_shuffle_epi8(levels, _mm512_and_si512(wq[ch + 4], m4));
        wq[ch + 4] = _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(wq[ch + 4], 4), m4));
    }
}

// iq4_xs as q4_K, with levels + 128 for weights: the offset comes back out as 128 x each
// row's scales . the sub-block activation sums (int16 pairs in vpdpwssd, as q4_K's mins).
template <int NY, Ahead PF>
void iq4_xs(int64_t k, const void* w, size_t group_bytes, int64_t g0, int64_t g1, const void* const* act, float* const* y) {
    const int64_t nb = k / QK_K;
    const __m512i levels = iq4_levels_u8();
    for (int64_t g = g0; g < g1; ++g) {
        const auto* blocks = reinterpret_cast<const r16_iq4_xs*>(static_cast<const uint8_t*>(w) + size_t(g) * group_bytes);
        __m512 acc[NY];
        for (int c = 0; c < NY; ++c) acc[c] = _mm512_setzero_ps();
        for (int64_t ib = 0; ib < nb; ++ib) {
            const r16_iq4_xs& b = blocks[ib];
            prefetch_act<block_q8_K, NY>(act, ib + 1);
            __m512i sumi[NY];
            for (int c = 0; c < NY; ++c) sumi[c] = _mm512_setzero_si512();
            for (int s = 0; s < 8; ++s) {
                if constexpr (NY > 1 && !PF.any()) prefetch_part(&b + 1, s);
                else prefetch_ahead<PF>(reinterpret_cast<const uint8_t*>(&b) + s * sizeof b / 8, sizeof b / 8);
                __m512i wq[8];
                unpack_iq4(b, s, levels, wq);
                const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[s])));
                for (int c = 0; c < NY; ++c) {
                    const int8_t* aq = static_cast<const block_q8_K*>(act[c])[ib].qs + 32 * s;
                    __m512i d0 = _mm512_setzero_si512(), d1 = _mm512_setzero_si512();  // two chains, as q4_K
                    for (int j = 0; j < 4; ++j) d0 = _mm512_dpbusd_epi32(d0, wq[j], bcast4(aq + 4 * j));
                    for (int j = 4; j < 8; ++j) d1 = _mm512_dpbusd_epi32(d1, wq[j], bcast4(aq + 4 * j));
                    sumi[c] = _mm512_add_epi32(sumi[c], _mm512_mullo_epi32(_mm512_add_epi32(d0, d1), sc));
                }
            }
            __m512i sp[4];  // [t]: per row, the scales of sub-blocks 2t, 2t+1 as an int16 pair
            for (int t = 0; t < 4; ++t) {
                const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[2 * t]));
                const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[2 * t + 1]));
                sp[t] = _mm512_cvtepi8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi)));
            }
            const __m512 d = load_f16x16(b.d);
            for (int c = 0; c < NY; ++c) {
                const block_q8_K& a = static_cast<const block_q8_K*>(act[c])[ib];
                const __m128i pairs = _mm_hadd_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums)),
                                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums + 8)));
                __m512i off = _mm512_setzero_si512();
                off = _mm512_dpwssd_epi32(off, sp[0], _mm512_set1_epi32(_mm_extract_epi32(pairs, 0)));
                off = _mm512_dpwssd_epi32(off, sp[1], _mm512_set1_epi32(_mm_extract_epi32(pairs, 1)));
                off = _mm512_dpwssd_epi32(off, sp[2], _mm512_set1_epi32(_mm_extract_epi32(pairs, 2)));
                off = _mm512_dpwssd_epi32(off, sp[3], _mm512_set1_epi32(_mm_extract_epi32(pairs, 3)));
                const __m512i total = _mm512_sub_epi32(sumi[c], _mm512_slli_epi32(off, 7));
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_mul_ps(d, _mm512_set1_ps(a.d)), acc[c]);
            }
        }
        for (int c = 0; c < NY; ++c) _mm512_storeu_ps(y[c] + g * kR16Rows, acc[c]);
    }
}

// The 8 steps of sub-block s of a q6_K group as bytes 0..63: the nibble (the low or high
// half of a ql byte) or'ed with the step's 2 high bits moved to bits 4-5. The 16-bit
// shifts carry bits across bytes; the masks (0x0F, 0x30) drop them.
inline void unpack_q6(const r16_q6_K& b, int s, __m512i* wq) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
    __m512i v[6];  // ql lines 0..3, qh lines 0..1
    load_lines_in_order<6>(b.sub[s].ql[0], v);
    const __m512i *lo = v, *hi = v + 4;
    for (int h = 0; h < 2; ++h) {
        const __m512i x = hi[h];
        const __m512i top[4] = {_mm512_and_si512(_mm512_slli_epi16(x, 4), m2), _mm512_and_si512(_mm512_slli_epi16(x, 2), m2),
                                _mm512_and_si512(x, m2), _mm512_and_si512(_mm512_srli_epi16(x, 2), m2)};
        for (int c = 0; c < 4; ++c) {
            const __m512i nib = h == 0 ? lo[c] : _mm512_srli_epi16(lo[c], 4);
            wq[4 * h + c] = _mm512_ternarylogic_epi32(nib, top[c], m4, 0xEC);  // (nib & 0x0F) | top
        }
    }
}

template <int NY, Ahead PF>
void q6_K(int64_t k, const void* w, size_t group_bytes, int64_t g0, int64_t g1, const void* const* act, float* const* y) {
    const int64_t nb = k / QK_K;
    for (int64_t g = g0; g < g1; ++g) {
        const auto* blocks = reinterpret_cast<const r16_q6_K*>(static_cast<const uint8_t*>(w) + size_t(g) * group_bytes);
        __m512 acc[NY];
        for (int c = 0; c < NY; ++c) acc[c] = _mm512_setzero_ps();
        for (int64_t ib = 0; ib < nb; ++ib) {
            const r16_q6_K& b = blocks[ib];
            prefetch_act<block_q8_K, NY>(act, ib + 1);
            __m512i sumi[NY];
            for (int c = 0; c < NY; ++c) sumi[c] = _mm512_setzero_si512();
            for (int s = 0; s < 8; ++s) {
                if constexpr (NY > 1 && !PF.any()) prefetch_part(&b + 1, s);
                else prefetch_ahead<PF>(reinterpret_cast<const uint8_t*>(&b) + s * sizeof b / 8, sizeof b / 8);
                __m512i wq[8];
                unpack_q6(b, s, wq);
                const __m512i sc0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[2 * s])));
                const __m512i sc1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[2 * s + 1])));
                for (int c = 0; c < NY; ++c) {
                    const int8_t* aq = static_cast<const block_q8_K*>(act[c])[ib].qs + 32 * s;
                    __m512i d0 = _mm512_setzero_si512(), d1 = _mm512_setzero_si512();
                    for (int j = 0; j < 4; ++j) d0 = _mm512_dpbusd_epi32(d0, wq[j], bcast4(aq + 4 * j));
                    for (int j = 4; j < 8; ++j) d1 = _mm512_dpbusd_epi32(d1, wq[j], bcast4(aq + 4 * j));
                    sumi[c] = _mm512_add_epi32(sumi[c], _mm512_add_epi32(_mm512_mullo_epi32(d0, sc0), _mm512_mullo_epi32(d1, sc1)));
                }
            }
            // q - 32: per row subtract 32 * sum_g scale_g * bsum_g, groups in int16 pairs.
            __m512i sp[8];
            for (int t = 0; t < 8; ++t) {
                const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[2 * t]));
                const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[2 * t + 1]));
                sp[t] = _mm512_cvtepi8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi)));
            }
            const __m512 d = load_f16x16(b.d);
            for (int c = 0; c < NY; ++c) {
                const block_q8_K& a = static_cast<const block_q8_K*>(act[c])[ib];
                int32_t bs[8];
                std::memcpy(bs, a.bsums, sizeof bs);  // (bsum 2t, bsum 2t+1) as one int32
                __m512i off = _mm512_setzero_si512();
                for (int t = 0; t < 8; ++t) off = _mm512_dpwssd_epi32(off, sp[t], _mm512_set1_epi32(bs[t]));
                const __m512i total = _mm512_sub_epi32(sumi[c], _mm512_slli_epi32(off, 5));
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_mul_ps(d, _mm512_set1_ps(a.d)), acc[c]);
            }
        }
        for (int c = 0; c < NY; ++c) _mm512_storeu_ps(y[c] + g * kR16Rows, acc[c]);
    }
}

// The 32-weight formats: weights as unsigned bytes (8 steps of 16 rows x 4), the value
// kZero that stands for 0 (q8_0 stores q + 128; q4_0's nibbles are q + 8, q5_0's 5-bit
// values q + 16), and for q4_1 / q5_1 a per-row min m (w = d q + m).
inline void unpack(const r16_q8_0& b, __m512i* wq) {
    for (int j = 0; j < 8; ++j) wq[j] = _mm512_loadu_si512(b.qs[j]);
}
// q4_0, q4_1, q5_0, q5_1: the nibbles, and for q5 the 5th bits put back as 16 added under
// a byte mask.
template <class Block>
inline void unpack(const Block& b, __m512i* wq) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int c = 0; c < 4; ++c) {
        const __m512i v = _mm512_loadu_si512(b.qs[c]);
        wq[c] = _mm512_and_si512(v, m4);
        wq[c + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    if constexpr (requires { b.qh; }) {
        const __m512i b16 = _mm512_set1_epi8(16);
        for (int j = 0; j < 8; ++j) wq[j] = _mm512_mask_add_epi8(wq[j], _cvtu64_mask64(b.qh[j]), wq[j], b16);
    }
}
template <class Block>
constexpr int32_t kZero = std::is_same_v<Block, r16_q8_0> ? 128 : std::is_same_v<Block, r16_q5_0> ? 16 : std::is_same_v<Block, r16_q4_0> ? 8 : 0;
template <class Block>
constexpr bool kHasMin = requires(Block b) { b.m; };

template <class Block, int NY, Ahead PF>
void blocks32(int64_t k, const void* w, size_t group_bytes, int64_t g0, int64_t g1, const void* const* act, float* const* y) {
    const int64_t nb = k / 32;
    for (int64_t g = g0; g < g1; ++g) {
        const auto* blocks = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w) + size_t(g) * group_bytes);
        __m512 acc[NY];
        for (int c = 0; c < NY; ++c) acc[c] = _mm512_setzero_ps();
        for (int64_t ib = 0; ib < nb; ++ib) {
            const Block& b = blocks[ib];
            prefetch_act<block_q8_x32, NY>(act, ib + 2);
            if constexpr (NY > 1 && !PF.any())  // the block after next, whole
                for (size_t off = 0; off < sizeof(Block); off += 64) _mm_prefetch(reinterpret_cast<const char*>(&b + 2) + off, _MM_HINT_T0);
            else prefetch_ahead<PF>(&b, sizeof b);
            __m512i wq[8];
            unpack(b, wq);
            const __m512 d = load_f16x16(b.d);
            for (int c = 0; c < NY; ++c) {
                const block_q8_x32& a = static_cast<const block_q8_x32*>(act[c])[ib];
                // start at -kZero * sum(a): cancels the weights' offset exactly; two chains as in q4_K
                __m512i d0 = _mm512_set1_epi32(-kZero<Block> * int32_t(a.sum)), d1 = _mm512_setzero_si512();
                for (int j = 0; j < 4; ++j) d0 = _mm512_dpbusd_epi32(d0, wq[j], bcast4(a.qs + 4 * j));
                for (int j = 4; j < 8; ++j) d1 = _mm512_dpbusd_epi32(d1, wq[j], bcast4(a.qs + 4 * j));
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(d0, d1)), _mm512_mul_ps(d, _mm512_set1_ps(a.d)), acc[c]);
                // the mins times the activation sum ggml keeps in fp16 (q8_1's s), as llama.cpp rounds it
                if constexpr (kHasMin<Block>) acc[c] = _mm512_fmadd_ps(load_f16x16(b.m), _mm512_set1_ps(vnni::h2f(a.s)), acc[c]);
            }
        }
        for (int c = 0; c < NY; ++c) _mm512_storeu_ps(y[c] + g * kR16Rows, acc[c]);
    }
}

// The r16 block of a 32-weight format.
template <DType T>
using R16Block = std::conditional_t<T == DType::Q4_0, r16_q4_0,
                 std::conditional_t<T == DType::Q4_1, r16_q4_1,
                 std::conditional_t<T == DType::Q5_0, r16_q5_0, std::conditional_t<T == DType::Q5_1, r16_q5_1, r16_q8_0>>>>;

template <DType T, int NY, Ahead PF>
void group_rows(int64_t k, const void* w, size_t group_bytes, int64_t g0, int64_t g1, const void* const* act, float* const* y) {
    if constexpr (T == DType::Q4_K) q4_K<NY, PF>(k, w, group_bytes, g0, g1, act, y);
    else if constexpr (T == DType::Q6_K) q6_K<NY, PF>(k, w, group_bytes, g0, g1, act, y);
    else if constexpr (T == DType::IQ4_XS) iq4_xs<NY, PF>(k, w, group_bytes, g0, g1, act, y);
    else blocks32<R16Block<T>, NY, PF>(k, w, group_bytes, g0, g1, act, y);
}

// A GEMM panel (gemm_vnni-inl.h) from one r16 group: the rows are already interleaved,
// so this is unpacking nibbles in place and multiplying out the scales, not a transpose.
template <DType T, int G>
void pack_panel_r16(const uint8_t* group, int64_t k, gemm::Panel& p) {
    p.q.resize(size_t(k) * kR16Rows);
    p.scale.resize(size_t(k / G) * kR16Rows);
    p.min.assign(size_t(k / G) * kR16Rows, 0.0f);
    uint8_t* q = p.q.data();
    float *sc = p.scale.data(), *mn = p.min.data();
    if constexpr (T == DType::Q4_K) {
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        for (int64_t ib = 0; ib < k / QK_K; ++ib) {
            const r16_q4_K& b = reinterpret_cast<const r16_q4_K*>(group)[ib];
            const __m512 d = load_f16x16(b.d), dmin = load_f16x16(b.dmin);
            for (int s = 0; s < 8; ++s, q += 8 * 64, sc += 16, mn += 16) {
                for (int c = 0; c < 4; ++c) {
                    const __m512i v = _mm512_loadu_si512(b.qs[s][c]);
                    _mm512_storeu_si512(q + 64 * c, _mm512_and_si512(v, m4));
                    _mm512_storeu_si512(q + 64 * (c + 4), _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
                }
                const __m512 s32 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[s]))));
                const __m512 m32 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.mn[s]))));
                _mm512_storeu_ps(sc, _mm512_mul_ps(d, s32));
                _mm512_storeu_ps(mn, _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, m32)));
            }
        }
    } else if constexpr (T == DType::Q6_K) {
        for (int64_t ib = 0; ib < k / QK_K; ++ib) {
            const r16_q6_K& b = reinterpret_cast<const r16_q6_K*>(group)[ib];
            for (int s = 0; s < 8; ++s) {
                __m512i wq[8];
                unpack_q6(b, s, wq);
                for (int j = 0; j < 8; ++j, q += 64) _mm512_storeu_si512(q, wq[j]);
            }
            const __m512 d = load_f16x16(b.d);
            for (int g = 0; g < 16; ++g, sc += 16, mn += 16) {  // q - 32 as q with a min of -32 x scale
                const __m512 s = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[g])))));
                _mm512_storeu_ps(sc, s);
                _mm512_storeu_ps(mn, _mm512_mul_ps(s, _mm512_set1_ps(-32.0f)));
            }
        }
    } else if constexpr (T == DType::IQ4_XS) {  // signed: stored as levels + 128, as the GEMM stores them
        const __m512i levels = iq4_levels_u8();
        for (int64_t ib = 0; ib < k / QK_K; ++ib) {
            const r16_iq4_xs& b = reinterpret_cast<const r16_iq4_xs*>(group)[ib];
            const __m512 d = load_f16x16(b.d);
            for (int s = 0; s < 8; ++s, sc += 16) {
                __m512i wq[8];
                unpack_iq4(b, s, levels, wq);
                for (int j = 0; j < 8; ++j, q += 64) _mm512_storeu_si512(q, wq[j]);
                _mm512_storeu_ps(sc, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.sc[s]))))));
            }
        }
    } else {  // the 32-weight formats: signed ones (q8_0, q4_0, q5_0) as values + 128, as the
              // GEMM stores its signed formats; q4_1 / q5_1 as they are, with their mins
        using Block = R16Block<T>;
        static_assert(vnni::Dec<T>::kSigned == (kZero<Block> != 0) && vnni::Dec<T>::kMin == kHasMin<Block>);
        const __m512i to_stored = _mm512_set1_epi8(char(kZero<Block> ? 128 - kZero<Block> : 0));
        for (int64_t ib = 0; ib < k / 32; ++ib, sc += 16, mn += 16) {
            const Block& b = reinterpret_cast<const Block*>(group)[ib];
            __m512i wq[8];
            unpack(b, wq);
            for (int j = 0; j < 8; ++j, q += 64) _mm512_storeu_si512(q, _mm512_add_epi8(wq[j], to_stored));
            _mm512_storeu_ps(sc, load_f16x16(b.d));
            if constexpr (kHasMin<Block>) _mm512_storeu_ps(mn, load_f16x16(b.m));
        }
    }
}

// The prefetch distance for 2-8 tokens, from decode's PF: half as far again. Why: a batch
// spends more time per byte, so the stream is slower and each prefetch must be issued
// earlier to cover the same memory latency; 6 KB against 4 KB, verifying 8 tokens on Zen 5
// (alternated every 4 forwards, one process): 1.1B q4_K_M +6%, q8_0 +11% (medians of 8
// blocks). Decode itself gained on the 7B only when bandwidth was high and lost elsewhere.
template <Ahead PF>
constexpr Ahead kBatchAhead{PF.l1 + PF.l1 / 2, PF.l2 + PF.l2 / 2};

// MatmulFn over a repacked tensor: w is the r16 data, w_stride the bytes of one 16-row
// group, r0 and r1 multiples of 16. Up to 8 tokens go through each group with the row
// kernels above (the group's weights come from memory once, from L1 for the other
// passes); larger batches go to the GEMM, with panels unpacked from the groups. PF: the
// one-token weight prefetch distances (prefetch_ahead), none for the hardware prefetchers
// alone; PF_BATCH the ones for 2-8 tokens.
template <DType T, Ahead PF, Ahead PF_BATCH = kBatchAhead<PF>>
void matmul(int64_t k, const void* w, size_t group_bytes, int64_t r0, int64_t r1, const ActRows& a, float* y, size_t y_stride) {
    if (a.ny > 8) {
        constexpr int G = vnni::Dec<T>::kHalvesEqual ? 32 : 16;
        gemm::run<T>(k, r0, r1, a, y, y_stride, [&](int64_t p0, int, gemm::Panel& panel) {
            pack_panel_r16<T, G>(static_cast<const uint8_t*>(w) + size_t(p0 / kR16Rows) * group_bytes, k, panel);
        });
        return;
    }
    constexpr int kCols = 8;
    const void* act[kCols];
    float* out[kCols];
    for (int64_t g = r0 / kR16Rows; g < r1 / kR16Rows; ++g) {
        for (int c0 = 0; c0 < a.ny; c0 += kCols) {
            const int nc = std::min(kCols, a.ny - c0);
            for (int c = 0; c < nc; ++c) {
                act[c] = static_cast<const uint8_t*>(a.data) + size_t(c0 + c) * a.stride;
                out[c] = y + size_t(c0 + c) * y_stride;
            }
            with_token_count(nc, [&](auto ny) { group_rows<T, ny, ny == 1 ? PF : PF_BATCH>(k, w, group_bytes, g, g + 1, act, out); });
        }
    }
}

}  // namespace r16

}  // namespace kiln::cpu::KILN_ISA_NS
