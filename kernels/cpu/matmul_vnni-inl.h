// Quantized matmul with AVX-512 VNNI (vpdpbusd on 256-bit registers: Zen 4 splits 512-bit
// ops in two anyway, and 32 bytes is one sub-block). Same math as matmul_portable-inl.h:
// each 32-weight sub-block is unpacked once into 32 unsigned bytes plus per-half float
// scales and mins, then dotted with up to kMaxCols activation rows, so the unpack cost
// is shared by every row of a verification batch or prefill tile.
// Included only by isa_avx512.cpp.

namespace kiln::cpu::KILN_ISA_NS {

// How far ahead of its loads a kernel prefetches its weight stream, in bytes: into L1
// (l1) and, farther, into L2 (l2); 0: not at all.
struct Ahead {
    int l1 = 0, l2 = 0;
    constexpr bool any() const { return l1 > 0 || l2 > 0; }
};

// Bytes [p + PF.l1, p + PF.l1 + n) into L1 and [p + PF.l2, p + PF.l2 + n) into L2, whole
// lines: a decode's weight stream prefetched ahead of its loads (the r16 kernels for 1-8
// tokens, the original-row kernels).
// Why: on Zen 5 the hardware prefetchers alone leave a core's decode stream latency-bound
// (r16 q4_K, one core past L3: 17 GB/s, where a bare read loop reaches 34); 4 KB ahead it
// runs at 30-36, two cores at 57-76 against 70 for the probe. On Zen 4 prefetching ahead
// measured 5-25% slower (stop 19), so the table picks by CPU (dispatch.cpp). On an Intel
// Xeon (Emerald Rapids) the L1 prefetch alone still leaves the stream latency-bound (7B,
// two cores: 74-76% of the probe); a second stream of prefetches 32 KB ahead into L2
// (prefetcht1) keeps more lines in flight: decode +10-12%, 82-88%. The addresses are
// integers: a prefetch past the end of the weights is harmless. Each line is prefetched
// once, by the piece its first byte falls in (the pieces follow each other: sub-blocks,
// blocks). Why: rounding each piece's start down re-prefetched the line two pieces share
// (q4_K's 288-byte sub-blocks end mid-line), a quarter more prefetches, and the kernel
// kept further behind a bare prefetched read loop (scratch A/B, r16 q4_K and q6_K, 2
// threads, 1 GiB, alternating with the loop: median 0.90 -> 0.94 of it, 7 of 8 rounds up).
template <Ahead PF>
inline void prefetch_ahead(const void* p, size_t n) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if constexpr (PF.l1 > 0)
        for (uintptr_t line = (a + PF.l1 + 63) & ~uintptr_t(63); line < a + PF.l1 + n; line += 64) _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T0);
    if constexpr (PF.l2 > 0)
        for (uintptr_t line = (a + PF.l2 + 63) & ~uintptr_t(63); line < a + PF.l2 + n; line += 64) _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T1);
}

namespace vnni {

// fp16 -> fp32 with F16C (the portable fp16_to_fp32 branches on subnormals).
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline __m256i nibbles_lo(__m256i x) { return _mm256_and_si256(x, _mm256_set1_epi8(0x0F)); }
inline __m256i nibbles_hi(__m256i x) { return _mm256_and_si256(_mm256_srli_epi16(x, 4), _mm256_set1_epi8(0x0F)); }
// 16 packed bytes -> 32 nibbles: low nibbles are elements 0..15, high nibbles 16..31.
inline __m256i expand_nibbles16(const uint8_t* p) {
    __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(0x0F));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F));
    return _mm256_set_m128i(hi, lo);
}
// 0x10 in byte j where bit j of the 32-bit word is set (q5 high bits), one masked move.
inline __m256i bits_to_0x10(uint32_t bits) { return _mm256_maskz_mov_epi8(__mmask32(bits), _mm256_set1_epi8(0x10)); }
inline __m256 two_halves(float s0, float s1) { return _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0)); }
inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// A decoded sub-block: unsigned weights (or signed for q8_0), per-lane scales, mins.
struct Sub {
    __m256i q;
    __m256 scale;      // lanes 0-3: half 0, lanes 4-7: half 1
    float min0, min1;  // coefficients of the activation half sums
};

// Per-format decoders: kSub sub-blocks per block; decode(b, s) for s in [0, kSub).
template <DType T>
struct Dec;

