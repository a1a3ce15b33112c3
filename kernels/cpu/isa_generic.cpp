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
inline void round_f16(float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
}
}  // namespace kiln::cpu::KILN_ISA_NS
#include "cpu/ops-inl.h"
#include "cpu/flash_attn_q_portable-inl.h"
#include "cpu/flash_attn_scores-inl.h"
#include "cpu/flash_attn-inl.h"
#include "cpu/isa_common-inl.h"

namespace kiln::cpu {

namespace KILN_ISA_NS {
float dot_f16(const uint16_t* a, const float* b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; ++i) s += fp16_to_fp32(a[i]) * b[i];
    return s;
}
void axpy_f16(float* y, float a, const uint16_t* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * fp16_to_fp32(x[i]);
}
void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}
}  // namespace KILN_ISA_NS

void fill_generic(KernelTable& t) {
    t.isa = Isa::Generic;
    KILN_ISA_NS::fill_common(t);
    t.dot_f16 = KILN_ISA_NS::dot_f16;
    t.axpy_f16 = KILN_ISA_NS::axpy_f16;
    t.f32_to_f16 = KILN_ISA_NS::f32_to_f16;
}

}  // namespace kiln::cpu
