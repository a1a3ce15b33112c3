// AVX-512 (F/BW/VL/DQ/VNNI, BF16) kernels for Zen 4 / Zen 5 and recent Intel. Compiled
// with the AVX-512 flags (CMakeLists.txt); only called when CPUID reports them.
#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>
#include <type_traits>
#include <utility>

#include "cpu/kernels.h"

#define KILN_ISA_NS isa_avx512
namespace kiln::cpu::KILN_ISA_NS {
using Arch = xsimd::avx512bw;
}
#include "cpu/act_quant-inl.h"
#include "cpu/act_quant_avx512-inl.h"
#include "cpu/unpack-inl.h"
#include "cpu/matmul_portable-inl.h"
#include "cpu/matmul_vnni-inl.h"
#include "cpu/iq_grid_vnni-inl.h"
#include "cpu/gemm_vnni-inl.h"
#include "cpu/gemv_kquants-inl.h"
#include "cpu/gemv_iq_grid-inl.h"
#include "cpu/r16.h"
#include "cpu/matmul_r16-inl.h"
#include "cpu/f16c-inl.h"
#include "cpu/ops-inl.h"
#include "cpu/delta_rule-inl.h"
#include "cpu/flash_attn_q_vnni-inl.h"
#include "cpu/flash_attn_scores-inl.h"
#include "cpu/flash_attn_bf16_avx512-inl.h"
#include "cpu/flash_attn-inl.h"
#include "cpu/matmul_float-inl.h"
#include "cpu/isa_common-inl.h"

