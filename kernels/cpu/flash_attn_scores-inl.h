// Attention scores against one K panel (16 keys, kv_layout.h) for QB queries, float keys
// (F32/F16/BF16). Each key's score is one FMA
// chain over d in its own SIMD lane, so it does not depend on how queries or keys are
// batched: decoding one token and verifying eight give bit-identical scores.

namespace kiln::cpu::KILN_ISA_NS {

namespace attn {

using VF = xsimd::batch<float, Arch>;
constexpr int kW = int(VF::size);
constexpr int kPanelVecs = kKvPanel / kW;  // SIMD vectors per panel row of 16 keys

// A BF16 panel as floats, kf (D, 16).
inline void bf16_panel_to_f32(const uint8_t* panel, int D, float* kf) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(panel);
    for (int64_t i = 0; i < int64_t(D) * kKvPanel; ++i) kf[i] = std::bit_cast<float>(uint32_t(h[i]) << 16);  // vectorizes
}

// kW keys of dimension-row `row` of a panel: F32 and F16 are read in place (F16 converted
// in registers), BF16 from its converted copy.
struct PanelRows {
    DType t;
    const uint8_t* panel;
    const float* kf;
    VF operator()(int64_t at) const {
        if (t == DType::F16) return load_f16(reinterpret_cast<const uint16_t*>(panel) + at);
        return VF::load_aligned((t == DType::F32 ? reinterpret_cast<const float*>(panel) : kf) + at);
    }
};

// s[r * s_stride + j] = dot(q[r], key j) for the 16 keys of a panel of float-type keys.
template <int QB>
inline void float_panel_scores(const PanelRows& rows, int D, const float* const* q, float* s, size_t s_stride) {
    VF acc[QB][kPanelVecs];
    for (int r = 0; r < QB; ++r)
        for (int v = 0; v < kPanelVecs; ++v) acc[r][v] = VF(0.0f);
    for (int d = 0; d < D; ++d) {
        VF kv[kPanelVecs];
        for (int v = 0; v < kPanelVecs; ++v) kv[v] = rows(int64_t(d) * kKvPanel + v * kW);
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
