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
        if (t == DType::F16) f16_to_f32(reinterpret_cast<const uint16_t*>(row), out, Dv);
        else if (t == DType::BF16) load_v(t, v, v_row, j, Dv, out);  // pairs of positions interleaved (kv_layout.h)
        else if (t == DType::Q8_0) {
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

// kW values of row j at column c, from fp16 rows (converted in registers) or float rows.
struct F16ValueRows {
    const uint8_t* v;
    size_t v_row;  // bytes
    VF operator()(int j, int c) const { return load_f16(reinterpret_cast<const uint16_t*>(v + size_t(j) * v_row) + c); }
};
struct F32ValueRows {
    const float* v;
    size_t stride;  // floats
    VF operator()(int j, int c) const { return VF::load_unaligned(v + size_t(j) * stride + c); }
};

// acc[r] (Dv) = sum over j in [j0, j1) of p[r][j] v[j], for NV vectors of columns at c0.
// One FMA chain per output element in j order: exact zeros for masked keys leave it as is.
template <int QB, int NV, class Rows>
inline void pv_block(const Rows& vf, int c0, int j0, int j1, const float* p, size_t p_stride, float* acc, size_t acc_stride,
                     const RowPrefetch& ahead = {}) {
    VF a[QB][NV];
    for (int r = 0; r < QB; ++r)
        for (int v = 0; v < NV; ++v) a[r][v] = VF(0.0f);
    for (int j = j0; j < j1; ++j) {
        ahead(j);
        VF vv[NV];
        for (int v = 0; v < NV; ++v) vv[v] = vf(j, c0 + v * kW);
        for (int r = 0; r < QB; ++r) {
            const VF pj(p[r * p_stride + j]);
            for (int v = 0; v < NV; ++v) a[r][v] = xsimd::fma(pj, vv[v], a[r][v]);
        }
    }
    for (int r = 0; r < QB; ++r)
        for (int v = 0; v < NV; ++v) a[r][v].store_unaligned(acc + r * acc_stride + c0 + v * kW);
}

// `ahead` rides along the first column block's row loop.
template <int QB, class Rows>
inline void pv_rows(const Rows& vf, int Dv, int j0, int j1, const float* p, size_t p_stride, float* acc, size_t acc_stride,
                    const RowPrefetch& ahead = {}) {
    constexpr int kChunk = 64 / kW;  // vectors per 64 output columns
    int c0 = 0;
    for (; c0 + 64 <= Dv; c0 += 64) pv_block<QB, kChunk>(vf, c0, j0, j1, p, p_stride, acc, acc_stride, c0 == 0 ? ahead : RowPrefetch{});
    switch ((Dv - c0) / 16) {  // Dv is a multiple of 16 (checked by the session)
        case 1: pv_block<QB, 16 / kW>(vf, c0, j0, j1, p, p_stride, acc, acc_stride, c0 == 0 ? ahead : RowPrefetch{}); break;
        case 2: pv_block<QB, 32 / kW>(vf, c0, j0, j1, p, p_stride, acc, acc_stride, c0 == 0 ? ahead : RowPrefetch{}); break;
        case 3: pv_block<QB, 48 / kW>(vf, c0, j0, j1, p, p_stride, acc, acc_stride, c0 == 0 ? ahead : RowPrefetch{}); break;
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
    // BF16 caches on TUs with bf16 dot products (flash_attn_bf16_avx512-inl.h) are used as
    // they are stored; otherwise they are widened to floats.
    const bool dot_k = kBf16Dot && a.k_type == DType::BF16, dot_v = kBf16Dot && a.v_type == DType::BF16;
    // scratch: scores (nq, 64) | kf (2, D, 16) two BF16/F16 panels' keys | vf (64, Dv) the
    // tile's values | pb (nq, 64) bf16 probabilities | qh (nq, D) bf16 queries, contiguous
    float* scores = a.scratch;
    float* kf = scores + size_t(nq) * kAttnTile;
    float* vf = kf + 2 * size_t(D) * kKvPanel;
    uint16_t* pb = reinterpret_cast<uint16_t*>(vf + size_t(kAttnTile) * Dv);
    uint16_t* qh = pb + size_t(nq) * kAttnTile;
    if constexpr (kBf16Dot)
        if (dot_k)  // exact: the queries are bf16 values (prepare_q)
            for (int r = 0; r < nq; ++r) pack_bf16(reinterpret_cast<const float*>(a.q[r]), D, qh + size_t(r) * D);
    // The next tiles' keys and values follow this one's in memory: ask for the one after
    // next into L2 while this tile computes (decode otherwise stalls on every tile, -25%),
    // a panel or a row at a time between the arithmetic: a burst of 256 prefetches at the
    // tile's start stalls on the miss buffers instead.
    const size_t k_bytes = size_t(kAttnTile / kKvPanel) * a.k_panel, v_bytes = size_t(kAttnTile) * a.v_row;
    const RowPrefetch k_ahead{a.k + 2 * k_bytes, a.k_panel}, v_ahead{a.v + 2 * v_bytes, a.v_row};
    int jmin = kAttnTile, jmax = 0;
    for (int r = 0; r < nq; ++r) jmin = std::min(jmin, a.lo[r]), jmax = std::max(jmax, a.hi[r]);
    const int p0 = jmin / kKvPanel, p1 = (jmax + kKvPanel - 1) / kKvPanel;  // panels with any valid key

    // ---- scores (nq, 64) for the panels in use: for <= 4 queries, float keys the whole
    // tile at once (16 accumulators), int8 / bf16 keys (which also hold per-panel sums) two
    // panels at a time ----
    const int np_max = nq > 4 ? 1 : quant_k || dot_k ? 2 : kAttnTile / kKvPanel;
    // More than one block of 8 queries would convert fp16 keys in registers once per block:
    // then each panel is converted once into kf instead.
    const bool f16_widened = a.k_type == DType::F16 && nq > 8;
    for (int p = p0; p < p1;) {
        const int np = std::min(np_max, p1 - p);
        const uint8_t* panel = a.k + size_t(p) * a.k_panel;
        if (quant_k) for (int i = 0; i < np; ++i) k_ahead(p + i);
        // float keys: the np panels of the tile after next, a slice per dimension
        const RowPrefetch k_slices{k_ahead.base + size_t(p) * a.k_panel, size_t(np) * a.k_panel / size_t(D)};
        if (a.k_type == DType::BF16 && !dot_k) bf16_panels_to_f32(panel, a.k_panel, np, D, kf);
        if (f16_widened) f16_to_f32(reinterpret_cast<const uint16_t*>(panel), kf, int64_t(np) * D * kKvPanel);
        const RowPrefetch k_pairs{k_slices.base, k_slices.row * 2};  // a slice per dimension pair
        row_blocks<8>(nq, [&](int r0, auto qb) {
            constexpr int QB = decltype(qb)::value;
            float* s = scores + size_t(r0) * kAttnTile + p * kKvPanel;
            const float* const* q = reinterpret_cast<const float* const*>(a.q + r0);  // float queries: row pointers
            auto run = [&](auto np_c, const auto& rows) {
                constexpr int NP = decltype(np_c)::value;
                if (quant_k) quant_panel_scores<QB, NP>(a.k_type, panel, a.k_panel, D, reinterpret_cast<const AttnQ8* const*>(a.q + r0), s, kAttnTile);
                else if (dot_k) {
                    if constexpr (kBf16Dot) bf16_panel_scores<QB, NP>(panel, a.k_panel, D, qh + size_t(r0) * D, s, kAttnTile, r0 == 0 ? k_pairs : RowPrefetch{});
                } else float_panel_scores<QB, NP>(rows, D, q, s, kAttnTile, r0 == 0 ? k_slices : RowPrefetch{});
            };
            auto with_np = [&](const auto& rows) {
                if constexpr (QB <= 4) {
                    static_assert(kAttnTile / kKvPanel == 4);
                    if (np == 4) return run(std::integral_constant<int, 4>{}, rows);
                    if (np == 3) return run(std::integral_constant<int, 3>{}, rows);
                    if (np == 2) return run(std::integral_constant<int, 2>{}, rows);
                }
                run(std::integral_constant<int, 1>{}, rows);
            };
            if (a.k_type == DType::F16 && !f16_widened) with_np(F16Rows{reinterpret_cast<const uint16_t*>(panel), a.k_panel / 2});
            else if (a.k_type == DType::F32) with_np(F32Rows{reinterpret_cast<const float*>(panel), a.k_panel / 4});
            else with_np(F32Rows{kf, size_t(D) * kKvPanel});  // BF16 or F16 converted; unused for quantized keys
        });
        p += np;
    }

    // ---- per query: max, exp, sum ----
    // The scale (and log2(e), for exp2) rides in the exp's argument, fma(s, c, -m c) with
    // c = scale log2(e): the max of the raw scores is the max of the scaled ones (c > 0),
    // so the scores are read twice and written once. The mask only costs where the query
    // sees part of [j0, j1), and both paths give the same bits for the keys they keep
    // (decode and verify agree).
    alignas(64) float lane[kW];
    for (int i = 0; i < kW; ++i) lane[i] = float(i);
    const float scale2 = a.scale * 1.44269504088896341f;  // to base 2 for exp2
    const VF lanes = VF::load_aligned(lane), vscale2(scale2), ninf(-INFINITY), zero(0.0f);
    const int j0 = p0 * kKvPanel, j1 = p1 * kKvPanel;
    for (int r = 0; r < nq; ++r) {
        float* s = scores + size_t(r) * kAttnTile;
        const bool masked = a.lo[r] > j0 || a.hi[r] < j1;
        const VF lo(float(a.lo[r])), hi(float(a.hi[r]));
        auto visible = [&](int j) { const VF idx = lanes + VF(float(j)); return (idx >= lo) & (idx < hi); };
        VF vmax = ninf;
        if (masked)
            for (int j = j0; j < j1; j += kW) vmax = xsimd::max(vmax, xsimd::select(visible(j), VF::load_aligned(s + j), ninf));
        else
            for (int j = j0; j < j1; j += kW) vmax = xsimd::max(vmax, VF::load_aligned(s + j));
        const float raw_max = lane_max(vmax);
        const VF neg_m2(-raw_max * scale2);
        VF sum(0.0f);
        for (int j = j0; j < j1; j += kW) {
            VF e = exp2_nonpositive(xsimd::fma(VF::load_aligned(s + j), vscale2, neg_m2));
            if (masked) e = xsimd::select(visible(j), e, zero);
            if constexpr (kBf16Dot)
                if (dot_v) e = round_bf16(e);  // the weights the bf16 dot products will use
            e.store_aligned(s + j);
            sum += e;
        }
        a.m[r] = raw_max * a.scale;
        a.l[r] = xsimd::hadd(sum);
        if constexpr (kBf16Dot)
            if (dot_v) pack_bf16(s + j0, j1 - j0, pb + size_t(r) * kAttnTile + j0);
    }

    // ---- output: acc (nq, Dv) = p . V over the rows any query can see ----
    // Few queries: fp16 and q8_0 values are converted in registers as they are used; more
    // than one block of 4 queries would convert each row again, so then the tile is
    // converted once.
    const bool f16_in_place = a.v_type == DType::F16 && nq <= 4, q8_in_place = kQ8ValuesInPlace && a.v_type == DType::Q8_0 && nq <= 4;
    if (!f16_in_place && !q8_in_place && !dot_v && a.v_type != DType::F32) v_rows_to_f32(a.v_type, a.v, a.v_row, jmin, jmax, Dv, vf);
    row_blocks<4>(nq, [&](int r0, auto qb) {
        constexpr int QB = decltype(qb)::value;
        const float* p = scores + size_t(r0) * kAttnTile;
        float* acc = a.acc + size_t(r0) * Dv;
        const RowPrefetch ahead = r0 == 0 ? v_ahead : RowPrefetch{};
        if (dot_v) {  // whole pairs of positions: the extra one has probability 0
            if constexpr (kBf16Dot) bf16_pv_rows<QB>(a.v, a.v_row, Dv, jmin & ~1, (jmax + 1) & ~1, pb + size_t(r0) * kAttnTile, acc, size_t(Dv), ahead);
        } else if (q8_in_place) {
            if constexpr (kQ8ValuesInPlace) pv_rows<QB>(Q8ValueRows{a.v, a.v_row}, Dv, jmin, jmax, p, kAttnTile, acc, size_t(Dv), ahead);
        } else if (f16_in_place) pv_rows<QB>(F16ValueRows{a.v, a.v_row}, Dv, jmin, jmax, p, kAttnTile, acc, size_t(Dv), ahead);
        else if (a.v_type == DType::F32) pv_rows<QB>(F32ValueRows{reinterpret_cast<const float*>(a.v), a.v_row / 4}, Dv, jmin, jmax, p, kAttnTile, acc, size_t(Dv), ahead);
        else pv_rows<QB>(F32ValueRows{vf, size_t(Dv)}, Dv, jmin, jmax, p, kAttnTile, acc, size_t(Dv), ahead);
    });
}

// Folds one tile's (m, l, acc) into the running (M, L, ACC) of n queries, the
// online-softmax update; m, l, M, L (n), acc, ACC (n, Dv). A query with m = -inf saw
// nothing of the tile (its l and acc are not read); M = -inf means no tile yet (L and ACC
// are then overwritten). The rescaling factors of up to kW queries come from one vector
// exp each, the same per lane whatever the other lanes hold; tiles are always merged one
// at a time in position order, whatever the threading, so the result is the same for any
// batch.
inline void attn_merge(int n, int Dv, const float* m, const float* l, const float* acc, float* M, float* L, float* ACC) {
    alignas(64) float f[4][kW];  // ca = e^(M - max), cb = e^(m - max) per query, then m and M
    for (int i0 = 0; i0 < n; i0 += kW) {
        const int nl = std::min(kW, n - i0);
        std::fill(f[2], f[2] + kW, -INFINITY), std::fill(f[3], f[3] + kW, -INFINITY);
        std::copy(m + i0, m + i0 + nl, f[2]), std::copy(M + i0, M + i0 + nl, f[3]);
        const VF vm = VF::load_aligned(f[2]), vM = VF::load_aligned(f[3]), mx = xsimd::max(vm, vM);
        exp_nonpositive(vM - mx).store_aligned(f[0]);  // lanes with an -inf maximum (m or M) are never read
        exp_nonpositive(vm - mx).store_aligned(f[1]);
        for (int k = 0; k < nl; ++k) {
            const int i = i0 + k;
            if (m[i] == -INFINITY) continue;
            float* out = ACC + size_t(i) * Dv;
            const float* in = acc + size_t(i) * Dv;
            if (M[i] == -INFINITY) {
                M[i] = m[i], L[i] = l[i];
                std::memcpy(out, in, sizeof(float) * size_t(Dv));
                continue;
            }
            const float ca = f[0][k], cb = f[1][k];
            M[i] = std::max(M[i], m[i]);
            L[i] = L[i] * ca + l[i] * cb;
            const VF va(ca), vb(cb);
            for (int d = 0; d < Dv; d += kW) (VF::load_unaligned(out + d) * va + VF::load_unaligned(in + d) * vb).store_unaligned(out + d);
        }
    }
}

}  // namespace attn

}  // namespace kiln::cpu::KILN_ISA_NS
