// The scale searches ggml's quantizers share (kernels/ref/fit.cpp): the k-quant and legacy
// quantizers (quants.cpp), their importance-weighted variants (quants_imatrix.cpp) and the
// 2-3 bit formats (quants_weighted.cpp) call them, so each search is written once and
// rounds as ggml's C does.
#pragma once

#include <cstdint>

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

}  // namespace kiln::ref
