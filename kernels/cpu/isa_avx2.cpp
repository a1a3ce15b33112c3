// AVX2 + FMA + F16C kernels (Zen 2/3, Haswell and later). Compiled with -mavx2 -mfma
// -mf16c (CMakeLists.txt); only called when CPUID reports these features.
#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/kernels.h"

#define KILN_ISA_NS isa_avx2
namespace kiln::cpu::KILN_ISA_NS {
using Arch = xsimd::fma3<xsimd::avx2>;
}
#include "cpu/act_quant-inl.h"
#include "cpu/unpack-inl.h"
#include "cpu/matmul_portable-inl.h"
#include "cpu/f16c-inl.h"
#include "cpu/ops-inl.h"
#include "cpu/delta_rule-inl.h"
#include "cpu/flash_attn_q_portable-inl.h"
#include "cpu/flash_attn_scores-inl.h"
#include "cpu/flash_attn_bf16_portable-inl.h"
#include "cpu/flash_attn-inl.h"
#include "cpu/matmul_float-inl.h"
#include "cpu/isa_common-inl.h"

namespace kiln::cpu {

void fill_avx2(KernelTable& t) {
    t.isa = Isa::Avx2;
    KILN_ISA_NS::fill_common(t);
}

}  // namespace kiln::cpu
