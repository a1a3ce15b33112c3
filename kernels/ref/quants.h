// Scalar reference (de)quantization of the GGUF tensor formats: the executable spec that the
// SIMD and Vulkan kernels are tested against. Written for clarity, not speed.
//
// Bit layouts are exactly ggml's (ggml-common.h); the quantizers make the same choices as
// ggml's reference quantizers (quantize_row_*_ref in ggml-quants.c, no importance matrix),
// so a row quantized here matches llama-quantize's bytes (checked by tests/test_quants.cpp
// against tests/data/quant_vectors.bin).
//
// All functions take n = number of elements, a multiple of the type's block size
// (dtype_info(t).block_size), and require finite inputs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kiln/format/blocks.h"

namespace kiln::ref {

// ---- dequantization ----------------------------------------------------------------

// dst[0..n) = the values the row encodes. F32, F16, BF16 and every block type in dtype.h.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t n);
void dequantize_row_q4_1(const block_q4_1* x, float* y, int64_t n);
void dequantize_row_q5_0(const block_q5_0* x, float* y, int64_t n);
void dequantize_row_q5_1(const block_q5_1* x, float* y, int64_t n);
void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t n);
void dequantize_row_q8_1(const block_q8_1* x, float* y, int64_t n);
void dequantize_row_q2_K(const block_q2_K* x, float* y, int64_t n);
void dequantize_row_q3_K(const block_q3_K* x, float* y, int64_t n);
void dequantize_row_q4_K(const block_q4_K* x, float* y, int64_t n);
void dequantize_row_q5_K(const block_q5_K* x, float* y, int64_t n);
void dequantize_row_q6_K(const block_q6_K* x, float* y, int64_t n);
void dequantize_row_q8_K(const block_q8_K* x, float* y, int64_t n);
void dequantize_row_iq4_nl(const block_iq4_nl* x, float* y, int64_t n);
void dequantize_row_iq4_xs(const block_iq4_xs* x, float* y, int64_t n);
// The grid formats: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M (ref/iq_grids.h).
void dequantize_row_iq_grid(DType t, const void* x, float* y, int64_t n);

