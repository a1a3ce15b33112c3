// The scale searches ggml's quantizers share (kernels/ref/fit.cpp): the k-quant and legacy
// quantizers (quants.cpp), their importance-weighted variants (quants_imatrix.cpp) and the
// 2-3 bit formats (quants_weighted.cpp) call them, so each search is written once and
// rounds as ggml's C does.
#pragma once

#include <cstdint>

#include "kiln/format/blocks.h"

namespace kiln::ref {

// x[i] ~ scale * L[i] + min over codes 0..nmax with min <= 0 (ggml's make_qkx2_quants /
// make_qkx3_quants, the same for given weights w): the first guess spans [min(x, 0),
// max(x)]; then nstep + 1 grids of (nmax + rmin + k rdelta) steps each get the closed-form
// weighted least-squares (scale, min) of their codes, the best (by weighted |error| when
// use_mad, else squared error) moving the offset for the next. Returns the scale, *neg_min =
// -min. n <= 32.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* neg_min, float rmin, float rdelta, int nstep,
                    bool use_mad = false);

// ggml's make_qp_quants: codes 0..nmax of the n non-negative x with a weighted
// least-squares scale, after trying 8 scales around nmax / max and 5 rounds of one-code moves.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* w);

// x[i] ~ scale * (L[i] - nmax) over codes 0..2 nmax - 1 (ggml's make_qx_quants, rmse_type
// 1): weights w, or x^2 (the large values fitted best) when w is null. n <= 32.
float fit_scale_signed(int n, int nmax, const float* x, int8_t* L, const float* w = nullptr);

// ggml's sigma2 of a 256-value super-block, 2 sum(x^2) / 256: the error weights' floor.
inline float superblock_sigma2(const float* x) {
    float sumx2 = 0;
    for (int i = 0; i < 256; ++i) sumx2 += x[i] * x[i];
    return 2 * sumx2 / 256;
}

// Inverse of unpack_scale_min_k4: eight 6-bit scales and mins into q4_K/q5_K's 12 bytes.
void pack_scale_min_k4(const uint8_t* sc, const uint8_t* m, uint8_t* out);

// 32 codes of 4 or 5 bits into the legacy layout: low nibbles of codes 0..15, high nibbles
// of codes 16..31; the fifth bits (if any) into qh (4 bytes), bit j = code j.
void pack_nibbles32(const uint8_t* q, uint8_t* qs);
void pack_fifth_bits32(const uint8_t* q, uint8_t* qh);

// ---- the k-quant super-blocks, as the plain and the imatrix quantizers both finish them ----

// q4_K / q5_K: the eight 6-bit sub-block scales sc and mins m with the super-block's d and
// dmin (stored as fp16) into the block, then every code L (256, 0..nmax) redone against the
// scales as stored, which absorbs part of their rounding (a sub-block whose stored scale is
// 0 keeps the codes it has).
void store_scales_k(const float* x, int nmax, const uint8_t* sc, const uint8_t* m, float d, float dmin, f16_bits* d_out, f16_bits* dmin_out,
                    uint8_t* scales12, uint8_t* L);
void store_codes(const uint8_t* L, block_q4_K* y);  // the nibbles
void store_codes(const uint8_t* L, block_q5_K* y);  // the nibbles and the fifth bits
// q6_K from the 16 sub-block scales (per 16 values) and their codes L (0..63): the scales as
// int8 against the one of largest magnitude, which maps to -128 with d = its scale / -128
// carrying the sign; the codes redone against them; all zero when every scale is ~0.
void store_q6_K(const float* x, const float* scales, int8_t* L, block_q6_K* y);

}  // namespace kiln::ref