template <>
struct Dec<DType::Q4_0> {
    using Block = block_q4_0;
    static constexpr int kSub = 1;
    static constexpr bool kSigned = true, kMin = false;  // q - 8, exact in integers as ggml's q4_0 x q8_0
    static constexpr bool kHalvesEqual = true;  // one scale and min per 32
    explicit Dec(const Block& b) : b_(b) {}
    Sub decode(int) const {
        return {_mm256_sub_epi8(expand_nibbles16(b_.qs), _mm256_set1_epi8(8)), _mm256_set1_ps(h2f(b_.d)), 0, 0};
    }
    const Block& b_;
};

template <>
struct Dec<DType::Q4_1> {
    using Block = block_q4_1;
    static constexpr int kSub = 1;
    static constexpr bool kSigned = false, kMin = true;
    static constexpr bool kHalvesEqual = true;  // one scale and min per 32
    explicit Dec(const Block& b) : b_(b) {}
    Sub decode(int) const {
        const float m = h2f(b_.m);
        return {expand_nibbles16(b_.qs), _mm256_set1_ps(h2f(b_.d)), m, m};
    }
    const Block& b_;
};

template <>
struct Dec<DType::Q5_0> {
    using Block = block_q5_0;
    static constexpr int kSub = 1;
    static constexpr bool kSigned = true, kMin = false;  // q - 16, exact in integers
    static constexpr bool kHalvesEqual = true;  // one scale and min per 32
    explicit Dec(const Block& b) : b_(b) {}
    Sub decode(int) const {
        uint32_t qh;
        std::memcpy(&qh, b_.qh, 4);
        const __m256i q = _mm256_or_si256(expand_nibbles16(b_.qs), bits_to_0x10(qh));
        return {_mm256_sub_epi8(q, _mm256_set1_epi8(16)), _mm256_set1_ps(h2f(b_.d)), 0, 0};
    }
    const Block& b_;
};

template <>
struct Dec<DType::Q5_1> {
    using Block = block_q5_1;
    static constexpr int kSub = 1;
    static constexpr bool kSigned = false, kMin = true;
    static constexpr bool kHalvesEqual = true;  // one scale and min per 32
    explicit Dec(const Block& b) : b_(b) {}
    Sub decode(int) const {
        uint32_t qh;
        std::memcpy(&qh, b_.qh, 4);
        const float m = h2f(b_.m);
        return {_mm256_or_si256(expand_nibbles16(b_.qs), bits_to_0x10(qh)), _mm256_set1_ps(h2f(b_.d)), m, m};
    }
    const Block& b_;
};

template <>
struct Dec<DType::Q8_0> {
    using Block = block_q8_0;
    static constexpr int kSub = 1;
    static constexpr bool kSigned = true, kMin = false;
    static constexpr bool kHalvesEqual = true;  // one scale and min per 32
    explicit Dec(const Block& b) : b_(b) {}
    Sub decode(int) const {
        return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b_.qs)), _mm256_set1_ps(h2f(b_.d)), 0, 0};
    }
    const Block& b_;
};

// q4_K / q5_K: 8 sub-blocks of 32 with 6-bit (scale, min) pairs, decoded once per block.
struct KScaleMin {
    float scale[8], min[8];
    KScaleMin(uint16_t d16, uint16_t dmin16, const uint8_t* packed) {
        const float d = h2f(d16), dmin = h2f(dmin16);
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            k4_scale_min(j, packed, &sc, &m);
            scale[j] = d * float(sc);
            min[j] = -dmin * float(m);
        }
    }
    // Sub-block s of a 128-byte nibble array: low nibbles of 32 bytes, then their high nibbles.
    Sub nibbles(const uint8_t* qs, int s) const {
        __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * (s / 2)));
        return {s % 2 ? nibbles_hi(raw) : nibbles_lo(raw), _mm256_set1_ps(scale[s]), min[s], min[s]};
    }
};

template <>
struct Dec<DType::Q4_K> {
    using Block = block_q4_K;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = false, kMin = true;
    static constexpr bool kHalvesEqual = true;  // one scale and min per 32
    explicit Dec(const Block& b) : b_(b), sm_(b.d, b.dmin, b.scales) {}
    Sub decode(int s) const { return sm_.nibbles(b_.qs, s); }
    const Block& b_;
    KScaleMin sm_;
};

template <>
struct Dec<DType::Q5_K> {
    using Block = block_q5_K;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = false, kMin = true;
    static constexpr bool kHalvesEqual = true;  // one scale and min per 32
    explicit Dec(const Block& b) : b_(b), sm_(b.d, b.dmin, b.scales), qh_(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh))) {}
    Sub decode(int s) const {
        Sub r = sm_.nibbles(b_.qs, s);
        // Bit s of qh byte l is the 5th bit of element l of sub-block s.
        __mmask32 hb = _mm256_test_epi8_mask(qh_, _mm256_set1_epi8(char(1 << s)));
        r.q = _mm256_or_si256(r.q, _mm256_maskz_mov_epi8(hb, _mm256_set1_epi8(0x10)));
        return r;
    }
    const Block& b_;
    KScaleMin sm_;
    __m256i qh_;
};

