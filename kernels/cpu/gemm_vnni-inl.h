// Prefill GEMM with AVX-512 VNNI: weights are repacked on the fly, 16 rows at a time, into
// a row-interleaved int8 panel (one zmm = 4 consecutive k of all 16 rows), so one
// vpdpbusd against 4 broadcast activation bytes updates 16 rows of one token at once and
// no horizontal sums are needed. The panel (16 x K bytes plus per-group scales) stays in
// L2 while every token of the batch streams past it; the weights in the file stay
// untouched (mmap works, nothing is repacked at load time).
//
// Blocks decode through the same Dec<T> as the row kernels (matmul_vnni-inl.h): unsigned
// bytes with per-half scales and mins, or signed bytes (q8_0, q4_0, q5_0) which are stored
// as q + 128 with the integer accumulator starting at -128 * sum(activation bytes), which
// cancels the offset exactly. Formats with one scale per 32 (kHalvesEqual) convert the
// integer sums to float once per 32, the others once per 16.
// Included only by isa_avx512.cpp, after matmul_vnni-inl.h.

namespace kiln::cpu::KILN_ISA_NS {

namespace gemm {

constexpr int kRows = 16;  // rows per panel: the 16 int32 lanes of a zmm
constexpr int kCols = 8;   // tokens per micro-kernel call: 8 int + 8 float accumulators

// One 16-row panel: q (K/4, 16, 4) bytes; scale and min (K/G, 16) floats.
struct Panel {
    std::vector<uint8_t> q;
    std::vector<float> scale, min;
};

template <DType T, int G>
void pack_panel(const void* w, size_t w_stride, int64_t r0, int rows, int64_t k, Panel& p) {
    using D = vnni::Dec<T>;
    const int64_t n_blocks = k / (32 * D::kSub);
    p.q.resize(size_t(k) * kRows);
    p.scale.assign(size_t(k / G) * kRows, 0.0f);  // padding rows: scale 0
    p.min.assign(size_t(k / G) * kRows, 0.0f);
    uint8_t* q = p.q.data();
    alignas(32) uint8_t tmp[32];
    alignas(32) float sc[8];
    for (int r = 0; r < rows; ++r) {
        const auto* blocks = reinterpret_cast<const typename D::Block*>(static_cast<const uint8_t*>(w) + size_t(r0 + r) * w_stride);
        for (int64_t ib = 0; ib < n_blocks; ++ib) {
            const D dec(blocks[ib]);
            for (int s = 0; s < D::kSub; ++s) {
                const vnni::Sub sub = dec.decode(s);
                const __m256i qu = D::kSigned ? _mm256_xor_si256(sub.q, _mm256_set1_epi8(char(0x80))) : sub.q;
                _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), qu);
                const int64_t k0 = (ib * D::kSub + s) * 32;
                for (int d = 0; d < 8; ++d) std::memcpy(q + ((k0 / 4 + d) * kRows + r) * 4, tmp + 4 * d, 4);
                _mm256_store_ps(sc, sub.scale);
                p.scale[size_t((k0 / G) * kRows + r)] = sc[0];
                p.min[size_t((k0 / G) * kRows + r)] = sub.min0;
                if constexpr (G == 16) {
                    p.scale[size_t((k0 / G + 1) * kRows + r)] = sc[4];
                    p.min[size_t((k0 / G + 1) * kRows + r)] = sub.min1;
                }
            }
        }
    }
    for (int r = rows; r < kRows; ++r)  // padding rows decode to 0 whatever the offset
        for (int64_t d = 0; d < k / 4; ++d) std::memset(q + (d * kRows + r) * 4, D::kSigned ? 128 : 0, 4);
}

// The activations of up to kCols tokens, interleaved in the order the micro-kernel reads
// them, so one pointer per stream addresses every token (no per-token pointers spilling
// out of registers): per group of G k, the 4-byte steps of each token, then per group
// each token's scale, integer offset (signed formats) and real-valued sum (mins).
struct ActPanel {
    int nc = 0;
    std::vector<int32_t> q4;      // (K/G, G/4, nc) 4 activation bytes
    std::vector<float> d;         // (K/G, nc)
    std::vector<int32_t> offset;  // (K/G, nc) -128 * sum of the group's bytes, or 0
    std::vector<float> real_sum;  // (K/G, nc)
};

template <int G>
void pack_tokens(const ActRows& a, int c0, int nc, bool q8k, bool is_signed, int64_t k, ActPanel& t) {
    const int64_t ng = k / G;
    t.nc = nc;
    t.q4.resize(size_t(k / 4) * size_t(nc));
    t.d.resize(size_t(ng) * size_t(nc));
    t.offset.resize(size_t(ng) * size_t(nc));
    t.real_sum.resize(size_t(ng) * size_t(nc));
    for (int c = 0; c < nc; ++c) {
        const void* row = static_cast<const uint8_t*>(a.data) + size_t(c0 + c) * a.stride;
        for (int64_t g = 0; g < ng; ++g) {
            const int8_t* src;
            float d, real;
            if (q8k) {
                const auto& b = static_cast<const block_q8_K*>(row)[g * G / QK_K];
                const int j = int(g * G % QK_K) / 16;  // first 16-sum of the group
                src = b.qs + (g * G % QK_K);
                d = b.d;
                real = b.d * float(G == 32 ? b.bsums[j] + b.bsums[j + 1] : b.bsums[j]);
            } else {
                // 32-wide formats: one min per block, multiplying ggml's fp16-rounded scaled sum.
                const auto& b = static_cast<const block_q8_x32*>(row)[g * G / 32];
                src = b.qs + (g * G % 32);
                d = b.d;
                real = (g * G) % 32 == 0 ? fp16_to_fp32(b.s) : 0.0f;
            }
            int32_t sum = 0;
            for (int i = 0; i < G; ++i) sum += src[i];
            for (int j = 0; j < G / 4; ++j) std::memcpy(&t.q4[size_t((g * (G / 4) + j) * nc + c)], src + 4 * j, 4);
            t.d[size_t(g * nc + c)] = d;
            t.offset[size_t(g * nc + c)] = is_signed ? -128 * sum : 0;
            t.real_sum[size_t(g * nc + c)] = real;
        }
    }
}

