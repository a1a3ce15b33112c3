// Generic x86-64 (SSE2) kernels: no -m flags, runs on any x86-64 CPU.
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/kernels.h"

#define KILN_ISA_NS isa_generic
namespace kiln::cpu::KILN_ISA_NS {
using Arch = xsimd::sse2;
}
#include "cpu/act_quant-inl.h"
#include "cpu/unpack-inl.h"
#include "cpu/matmul_portable-inl.h"
namespace kiln::cpu::KILN_ISA_NS {
inline void f16_to_f32(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}
inline void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}
inline void round_f16(float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
}
}  // namespace kiln::cpu::KILN_ISA_NS
#include "cpu/ops-inl.h"
#include "cpu/delta_rule-inl.h"
#include "cpu/flash_attn_q_portable-inl.h"
#include "cpu/flash_attn_scores-inl.h"
#include "cpu/flash_attn_bf16_portable-inl.h"
#include "cpu/flash_attn-inl.h"
#include "cpu/matmul_float-inl.h"
#include "cpu/isa_common-inl.h"

namespace kiln::cpu {

void fill_generic(KernelTable& t) {
    t.isa = Isa::Generic;
    KILN_ISA_NS::fill_common(t);
}

}  // namespace kiln::cpu
