// AVX-512 (F/BW/VL/DQ/VNNI, BF16) kernels for Zen 4 / Zen 5 and recent Intel. Compiled
// with the AVX-512 flags (CMakeLists.txt); only called when CPUID reports them.
#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#include <type_traits>

#include "cpu/kernels.h"

#define KILN_ISA_NS isa_avx512
namespace kiln::cpu::KILN_ISA_NS {
using Arch = xsimd::avx512bw;
}
#include "cpu/act_quant-inl.h"
#include "cpu/unpack-inl.h"
#include "cpu/matmul_portable-inl.h"
#include "cpu/matmul_vnni-inl.h"
#include "cpu/f16c-inl.h"
#include "cpu/ops-inl.h"
#include "cpu/isa_common-inl.h"

namespace kiln::cpu {

void fill_avx512(KernelTable& t) {
    t.isa = Isa::Avx512;
    KILN_ISA_NS::fill_common(t);
    KILN_ISA_NS::fill_matmul_vnni(t);
    t.dot_f16 = KILN_ISA_NS::dot_f16;
    t.axpy_f16 = KILN_ISA_NS::axpy_f16;
    t.f32_to_f16 = KILN_ISA_NS::f32_to_f16;
}

}  // namespace kiln::cpu
