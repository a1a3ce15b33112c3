// TUs without bf16 dot products: a BF16 KV cache is widened to floats like F16
// (flash_attn-inl.h); these are declared only, for attn_tile's `if constexpr (kBf16Dot)`
// branches, which are discarded here.

namespace kiln::cpu::KILN_ISA_NS {

namespace attn {

constexpr bool kBf16Dot = false;
VF round_bf16(VF x);
void pack_bf16(const float* x, int n, uint16_t* out);
template <int QB, int NP, class Prefetch>
void bf16_panel_scores(const uint8_t* panel, size_t k_panel, int D, const uint16_t* q, float* s, size_t s_stride, const Prefetch& ahead);
template <int QB>
void bf16_pv_rows(const uint8_t* v, size_t v_row, int Dv, int j0, int j1, const uint16_t* p, float* acc, size_t acc_stride, const RowPrefetch& ahead);

}  // namespace attn

}  // namespace kiln::cpu::KILN_ISA_NS
