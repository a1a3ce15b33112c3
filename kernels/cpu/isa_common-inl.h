// The body every per-ISA translation unit shares: includes the kernel bodies inside the
// TU's namespace and fills a KernelTable from them. Before including this file a TU
// defines KILN_ISA_NS (its namespace) and, inside it, `Arch` (the xsimd architecture).

namespace kiln::cpu::KILN_ISA_NS {

inline void fill_common(KernelTable& t) {
    fill_matmul_portable(t);
    t.matmul[int(DType::F32)] = matmul_float<DType::F32>;
    t.matmul[int(DType::F16)] = matmul_float<DType::F16>;
    t.matmul[int(DType::BF16)] = matmul_float<DType::BF16>;
    t.quantize_q8x32 = quantize_q8x32;
    t.quantize_q8K = quantize_q8K;
    t.rms_norm = rms_norm;
    t.softmax = softmax;
    t.silu_mul = silu_mul;
    t.gelu_mul = gelu_mul;
    t.add = add;
    t.scale = scale;
    t.dot_f32 = dot_f32;
    t.axpy_f32 = axpy_f32;
    t.argmax = argmax;
    t.delta_rule = delta_rule;
    t.round_f16 = round_f16;
    t.f32_to_f16 = f32_to_f16;
    t.attn_tile = attn::attn_tile;
    t.attn_merge = attn::attn_merge;
}

}  // namespace kiln::cpu::KILN_ISA_NS
