// Flash attention on one tile of 64 cached positions of one KV head, for a set of queries
// (the query heads sharing that KV head, times the tokens of the batch): scores, the
// tile's own max and exp-sum, and the un-normalized output sum_j exp(s_j - m) v_j. The
// caller merges tiles in position order (attn_merge), so the full score matrix is never
// materialized and a tile's result does not depend on the other queries it is batched
// with. Needs the TU's attn::quant_panel_scores (VNNI or portable) and f16_to_f32.

namespace kiln::cpu::KILN_ISA_NS {

namespace attn {

// V rows [j0, j1) of the tile as floats, vf (64, Dv).
inline void v_rows_to_f32(DType t, const uint8_t* v, size_t v_row, int j0, int j1, int Dv, float* vf) {
    for (int j = j0; j < j1; ++j) {
        const uint8_t* row = v + size_t(j) * v_row;
        float* out = vf + size_t(j) * Dv;
        if (t == DType::F32) std::memcpy(out, row, sizeof(float) * size_t(Dv));
        else if (t == DType::F16) f16_to_f32(reinterpret_cast<const uint16_t*>(row), out, Dv);
        else if (t == DType::BF16) {
            const uint16_t* h = reinterpret_cast<const uint16_t*>(row);
            for (int i = 0; i < Dv; ++i) out[i] = std::bit_cast<float>(uint32_t(h[i]) << 16);
        } else if (t == DType::Q8_0) {
            const block_q8_0* b = reinterpret_cast<const block_q8_0*>(row);
            for (int i = 0; i < Dv / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                for (int e = 0; e < 32; ++e) out[i * 32 + e] = d * float(b[i].qs[e]);  // vectorizes
            }
        } else {
            const block_q4_0* b = reinterpret_cast<const block_q4_0*>(row);
            for (int i = 0; i < Dv / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                for (int e = 0; e < 16; ++e) {
                    out[i * 32 + e] = d * float((b[i].qs[e] & 0x0F) - 8);
                    out[i * 32 + e + 16] = d * float((b[i].qs[e] >> 4) - 8);
                }
            }
        }
    }
}

// acc[r] (Dv) = sum over j in [j0, j1) of p[r][j] v[j], for NV vectors of columns at c0.
// One FMA chain per output element in j order: exact zeros for masked keys leave it as is.
template <int QB, int NV>
inline void pv_block(const float* vf, int Dv, int c0, int j0, int j1, const float* p, size_t p_stride, float* acc, size_t acc_stride) {
    VF a[QB][NV];
    for (int r = 0; r < QB; ++r)
        for (int v = 0; v < NV; ++v) a[r][v] = VF(0.0f);
    for (int j = j0; j < j1; ++j) {
        VF vv[NV];
        for (int v = 0; v < NV; ++v) vv[v] = VF::load_unaligned(vf + size_t(j) * Dv + c0 + v * kW);
        for (int r = 0; r < QB; ++r) {
            const VF pj(p[r * p_stride + j]);
            for (int v = 0; v < NV; ++v) a[r][v] = xsimd::fma(pj, vv[v], a[r][v]);
        }
    }
    for (int r = 0; r < QB; ++r)
        for (int v = 0; v < NV; ++v) a[r][v].store_unaligned(acc + r * acc_stride + c0 + v * kW);
}

template <int QB>
inline void pv_rows(const float* vf, int Dv, int j0, int j1, const float* p, size_t p_stride, float* acc, size_t acc_stride) {
    constexpr int kChunk = 64 / kW;  // vectors per 64 output columns
    int c0 = 0;
    for (; c0 + 64 <= Dv; c0 += 64) pv_block<QB, kChunk>(vf, Dv, c0, j0, j1, p, p_stride, acc, acc_stride);
    switch ((Dv - c0) / 16) {  // Dv is a multiple of 16 (checked by the session)
        case 1: pv_block<QB, 16 / kW>(vf, Dv, c0, j0, j1, p, p_stride, acc, acc_stride); break;
        case 2: pv_block<QB, 32 / kW>(vf, Dv, c0, j0, j1, p, p_stride, acc, acc_stride); break;
        case 3: pv_block<QB, 48 / kW>(vf, Dv, c0, j0, j1, p, p_stride, acc, acc_stride); break;
        default: break;
    }
}

// Calls f(integral_constant<QB>) for row blocks of at most kMax rows: f(r0, QB).
template <int kMax, class F>
inline void row_blocks(int n, F&& f) {
    int r0 = 0;
    for (; r0 + kMax <= n; r0 += kMax) f(r0, std::integral_constant<int, kMax>{});
    if (r0 < n) with_token_count(n - r0, [&](auto qb) { f(r0, qb); });
}

inline void attn_tile(const AttnTile& a) {
    const int nq = a.nq, D = a.D, Dv = a.Dv;
    const bool quant_k = a.k_type == DType::Q8_0 || a.k_type == DType::Q4_0;
    // scratch: scores (nq, 64) | kf (D, 16) one panel's keys | vf (64, Dv) the tile's values
    float* scores = a.scratch;
    float* kf = scores + size_t(nq) * kAttnTile;
    float* vf = kf + size_t(D) * kKvPanel;
    int jmin = kAttnTile, jmax = 0;
    for (int r = 0; r < nq; ++r) jmin = std::min(jmin, a.lo[r]), jmax = std::max(jmax, a.hi[r]);
    const int p0 = jmin / kKvPanel, p1 = (jmax + kKvPanel - 1) / kKvPanel;  // panels with any valid key

    // ---- scores (nq, 64) for the panels in use ----
    for (int p = p0; p < p1; ++p) {
        const uint8_t* panel = a.k + size_t(p) * a.k_panel;
        if (!quant_k) k_panel_to_f32(a.k_type, panel, D, kf);
        row_blocks<8>(nq, [&](int r0, auto qb) {
            constexpr int QB = decltype(qb)::value;
            float* s = scores + size_t(r0) * kAttnTile + p * kKvPanel;
            if (quant_k) quant_panel_scores<QB>(a.k_type, panel, D, reinterpret_cast<const AttnQ8* const*>(a.q + r0), s, kAttnTile);
            else float_panel_scores<QB>(kf, D, reinterpret_cast<const float* const*>(a.q + r0), s, kAttnTile);
        });
    }

    // ---- per query: mask, max, exp, sum ----
    for (int r = 0; r < nq; ++r) {
        float* s = scores + size_t(r) * kAttnTile;
        const int lo = a.lo[r], hi = a.hi[r];
        float m = -INFINITY;
        for (int j = lo; j < hi; ++j) m = std::max(m, s[j] *= a.scale);
        for (int j = p0 * kKvPanel; j < p1 * kKvPanel; ++j) s[j] = j >= lo && j < hi ? s[j] - m : -INFINITY;
        VF sum(0.0f);
        for (int j = p0 * kKvPanel; j < p1 * kKvPanel; j += kW) {
            const VF e = xsimd::exp(VF::load_unaligned(s + j));  // exp(-inf) = 0 for masked keys
            e.store_unaligned(s + j);
            sum += e;
        }
        a.m[r] = m;
        a.l[r] = xsimd::hadd(sum);
    }

    // ---- output: acc (nq, Dv) = p . V over the rows any query can see ----
    v_rows_to_f32(a.v_type, a.v, a.v_row, jmin, jmax, Dv, vf);
    row_blocks<4>(nq, [&](int r0, auto qb) {
        constexpr int QB = decltype(qb)::value;
        pv_rows<QB>(vf, Dv, jmin, jmax, scores + size_t(r0) * kAttnTile, kAttnTile, a.acc + size_t(r0) * Dv, size_t(Dv));
    });
}

// Folds one tile's (m, l, acc) into a running (M, L, ACC), the online-softmax update.
// Tiles are always merged one at a time in position order, whatever the threading, so
// the result is the same for any batch.
inline void attn_merge(float* M, float* L, float* ACC, float m, float l, const float* acc, int Dv) {
    if (m == -INFINITY) return;  // the tile had no key for this query
    if (*M == -INFINITY) {
        *M = m, *L = l;
        std::memcpy(ACC, acc, sizeof(float) * size_t(Dv));
        return;
    }
    const float mn = std::max(*M, m), ca = std::exp(*M - mn), cb = std::exp(m - mn);
    *M = mn;
    *L = *L * ca + l * cb;
    const VF va(ca), vb(cb);
    for (int i = 0; i < Dv; i += kW) (VF::load_unaligned(ACC + i) * va + VF::load_unaligned(acc + i) * vb).store_unaligned(ACC + i);
}

}  // namespace attn

}  // namespace kiln::cpu::KILN_ISA_NS