namespace kiln::cpu {

namespace KILN_ISA_NS {
// The row kernel for NY tokens: specialised for the k-quants that dominate Q4_K_M and
// Q5_K_M files, and iq4_xs and the lattices iq2_xxs / iq2_xs / iq2_s / iq3_xxs / iq3_s, the generic
// decoder-based one otherwise.
template <DType T, int NY, Ahead PF>
void vnni::rows(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const void* const* act, float* const* y) {
    if constexpr (T == DType::Q4_K) gemv::rows_q4_K<NY, PF>(k, w, w_stride, r0, r1, act, y);
    else if constexpr (T == DType::Q5_K) gemv::rows_q5_K<NY, PF>(k, w, w_stride, r0, r1, act, y);
    else if constexpr (T == DType::Q6_K) gemv::rows_q6_K<NY, PF>(k, w, w_stride, r0, r1, act, y);
    else if constexpr (T == DType::IQ4_XS) gemv::rows_iq4_xs<NY, PF>(k, w, w_stride, r0, r1, act, y);
    else if constexpr (T == DType::IQ2_XXS) gemv::rows_iq2_xxs<NY, PF>(k, w, w_stride, r0, r1, act, y);
    else if constexpr (T == DType::IQ3_XXS) gemv::rows_iq3_xxs<NY, PF>(k, w, w_stride, r0, r1, act, y);
    else if constexpr (T == DType::IQ3_S) gemv::rows_iq3_s<NY, PF>(k, w, w_stride, r0, r1, act, y);
    else if constexpr (T == DType::IQ2_XS) gemv::rows_iq2_xs<NY, PF>(k, w, w_stride, r0, r1, act, y);
    else if constexpr (T == DType::IQ2_S) gemv::rows_iq2_s<NY, PF>(k, w, w_stride, r0, r1, act, y);
    else matmul_rows<T, NY, PF>(k, w, w_stride, r0, r1, act, y);
}

// Up to 8 tokens (decode, speculative verification) the row kernels decode each weight
// block once for all tokens and stream W at memory speed; beyond that the repacking GEMM
// keeps a 16-row panel in L2 for the whole batch.
template <DType T, Ahead PF, Ahead PF_BATCH = PF>
void matmul_auto(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const ActRows& a, float* y, size_t y_stride) {
    if (a.ny > 8) gemm::matmul<T>(k, w, w_stride, r0, r1, a, y, y_stride);
    else vnni::matmul<T, PF, PF_BATCH>(k, w, w_stride, r0, r1, a, y, y_stride);
}

// The kernels with a decode's weights prefetched 4 KB ahead (prefetch_ahead), or without
// (the hardware prefetchers alone).
constexpr Ahead kAhead{4096}, kNone{};
template <DType T>
MatmulFn row_kernel(bool weight_prefetch) { return weight_prefetch ? matmul_auto<T, kAhead> : matmul_auto<T, kNone>; }
template <DType T>
MatmulFn r16_kernel(bool weight_prefetch) { return weight_prefetch ? r16::matmul<T, kAhead> : r16::matmul<T, kNone>; }
// One token's weights prefetched otherwise, batches as above (KernelTable::matmul_far /
// matmul_r16_far): 4 KB into L1 plus 32 KB into L2, 6 KB and 8 KB into L1. Why several:
// which streams fastest depends on the CPU and on the bandwidth memory gives at the
// moment (Zen 5: the farther L1 distances win while memory is fast and lose a little while
// it is slow; an Intel Xeon: the L2 stream, +10-12%), so a session times them
// (DecodeTuner) rather than the table picking one (kiln-bench --ab decode-tuning).
constexpr Ahead kDecodeAhead[kDecodeVariants] = {kAhead, {4096, 32768}, {6144}, {8192}};
template <DType T, int V>
MatmulFn row_far_kernel(bool weight_prefetch) { return weight_prefetch ? matmul_auto<T, kDecodeAhead[V], kAhead> : nullptr; }
template <DType T, int V>
MatmulFn r16_far_kernel(bool weight_prefetch) { return weight_prefetch ? r16::matmul<T, kDecodeAhead[V], r16::kBatchAhead<kAhead>> : nullptr; }
// Variants 1 .. kDecodeVariants - 1 of T's row and r16 kernels.
template <DType T, bool R16, int... V>
void set_far(KernelTable& t, bool weight_prefetch, std::integer_sequence<int, V...>) {
    if constexpr (R16) ((t.matmul_r16_far[V][int(T)] = r16_far_kernel<T, V + 1>(weight_prefetch)), ...);
    else ((t.matmul_far[V][int(T)] = row_far_kernel<T, V + 1>(weight_prefetch)), ...);
}
template <DType T>
void set_rows(KernelTable& t, bool weight_prefetch) {
    t.matmul[int(T)] = row_kernel<T>(weight_prefetch);
    set_far<T, false>(t, weight_prefetch, std::make_integer_sequence<int, kDecodeVariants - 1>{});
}
template <DType T>
void set_r16(KernelTable& t, bool weight_prefetch) {
    t.matmul_r16[int(T)] = r16_kernel<T>(weight_prefetch);
    set_far<T, true>(t, weight_prefetch, std::make_integer_sequence<int, kDecodeVariants - 1>{});
}
}  // namespace KILN_ISA_NS

void fill_avx512(KernelTable& t, bool weight_prefetch, bool l2_first) {
    t.isa = Isa::Avx512;
    t.weight_prefetch = weight_prefetch;
    KILN_ISA_NS::fill_common(t);
    t.quantize_q8x32 = KILN_ISA_NS::quantize_q8x32_avx512;
    t.quantize_q8K = KILN_ISA_NS::quantize_q8K_avx512;
    using D = DType;
    KILN_ISA_NS::set_rows<D::Q4_0>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::Q4_1>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::Q5_0>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::Q5_1>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::Q8_0>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::Q2_K>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::Q3_K>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::Q4_K>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::Q5_K>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::Q6_K>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::IQ4_NL>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::IQ4_XS>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::IQ2_XXS>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::IQ2_XS>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::IQ2_S>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::IQ3_XXS>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::IQ3_S>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::IQ1_S>(t, weight_prefetch);
    KILN_ISA_NS::set_rows<D::IQ1_M>(t, weight_prefetch);
    KILN_ISA_NS::set_r16<D::Q4_K>(t, weight_prefetch);
    KILN_ISA_NS::set_r16<D::Q6_K>(t, weight_prefetch);
    KILN_ISA_NS::set_r16<D::IQ4_XS>(t, weight_prefetch);
    KILN_ISA_NS::set_r16<D::Q8_0>(t, weight_prefetch);
    KILN_ISA_NS::set_r16<D::Q4_0>(t, weight_prefetch);
    KILN_ISA_NS::set_r16<D::Q4_1>(t, weight_prefetch);
    KILN_ISA_NS::set_r16<D::Q5_0>(t, weight_prefetch);
    KILN_ISA_NS::set_r16<D::Q5_1>(t, weight_prefetch);
    if (weight_prefetch && l2_first)  // variants 0 and 1 trade places; batches run the same either way
        for (int i = 0; i < kMaxDType; ++i) {
            if (t.matmul_far[0][i]) std::swap(t.matmul[i], t.matmul_far[0][i]);
            if (t.matmul_r16_far[0][i]) std::swap(t.matmul_r16[i], t.matmul_r16_far[0][i]);
        }
}

}  // namespace kiln::cpu