template <>
struct Dec<DType::Q6_K> {
    using Block = block_q6_K;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = false, kMin = true;
    static constexpr bool kHalvesEqual = false;  // a scale per 16 weights
    explicit Dec(const Block& b) : b_(b), d_(h2f(b.d)) {}
    Sub decode(int s) const {
        const int half = s / 4, t = s % 4;
        __m256i ql = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b_.ql + 64 * half + 32 * (t & 1)));
        __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b_.qh + 32 * half));
        __m256i lo = t >> 1 ? nibbles_hi(ql) : nibbles_lo(ql);
        // ((qh >> 2t) & 3) << 4, done on 16-bit lanes then masked per byte.
        __m256i hi = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * t), 4), _mm256_set1_epi8(0x30));
        const float s0 = d_ * float(b_.scales[8 * half + 2 * t]), s1 = d_ * float(b_.scales[8 * half + 2 * t + 1]);
        return {_mm256_or_si256(lo, hi), two_halves(s0, s1), -32 * s0, -32 * s1};  // q - 32 as q with a min
    }
    const Block& b_;
    float d_;
};

template <>
struct Dec<DType::Q3_K> {
    using Block = block_q3_K;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = false, kMin = true;
    static constexpr bool kHalvesEqual = false;  // a scale per 16 weights
    explicit Dec(const Block& b) : b_(b), d_(h2f(b.d)), hm_(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask))) {}
    Sub decode(int s) const {
        __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b_.qs + 32 * (s / 4)));
        __m256i lo = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * (s % 4)), _mm256_set1_epi8(3));
        __mmask32 hb = _mm256_test_epi8_mask(hm_, _mm256_set1_epi8(char(1 << s)));
        // value = low2 - (hbit ? 0 : 4) = (low2 | hbit << 2) - 4
        __m256i q = _mm256_or_si256(lo, _mm256_maskz_mov_epi8(hb, _mm256_set1_epi8(4)));
        const float s0 = d_ * float(WeightFormat<DType::Q3_K>::scale(b_.scales, 2 * s));
        const float s1 = d_ * float(WeightFormat<DType::Q3_K>::scale(b_.scales, 2 * s + 1));
        return {q, two_halves(s0, s1), -4 * s0, -4 * s1};
    }
    const Block& b_;
    float d_;
    __m256i hm_;
};

template <>
struct Dec<DType::Q2_K> {
    using Block = block_q2_K;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = false, kMin = true;
    static constexpr bool kHalvesEqual = false;  // a scale per 16 weights
    explicit Dec(const Block& b) : b_(b), d_(h2f(b.d)), dmin_(h2f(b.dmin)) {}
    Sub decode(int s) const {
        __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b_.qs + 32 * (s / 4)));
        __m256i q = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * (s % 4)), _mm256_set1_epi8(3));
        const uint8_t c0 = b_.scales[2 * s], c1 = b_.scales[2 * s + 1];
        return {q, two_halves(d_ * float(c0 & 0xF), d_ * float(c1 & 0xF)), -dmin_ * float(c0 >> 4), -dmin_ * float(c1 >> 4)};
    }
    const Block& b_;
    float d_, dmin_;
};

// IQ4_NL / IQ4_XS: the 16 non-linear levels looked up by nibble with one in-lane byte
// shuffle (the table is in both 128-bit lanes): signed weights, as q8_0's.
inline __m256i iq4_levels(const uint8_t* qs) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
    return _mm256_shuffle_epi8(table, expand_nibbles16(qs));
}

template <>
struct Dec<DType::IQ4_NL> {
    using Block = block_iq4_nl;
    static constexpr int kSub = 1;
    static constexpr bool kSigned = true, kMin = false;
    static constexpr bool kHalvesEqual = true;  // one scale per 32
    explicit Dec(const Block& b) : b_(b) {}
    Sub decode(int) const { return {iq4_levels(b_.qs), _mm256_set1_ps(h2f(b_.d)), 0, 0}; }
    const Block& b_;
};

template <>
struct Dec<DType::IQ4_XS> {
    using Block = block_iq4_xs;
    static constexpr int kSub = 8;
    static constexpr bool kSigned = true, kMin = false;
    static constexpr bool kHalvesEqual = true;  // one scale per 32
    explicit Dec(const Block& b) : b_(b), d_(h2f(b.d)) {}
    Sub decode(int s) const { return {iq4_levels(b_.qs + 16 * s), _mm256_set1_ps(d_ * float(iq4xs_scale(b_, s))), 0, 0}; }
    const Block& b_;
    float d_;
};

