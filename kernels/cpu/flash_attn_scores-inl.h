// Attention scores against one K panel (16 keys, kv_layout.h) for QB queries, float keys
// (F32/F16/BF16). Each key's score is one FMA
// chain over d in its own SIMD lane, so it does not depend on how queries or keys are
// batched: decoding one token and verifying eight give bit-identical scores.

namespace kiln::cpu::KILN_ISA_NS {

namespace attn {

using VF = xsimd::batch<float, Arch>;
constexpr int kW = int(VF::size);
constexpr int kPanelVecs = kKvPanel / kW;  // SIMD vectors per panel row of 16 keys

// 2^y for y <= 0 (the max's own term may be an ulp over 0), 0 or a subnormal below -126:
// y = n + f with |f| <= 1/2, Cephes' exp2f polynomial for 2^f (relative error ~1.5e-7),
// 2^n applied by the TU's times_pow2 (vscalefps, or the exponent bits). Softmax feeds it
// scores already in base 2 (the log2(e) rides in the scale), so e^x costs no reduction
// beyond a round and a subtract.
inline VF exp2_nonpositive(VF y) {
    const VF n = xsimd::nearbyint(y), f = y - n;
    VF p(1.535336188319500e-4f);
    for (float c : {1.339887440266574e-3f, 9.618437357674640e-3f, 5.550332471162809e-2f, 2.402264791363012e-1f, 6.931472028550421e-1f, 1.0f}) p = xsimd::fma(p, f, VF(c));
    return times_pow2(p, n);
}
inline VF exp_nonpositive(VF x) { return exp2_nonpositive(x * VF(1.44269504088896341f)); }

// Cache lines to ask for ahead of use, one row at a time: a row of `row` bytes at
// base + j * row (nullptr: nothing), into L2.
struct RowPrefetch {
    const uint8_t* base = nullptr;
    size_t row = 0;
    void operator()(int j) const {
        if (!base) return;
        const uintptr_t start = reinterpret_cast<uintptr_t>(base) + size_t(j) * row, end = start + row;
        for (uintptr_t line = start & ~uintptr_t(63); line < end; line += 64) __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 2);
    }
};

// n bf16 values as floats (the high half of an f32); the loop vectorizes.
inline void bf16_to_f32(const uint16_t* h, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = std::bit_cast<float>(uint32_t(h[i]) << 16);
}

// NP BF16 panels (D / 2, 16, 2) as float panels, kf (NP, D, 16).
inline void bf16_panels_to_f32(const uint8_t* panel, size_t k_panel, int NP, int D, float* kf) {
    for (int np = 0; np < NP; ++np) {
        const uint16_t* h = reinterpret_cast<const uint16_t*>(panel + np * k_panel);
        float* out = kf + int64_t(np) * D * kKvPanel;
        for (int d = 0; d < D; ++d)
            for (int key = 0; key < kKvPanel; ++key) out[d * kKvPanel + key] = bf16_to_fp32(h[float_k_offset(DType::BF16, d, key)]);
    }
}

// kW keys of one dimension row of panel np, from fp16 panels (converted in registers) or
// from float panels (F32 in place, BF16 from its converted copy). Panels are `stride`
// elements apart. One type per loop, so the inner loop has no type dispatch.
struct F16Rows {
    const uint16_t* panel;
    size_t stride;
    VF operator()(int np, int64_t at) const { return load_f16(panel + np * stride + at); }
};
struct F32Rows {
    const float* panel;
    size_t stride;
    VF operator()(int np, int64_t at) const { return VF::load_aligned(panel + np * stride + at); }
};

// s[r * s_stride + j] = dot(q row r, key j) for the 16 NP keys of NP consecutive panels of
// float-type keys; q: QB rows of D floats. (Two panels when few queries share a KV head:
// 8 independent FMA chains hide the FMA latency.) ahead(d) is called once per dimension.
template <int QB, int NP, class Rows, class Prefetch>
inline void float_panel_scores(const Rows& rows, int D, const float* const* q, float* s, size_t s_stride, const Prefetch& ahead) {
    constexpr int NV = NP * kPanelVecs;
    VF acc[QB][NV];
    for (int r = 0; r < QB; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = VF(0.0f);
    for (int d = 0; d < D; ++d) {
        ahead(d);
        VF kv[NV];
        for (int np = 0; np < NP; ++np)
            for (int v = 0; v < kPanelVecs; ++v) kv[np * kPanelVecs + v] = rows(np, int64_t(d) * kKvPanel + v * kW);
        for (int r = 0; r < QB; ++r) {
            const VF qd(q[r][d]);
            for (int v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(qd, kv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < QB; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v].store_unaligned(s + r * s_stride + v * kW);
}

}  // namespace attn

}  // namespace kiln::cpu::KILN_ISA_NS