// y[c][r0 .. r0+rows) for NC tokens against one panel.
template <int NC, int G, bool kMin>
void micro_kernel(const Panel& p, int64_t k, const ActPanel& t, float* y, size_t y_stride, int rows) {
    __m512 facc[NC];
    for (int c = 0; c < NC; ++c) facc[c] = _mm512_setzero_ps();
    const int64_t ng = k / G;
    const uint8_t* q = p.q.data();
    const int32_t* a4 = t.q4.data();
    const float* ad = t.d.data();
    const int32_t* aoff = t.offset.data();
    const float* areal = t.real_sum.data();
    const float* sc = p.scale.data();
    const float* mn = p.min.data();
    for (int64_t g = 0; g < ng; ++g, ad += NC, aoff += NC, areal += NC, sc += kRows, mn += kRows) {
        __m512i acc[NC];
        for (int c = 0; c < NC; ++c) acc[c] = _mm512_set1_epi32(aoff[c]);
        for (int j = 0; j < G / 4; ++j, q += kRows * 4, a4 += NC) {  // steps of 4 k
            const __m512i wv = _mm512_loadu_si512(q);
            for (int c = 0; c < NC; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], wv, _mm512_set1_epi32(a4[c]));
        }
        const __m512 sv = _mm512_loadu_ps(sc);
        for (int c = 0; c < NC; ++c) facc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[c]), _mm512_mul_ps(sv, _mm512_set1_ps(ad[c])), facc[c]);
        if constexpr (kMin) {
            const __m512 mv = _mm512_loadu_ps(mn);
            for (int c = 0; c < NC; ++c) facc[c] = _mm512_fmadd_ps(mv, _mm512_set1_ps(areal[c]), facc[c]);
        }
    }
    const __mmask16 m = __mmask16((1u << rows) - 1);
    for (int c = 0; c < NC; ++c) _mm512_mask_storeu_ps(y + size_t(c) * y_stride, m, facc[c]);
}

template <int G, bool kMin>
void run_panel(const Panel& panel, int64_t k, const ActPanel& t, float* y, size_t y_stride, int rows) {
    with_token_count(t.nc, [&](auto nc) { micro_kernel<nc, G, kMin>(panel, k, t, y, y_stride, rows); });
}

// The GEMM over rows [r0, r1): fill(p0, rows, panel) provides each 16-row panel.
template <DType T, class Fill>
void run(int64_t k, int64_t r0, int64_t r1, const ActRows& a, float* y, size_t y_stride, Fill&& fill) {
    using D = vnni::Dec<T>;
    constexpr int G = D::kHalvesEqual ? 32 : 16;
    static thread_local Panel panel;
    static thread_local std::vector<ActPanel> groups;
    // What `groups` holds: packing the tokens costs about as much as a chunk of 4 panels
    // of a small matrix, so the other chunks and matrices of one linear_group reuse them.
    struct Key {
        uint64_t id;
        const void* data;
        int ny;
        int64_t k;
        int g;
        bool q8k, is_signed;
        bool operator==(const Key&) const = default;
    };
    static thread_local Key packed{};
    const Key key{a.id, a.data, a.ny, k, G, D::kSub == 8, D::kSigned};
    const int n_groups = (a.ny + kCols - 1) / kCols;
    if (a.id == 0 || key != packed) {
        if (groups.size() < size_t(n_groups)) groups.resize(size_t(n_groups));
        for (int gi = 0; gi < n_groups; ++gi)
            pack_tokens<G>(a, gi * kCols, std::min(kCols, a.ny - gi * kCols), key.q8k, key.is_signed, k, groups[size_t(gi)]);
        packed = key;
    }
    for (int64_t p0 = r0; p0 < r1; p0 += kRows) {
        const int rows = int(std::min<int64_t>(kRows, r1 - p0));
        fill(p0, rows, panel);
        for (int gi = 0; gi < n_groups; ++gi)
            run_panel<G, D::kMin>(panel, k, groups[size_t(gi)], y + size_t(gi * kCols) * y_stride + size_t(p0), y_stride, rows);
    }
}

template <DType T>
void matmul(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const ActRows& a, float* y, size_t y_stride) {
    constexpr int G = vnni::Dec<T>::kHalvesEqual ? 32 : 16;
    run<T>(k, r0, r1, a, y, y_stride, [&](int64_t p0, int rows, Panel& panel) { pack_panel<T, G>(w, w_stride, p0, rows, k, panel); });
}

}  // namespace gemm

}  // namespace kiln::cpu::KILN_ISA_NS
