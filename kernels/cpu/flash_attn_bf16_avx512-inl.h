// BF16 KV cache with AVX-512 BF16 dot products: one vdpbf16ps multiplies 16 lanes of two
// bf16 values each and adds both products to 16 floats, twice the multiply-adds of an
// fp32 FMA, with nothing to convert. Keys are panels of dimension pairs and values
// interleave pairs of positions (kv_layout.h), so
//   scores:  lane = one key,       pair = two dims,      broadcast = two query dims;
//   outputs: lane = one dimension, pair = two positions, broadcast = two probabilities.
// Queries of a BF16 key cache are already bf16 values (prepare_q); the probabilities are
// rounded to bf16 (attn_tile sums the rounded ones, so the weights still add up to one).

namespace kiln::cpu::KILN_ISA_NS {

namespace attn {

constexpr bool kBf16Dot = true;

// 16 floats rounded to bf16 (nearest even) and back.
inline VF round_bf16(VF x) {
    const __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// n floats (a multiple of 16) as bf16, for the broadcast pairs.
inline void pack_bf16(const float* x, int n, uint16_t* out) {
    for (int i = 0; i < n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i))));
}

inline __m512i broadcast_pair(const uint16_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

inline __m512 dot_pairs(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(a), reinterpret_cast<__m512bh>(b));
}

// s[r * s_stride + 16 np + i] = dot(query r, key i of panel np) for NP consecutive BF16
// panels (k_panel bytes apart); q (QB, D) bf16. Each key sums its even and its odd
// dimension pairs in two chains (more independent chains against the 6-cycle latency)
// and adds them at the end, whatever QB and NP are: the scores stay batch-invariant.
// ahead(i) is called once per dimension pair.
template <int QB, int NP, class Prefetch>
inline void bf16_panel_scores(const uint8_t* panel, size_t k_panel, int D, const uint16_t* q, float* s, size_t s_stride, const Prefetch& ahead) {
    __m512 even[QB][NP], odd[QB][NP];
    for (int r = 0; r < QB; ++r)
        for (int np = 0; np < NP; ++np) even[r][np] = odd[r][np] = _mm512_setzero_ps();
    for (int i = 0; i < D / 2; i += 2) {  // D is a multiple of 16
        ahead(i), ahead(i + 1);
        __m512i k0[NP], k1[NP];  // (16 keys, 2 dims) for pairs i and i + 1
        for (int np = 0; np < NP; ++np) {
            k0[np] = _mm512_loadu_si512(panel + np * k_panel + size_t(i) * 64);
            k1[np] = _mm512_loadu_si512(panel + np * k_panel + size_t(i + 1) * 64);
        }
        for (int r = 0; r < QB; ++r) {
            const __m512i q0 = broadcast_pair(q + r * D + 2 * i), q1 = broadcast_pair(q + r * D + 2 * i + 2);
            for (int np = 0; np < NP; ++np) even[r][np] = dot_pairs(even[r][np], k0[np], q0), odd[r][np] = dot_pairs(odd[r][np], k1[np], q1);
        }
    }
    for (int r = 0; r < QB; ++r)
        for (int np = 0; np < NP; ++np) _mm512_storeu_ps(s + r * s_stride + np * kKvPanel, _mm512_add_ps(even[r][np], odd[r][np]));
}

// acc[r] (columns c0 .. c0 + 16 NV) = sum over positions [j0, j1) (j0, j1 even) of
// p[r][j] v[j]; v: the tile's BF16 V rows (pairs interleaved), p (QB, 64) bf16.
template <int QB, int NV>
inline void bf16_pv_block(const uint8_t* v, size_t v_row, int c0, int j0, int j1, const uint16_t* p, float* acc, size_t acc_stride,
                          const RowPrefetch& ahead) {
    __m512 a[QB][NV];
    for (int r = 0; r < QB; ++r)
        for (int n = 0; n < NV; ++n) a[r][n] = _mm512_setzero_ps();
    for (int j = j0; j < j1; j += 2) {
        ahead(j), ahead(j + 1);
        const uint8_t* pair = v + size_t(j) * v_row;  // (Dv, 2) bf16 over rows j and j + 1
        __m512i vv[NV];
        for (int n = 0; n < NV; ++n) vv[n] = _mm512_loadu_si512(pair + size_t(c0 + 16 * n) * 4);
        for (int r = 0; r < QB; ++r) {
            const __m512i pj = broadcast_pair(p + r * kAttnTile + j);
            for (int n = 0; n < NV; ++n) a[r][n] = dot_pairs(a[r][n], vv[n], pj);
        }
    }
    for (int r = 0; r < QB; ++r)
        for (int n = 0; n < NV; ++n) _mm512_storeu_ps(acc + r * acc_stride + c0 + 16 * n, a[r][n]);
}

template <int QB>
inline void bf16_pv_rows(const uint8_t* v, size_t v_row, int Dv, int j0, int j1, const uint16_t* p, float* acc, size_t acc_stride,
                         const RowPrefetch& ahead) {
    int c0 = 0;
    for (; c0 + 64 <= Dv; c0 += 64) bf16_pv_block<QB, 4>(v, v_row, c0, j0, j1, p, acc, acc_stride, c0 == 0 ? ahead : RowPrefetch{});
    const RowPrefetch rest = c0 == 0 ? ahead : RowPrefetch{};
    switch ((Dv - c0) / 16) {  // Dv is a multiple of 16
        case 1: bf16_pv_block<QB, 1>(v, v_row, c0, j0, j1, p, acc, acc_stride, rest); break;
        case 2: bf16_pv_block<QB, 2>(v, v_row, c0, j0, j1, p, acc, acc_stride, rest); break;
        case 3: bf16_pv_block<QB, 3>(v, v_row, c0, j0, j1, p, acc, acc_stride, rest); break;
        default: break;
    }
}

}  // namespace attn

}  // namespace kiln::cpu::KILN_ISA_NS