// The 6-bit (scale, min) pair of sub-block j (0..7) of a q4_K / q5_K block. The 12 bytes
// hold eight 6-bit scales and eight 6-bit mins:
//   bytes 0..3  : scale j (low 6 bits) for j < 4; top 2 bits = high bits of scale j+4
//   bytes 4..7  : min j   (low 6 bits) for j < 4; top 2 bits = high bits of min j+4
//   bytes 8..11 : low nibble = low 4 bits of scale j+4, high nibble = low 4 bits of min j+4
inline void unpack_scale_min_k4(int j, const uint8_t* scales, uint8_t* sc, uint8_t* m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = uint8_t((scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4));
        *m = uint8_t((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

// The 6-bit scale (already minus 32, so -32..31) of 16-element group j (0..15) of q3_K.
// Low 4 bits: nibble (j % 8) of bytes 0..7 (low nibble for j < 8, high nibble for j >= 8);
// high 2 bits: bits 2*(j/4) .. 2*(j/4)+1 of byte 8 + j % 4.
inline int unpack_scale_q3_K(int j, const uint8_t* scales) {
    const int lo = j < 8 ? scales[j] & 0x0f : scales[j - 8] >> 4;
    const int hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | hi << 4) - 32;
}

// ---- quantization -------------------------------------------------------------------

void quantize_row_q4_0(const float* x, block_q4_0* y, int64_t n);
void quantize_row_q4_1(const float* x, block_q4_1* y, int64_t n);
void quantize_row_q5_0(const float* x, block_q5_0* y, int64_t n);
void quantize_row_q5_1(const float* x, block_q5_1* y, int64_t n);
void quantize_row_q8_0(const float* x, block_q8_0* y, int64_t n);
// As q8_0, plus s = d * sum(qs) (the activation format of the q4_1/q5_1 dot products).
void quantize_row_q8_1(const float* x, block_q8_1* y, int64_t n);
// Activation format of the k-quant dot products: float d = max / -127 (max = the value
// with the largest magnitude, so d carries the opposite sign), qs = round(x / d), and
// bsums[g] = sum of qs[16 g .. 16 g + 15].
void quantize_row_q8_K(const float* x, block_q8_K* y, int64_t n);
// k-quants with ggml's iterative scale/min search (make_qkx2_quants for q4_K/q5_K,
// make_qx_quants for q6_K), without an importance matrix.
void quantize_row_q4_K(const float* x, block_q4_K* y, int64_t n);
void quantize_row_q5_K(const float* x, block_q5_K* y, int64_t n);
void quantize_row_q6_K(const float* x, block_q6_K* y, int64_t n);
// IQ4_NL / IQ4_XS with ggml's scale search (7 steps either side of the largest value on
// the outermost level, then least squares; IQ4_XS: 6-bit sub-block scales against one
// super-block scale), as llama-quantize runs it without an importance matrix
// (ggml's quantize_iq4_nl / quantize_iq4_xs; note ggml's quantize_row_iq4_nl_ref skips
// the search). `importance`: per-element weights (an imatrix row) or nullptr.
void quantize_row_iq4_nl(const float* x, block_iq4_nl* y, int64_t n, const float* importance = nullptr);
void quantize_row_iq4_xs(const float* x, block_iq4_xs* y, int64_t n, const float* importance = nullptr);

// q2_K: without importance ggml's quantize_row_q2_K_ref (weights |x|, scales and mins
// scaled to their maxima); with it quantize_row_q2_K_impl (llama-quantize --imatrix).
void quantize_row_q2_K(const float* x, block_q2_K* y, int64_t n, const float* importance = nullptr);
// IQ2_XXS with ggml's lattice search (quantize_row_iq2_xxs_impl: 13 scales around the
// best 4-level fit, off-grid points snapped to their nearest grid neighbours), which needs
// an importance row, as ggml does.
void quantize_row_iq2_xxs(const float* x, block_iq2_xxs* y, int64_t n, const float* importance);
// IQ3_S (quantize_row_iq3_s_impl: 19 scales, all points snapped again when any was off the
// 512-point grid), with or without importance (weights x^2).
void quantize_row_iq3_s(const float* x, block_iq3_s* y, int64_t n, const float* importance = nullptr);
// IQ2_XS (quantize_row_iq2_xs_impl: a scale per 16 weights, 19 scales tried), with importance.
void quantize_row_iq2_xs(const float* x, block_iq2_xs* y, int64_t n, const float* importance);
// IQ2_S (quantize_row_iq2_s_impl: IQ2_XS's search on the 1024-point grid, plain signs),
// with importance (llama-quantize requires one) or without (weights sigma2 / 4 + x^2).
void quantize_row_iq2_s(const float* x, block_iq2_s* y, int64_t n, const float* importance);
// IQ1_S / IQ1_M (quantize_row_iq1_{s,m}_impl: every split of a block's sorted values into
// the three levels scored from prefix sums, the best snapped onto the 2048-point grid), with
// importance (IQ1_M also without: weights x^2; llama-quantize requires one for both).
void quantize_row_iq1_s(const float* x, block_iq1_s* y, int64_t n, const float* importance);
void quantize_row_iq1_m(const float* x, block_iq1_m* y, int64_t n, const float* importance);
// IQ3_XXS (quantize_row_iq3_xxs_impl: 31 scales, off-grid points snapped again at the best),
// with importance (llama-quantize requires one) or without (weights x^2).
void quantize_row_iq3_xxs(const float* x, block_iq3_xxs* y, int64_t n, const float* importance = nullptr);

// q4_0, q4_1, q5_0, q5_1, q4_K, q5_K and q6_K with an importance row: ggml's
// quantize_row_*_impl (llama-quantize --imatrix), a different search from the plain ones.
bool has_imatrix_variant(DType t);
void quantize_row_imatrix(DType t, const float* x, void* dst, int64_t n, const float* importance);

// True when quantize_row() can produce type t (F32, F16, BF16 and the types above that
// need no importance matrix).
bool has_quantizer(DType t);
// True for the types whose quantizer needs an importance row (IQ2_XXS, IQ2_XS, IQ1_S, and
// IQ2_S, IQ1_M and IQ3_XXS, which kiln could write without one but llama-quantize refuses to; ggml's
// ggml_quantize_requires_imatrix): quantize_row with one.
bool needs_importance(DType t);

// Writes row_bytes(t, n) bytes to dst and returns that count; F32 copies, F16 and BF16
// round to nearest even. Returns 0 (and writes nothing) when !has_quantizer(t).
size_t quantize_row(DType t, const float* x, void* dst, int64_t n);
// The same with an importance row (n per-element weights, e.g. an imatrix row; nullptr for
// none), which q2_K, the IQ types and the has_imatrix_variant types use and
// needs_importance(t) types require.
size_t quantize_row(DType t, const float* x, void* dst, int64_t n, const float* importance);

// ---- dot product ----------------------------------------------------------------------

// sum_i dequant(w_row)[i] * x[i], accumulated in double: the reference for SIMD
// dequant-matmul kernels.
float vec_dot_ref(DType wt, const void* w_row, const float* x, int64_t n);

}  // namespace kiln::ref
