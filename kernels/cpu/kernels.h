// The CPU kernel table: one set of function pointers per instruction set, filled once
// from CPUID (dispatch.cpp). Kernel bodies live in *-inl.h files that each per-ISA
// translation unit (isa_*.cpp) includes inside its own namespace, so no inline helper
// compiled with AVX-512 flags can ever be picked by the linker for an AVX2 caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "act_format.h"
#include "cpu/kv_layout.h"
#include "kiln/format/blocks.h"

namespace kiln::cpu {

enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2 };
const char* isa_name(Isa isa);

// The activation formats (kernels/act_format.h), shared with the Vulkan backend.
using kiln::ActFormat;
using kiln::act_format;
using kiln::act_row_bytes;
using kiln::block_q8_x32;

// Quantized activation rows: ny rows of k elements, row c at data + c * stride.
struct ActRows {
    const void* data;
    size_t stride;
    int ny;
    // Nonzero: names these rows' contents, never reused for other contents, so a kernel may
    // keep what it derived from them (the GEMM's token panels) for the next call with the
    // same id: the other matrices and row chunks of one linear_group (new_act_id()).
    uint64_t id = 0;
};
// n fresh ActRows ids, consecutive: the first is returned.
uint64_t new_act_id(uint64_t n = 1);

// y[c * y_stride + r] = dot(W row r, activation row c) for r in [r0, r1), c in [0, ny).
// W rows are k elements of the weight type, row r at w + r * w_stride.
using MatmulFn = void (*)(int64_t k, const void* w, size_t w_stride, int64_t r0, int64_t r1, const ActRows& a, float* y,
                          size_t y_stride);

// One flash-attention tile (flash_attn-inl.h): nq queries against the cached positions
// [t0, t0 + 64) of one KV head, t0 a multiple of kAttnTile.
struct AttnTile {
    DType k_type, v_type;
    int D, Dv;                     // key and value head dims (multiples of 16)
    const uint8_t* k;              // the tile's first K panel; 4 panels, k_panel bytes apart
    size_t k_panel;
    const uint8_t* v;              // V row of position t0; rows v_row bytes apart (kv_layout.h)
    size_t v_row;
    int nq;
    const uint8_t* const* q;       // (nq) prepared queries (kv_layout.h prepare_q)
    const int* lo;                 // (nq) first valid key of each query, relative to t0
    const int* hi;                 // (nq) one past its last valid key; 0 <= lo < hi <= 64
    float scale;                   // applied to q . k
    float* m;                      // (nq) out: max scaled score over the query's valid keys
    float* l;                      // (nq) out: sum of exp(s - m)
    float* acc;                    // (nq, Dv) out: sum of exp(s - m) v
    float* scratch;                // 64-byte aligned, attn_scratch_floats(nq, D, Dv)
};
inline size_t attn_scratch_floats(int nq, int D, int Dv) {
    return size_t(nq) * kAttnTile + 2 * size_t(D) * kKvPanel + size_t(kAttnTile) * Dv + size_t(nq) * (kAttnTile + D) / 2;
}

constexpr int kMaxDType = 32;  // DType ids are < 32
// One-token weight-prefetch distances the AVX-512 decode kernels come in: 4 KB into L1
// (the default), that plus 32 KB into L2, 6 KB and 8 KB into L1 (isa_avx512.cpp
// kDecodeAhead).
constexpr int kDecodeVariants = 4;

