// Attention scores against one K panel (16 keys, kv_layout.h) for QB queries, float keys
// (F32/F16/BF16). Each key's score is one FMA
// chain over d in its own SIMD lane, so it does not depend on how queries or keys are
// batched: decoding one token and verifying eight give bit-identical scores.

namespace kiln::cpu::KILN_ISA_NS {

namespace attn {

using VF = xsimd::batch<float, Arch>;
constexpr int kW = int(VF::size);
constexpr int kPanelVecs = kKvPanel / kW;  // SIMD vectors per panel row of 16 keys

// A panel of float-type keys (F32/F16/BF16) as floats, kf (D, 16).
inline void k_panel_to_f32(DType t, const uint8_t* panel, int D, float* kf) {
    const int64_t n = int64_t(D) * kKvPanel;
    if (t == DType::F32) std::memcpy(kf, panel, sizeof(float) * size_t(n));
    else if (t == DType::F16) f16_to_f32(reinterpret_cast<const uint16_t*>(panel), kf, n);
    else {
        const uint16_t* h = reinterpret_cast<const uint16_t*>(panel);
        for (int64_t i = 0; i < n; ++i) kf[i] = std::bit_cast<float>(uint32_t(h[i]) << 16);  // vectorizes
    }
}

// s[r * s_stride + j] = dot(q[r], key j) for the 16 keys of a panel; kf (D, 16) floats.
template <int QB>
inline void float_panel_scores(const float* kf, int D, const float* const* q, float* s, size_t s_stride) {
    VF acc[QB][kPanelVecs];
    for (int r = 0; r < QB; ++r)
        for (int v = 0; v < kPanelVecs; ++v) acc[r][v] = VF(0.0f);
    for (int d = 0; d < D; ++d) {
        VF kv[kPanelVecs];
        for (int v = 0; v < kPanelVecs; ++v) kv[v] = VF::load_aligned(kf + d * kKvPanel + v * kW);
        for (int r = 0; r < QB; ++r) {
            const VF qd(q[r][d]);
            for (int v = 0; v < kPanelVecs; ++v) acc[r][v] = xsimd::fma(qd, kv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < QB; ++r)
        for (int v = 0; v < kPanelVecs; ++v) acc[r][v].store_unaligned(s + r * s_stride + v * kW);
}

}  // namespace attn

}  // namespace kiln::cpu::KILN_ISA_NS