// Activation sub-block access for the two activation formats.
// min_term: the weights' mins times the activation sums, in real units.
struct ActQ8x32 {
    static const int8_t* qs(const void* row, int64_t ib, int) { return static_cast<const block_q8_x32*>(row)[ib].qs; }
    static float d(const void* row, int64_t ib) { return static_cast<const block_q8_x32*>(row)[ib].d; }
    static float min_term(const void* row, int64_t ib, int, float m0, float) {
        return m0 * h2f(static_cast<const block_q8_x32*>(row)[ib].s);  // 32-wide formats: one min
    }
};
struct ActQ8K {
    static const int8_t* qs(const void* row, int64_t ib, int s) { return static_cast<const block_q8_K*>(row)[ib].qs + 32 * s; }
    static float d(const void* row, int64_t ib) { return static_cast<const block_q8_K*>(row)[ib].d; }
    static float min_term(const void* row, int64_t ib, int s, float m0, float m1) {
        const auto& b = static_cast<const block_q8_K*>(row)[ib];
        return b.d * (m0 * float(b.bsums[2 * s]) + m1 * float(b.bsums[2 * s + 1]));
    }
};

// NY activation rows against weight rows [r0, r1).
template <DType T, int NY, Ahead PF>
void matmul_rows(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    using D = Dec<T>;
    using A = std::conditional_t<D::kSub == 8, ActQ8K, ActQ8x32>;
    const int64_t n_blocks = k / (32 * D::kSub);
    for (int64_t r = r0; r < r1; ++r) {
        const auto* blocks = reinterpret_cast<const typename D::Block*>(static_cast<const uint8_t*>(w) + size_t(r) * w_stride);
        __m256 acc[NY];
        float acc_min[NY];
        for (int c = 0; c < NY; ++c) acc[c] = _mm256_setzero_ps(), acc_min[c] = 0;
        for (int64_t ib = 0; ib < n_blocks; ++ib) {
            if constexpr (PF.any()) prefetch_ahead<PF>(&blocks[ib], sizeof blocks[ib]);
            else if (ib + 2 < n_blocks) _mm_prefetch(reinterpret_cast<const char*>(&blocks[ib + 2]), _MM_HINT_T0);
            const D dec(blocks[ib]);
            float da[NY];
            for (int c = 0; c < NY; ++c) da[c] = A::d(act[c], ib);
            for (int s = 0; s < D::kSub; ++s) {
                const Sub sub = dec.decode(s);
                const __m256i qabs = D::kSigned ? _mm256_abs_epi8(sub.q) : sub.q;
                for (int c = 0; c < NY; ++c) {
                    __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(A::qs(act[c], ib, s)));
                    if constexpr (D::kSigned) a = _mm256_sign_epi8(a, sub.q);  // move q's sign onto a: |q| * (a * sign q)
                    const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), qabs, a);
                    acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(sub.scale, _mm256_set1_ps(da[c])), acc[c]);
                    if constexpr (D::kMin) acc_min[c] += A::min_term(act[c], ib, s, sub.min0, sub.min1);
                }
            }
        }
        for (int c = 0; c < NY; ++c) y[c][r] = hsum8(acc[c]) + acc_min[c];
    }
}

template <DType T, int NY, Ahead PF>
void rows(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y);

// PF: the one-token weight prefetch distances (prefetch_ahead), none for the hardware
// prefetchers alone; PF_BATCH the ones for 2-8 tokens.
template <DType T, Ahead PF, Ahead PF_BATCH = PF>
void matmul(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const ActRows& a, float* y, size_t y_stride) {
    constexpr int kMaxCols = 8;  // activation rows per pass: a weight sub-block is decoded once per 8
    const void* act[kMaxCols];
    float* out[kMaxCols];
    for (int c0 = 0; c0 < a.ny; c0 += kMaxCols) {
        const int nc = std::min(kMaxCols, a.ny - c0);
        for (int c = 0; c < nc; ++c) {
            act[c] = static_cast<const uint8_t*>(a.data) + size_t(c0 + c) * a.stride;
            out[c] = y + size_t(c0 + c) * y_stride;
        }
        with_token_count(nc, [&](auto ny) { rows<T, ny, ny == 1 ? PF : PF_BATCH>(k, w, w_stride, r0, r1, act, out); });
    }
}

}  // namespace vnni

}  // namespace kiln::cpu::KILN_ISA_NS