struct KernelTable {
    Isa isa = Isa::Generic;
    MatmulFn matmul[kMaxDType] = {};  // by weight DType; nullptr: not supported
    // Over the row-interleaved layouts of r16.h (w = repacked data, w_stride = bytes per
    // 16-row group, row ranges multiples of 16); nullptr: use the original layout.
    MatmulFn matmul_r16[kMaxDType] = {};
    // Decode variants: the kernels above with one token's weights prefetched otherwise
    // (variant v: far[v - 1], see kDecodeVariants), set where weight_prefetch is. Which
    // streams fastest depends on the CPU and on the bandwidth memory gives at the moment,
    // so a session times them (decode_tuner.h). Same results, bit for bit.
    MatmulFn matmul_far[kDecodeVariants - 1][kMaxDType] = {};
    MatmulFn matmul_r16_far[kDecodeVariants - 1][kMaxDType] = {};
    // The kernel for one token in decode variant v (0: matmul / matmul_r16), falling back to
    // variant 0 where the table has none.
    MatmulFn decode_rows(DType t, int v) const { return v > 0 && matmul_far[v - 1][int(t)] ? matmul_far[v - 1][int(t)] : matmul[int(t)]; }
    MatmulFn decode_r16(DType t, int v) const {
        return v > 0 && matmul_r16_far[v - 1][int(t)] ? matmul_r16_far[v - 1][int(t)] : matmul_r16[int(t)];
    }
    // How many decode variants this table has: kDecodeVariants where it prefetches, else 1.
    int decode_variants() const { return weight_prefetch ? kDecodeVariants : 1; }
    bool weight_prefetch = false;  // the decode kernels prefetch their weight stream ahead (fill_avx512)
    // x (k floats) -> one activation row in the given format.
    void (*quantize_q8x32)(const float* x, block_q8_x32* y, int64_t k) = nullptr;
    void (*quantize_q8K)(const float* x, block_q8_K* y, int64_t k) = nullptr;

    // Elementwise and row ops (n floats).
    void (*rms_norm)(const float* x, const float* w, float* y, int64_t n, float eps) = nullptr;  // w may be null
    void (*softmax)(float* x, int64_t n) = nullptr;
    void (*silu_mul)(float* gate, const float* up, int64_t n) = nullptr;   // gate = silu(gate) * up
    void (*gelu_mul)(float* gate, const float* up, int64_t n) = nullptr;   // gate = gelu_tanh(gate) * up
    void (*add)(float* y, const float* x, int64_t n) = nullptr;            // y += x
    void (*scale)(float* y, float s, int64_t n) = nullptr;                 // y *= s
    float (*dot_f32)(const float* a, const float* b, int64_t n) = nullptr;
    void (*axpy_f32)(float* y, float a, const float* x, int64_t n) = nullptr;
    void (*round_f16)(float* x, int64_t n) = nullptr;  // x = fp16(x), round to nearest even
    void (*f32_to_f16)(const float* x, uint16_t* y, int64_t n) = nullptr;  // y = fp32_to_fp16(x) (NaN stays NaN)
    int64_t (*argmax)(const float* x, int64_t n) = nullptr;
    // One token of the gated delta rule for one head (delta_rule-inl.h; ref::delta_rule):
    // s_out (S, S) = s_in * decay + outer(beta (v - decay s_in k), k), o = scale * s_out q.
    void (*delta_rule)(const float* s_in, float* s_out, const float* q, const float* k, const float* v, float decay, float beta, float scale, float* o,
                       int64_t S) = nullptr;

    // Flash attention (flash_attn-inl.h): one tile, and the online-softmax merge of a
    // tile's (m, l, acc) into a running (M, L, ACC).
    void (*attn_tile)(const AttnTile& a) = nullptr;
    void (*attn_merge)(int n, int Dv, const float* m, const float* l, const float* acc, float* M, float* L, float* ACC) = nullptr;
};

// Calls f(std::integral_constant<int, n>{}) for a run-time n in [1, 8]: turns a token count
// into the template argument of the kernels specialised for 1..8 tokens.
template <class F>
void with_token_count(int n, F&& f) {
    [&]<int... N>(std::integer_sequence<int, N...>) { ((n == N + 1 ? (f(std::integral_constant<int, N + 1>{}), 0) : 0), ...); }(
        std::make_integer_sequence<int, 8>{});
}

// The table for the best ISA this CPU supports, or the one KILN_ISA=avx512|avx2|generic
// asks for (falling back with a warning if the CPU lacks it).
const KernelTable& active();
// The table for a given ISA, or nullptr if this CPU cannot run it.
const KernelTable* table_for(Isa isa);
// Every ISA this CPU can run, best last (tests loop over these).
std::vector<Isa> available_isas();

// Filled by each per-ISA translation unit.
void fill_generic(KernelTable& t);
void fill_avx2(KernelTable& t);
// weight_prefetch: the decode kernels prefetch their weight stream ahead in software;
// l2_first: decode variant 0 is the one that also prefetches into L2 (kDecodeAhead[1]),
// the 4 KB L1 one variant 1 (dispatch.cpp decides both by CPU).
void fill_avx512(KernelTable& t, bool weight_prefetch, bool l2_first = false);

}  // namespace kiln::cpu
