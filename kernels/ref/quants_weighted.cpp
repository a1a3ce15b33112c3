// The quantizers of the 2- and 3-bit formats with llama-quantize's weighted searches
// (kernels/ref/quants.h): q2_K (with or without an importance matrix), the IQ2_XXS and
// IQ2_XS lattices (which need one), IQ3_XXS and IQ3_S, bit-exact with llama-quantize's
// output. Compiled without -m flags like quants.cpp, so no float operation is contracted
// into an FMA and every sum rounds as in ggml's C.
#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "ref/iq_grids.h"
#include "ref/lattice.h"
#include "ref/fit.h"
#include "ref/quants.h"
#include "ref/rounding.h"

#include "kiln/status.h"

namespace kiln::ref {

namespace {

int nearest(float v) { return round_clamp(v, -4194303, 4194303); }  // ggml's nearest_int

const uint8_t kIq2Levels[3] = {8, 25, 43}, kIq3Levels[8] = {4, 12, 20, 28, 36, 44, 52, 62}, kIq3sLevels[8] = {1, 3, 5, 7, 9, 11, 13, 15};

const Lattice<8, 2>& iq2xxs_lattice() {
    static const Lattice<8, 2> lattice(&kIqGrids.iq2xxs[0][0], 256, kIq2Levels, 3, 2, 2);
    return lattice;
}
const Lattice<8, 2>& iq2xs_lattice() {
    static const Lattice<8, 2> lattice(&kIqGrids.iq2xs[0][0], 512, kIq2Levels, 3, 2, 2);
    return lattice;
}
const Lattice<8, 2>& iq2s_lattice() {  // nwant 1: only the nearest neighbours, as ggml lists them for IQ2_S
    static const Lattice<8, 2> lattice(&kIqGrids.iq2s[0][0], 1024, kIq2Levels, 3, 2, 1);
    return lattice;
}
const Lattice<4, 3>& iq3s_lattice() {
    static const Lattice<4, 3> lattice(&kIqGrids.iq3s[0][0], 512, kIq3sLevels, 8, 7, 3);
    return lattice;
}
const Lattice<4, 3>& iq3xxs_lattice() {
    static const Lattice<4, 3> lattice(&kIqGrids.iq3xxs[0][0], 256, kIq3Levels, 8, 7, 2);
    return lattice;
}

// |x| of n_groups x 8 weights with their sign bits, 7 per 8 stored: an odd count of
// negatives flips the least important weight (the 8th sign is the group's parity).
// block_signs[k] gets group k's 7 bits.
void even_signs(const float* xb, const float* weight, float* xval, uint8_t* block_signs, int n_groups = 4) {
    for (int k = 0; k < n_groups; ++k) {
        int nflip = 0;
        uint8_t s = 0;
        for (int i = 0; i < 8; ++i) {
            if (xb[8 * k + i] >= 0) xval[8 * k + i] = xb[8 * k + i];
            else xval[8 * k + i] = -xb[8 * k + i], ++nflip, s = uint8_t(s | 1 << i);
        }
        if (nflip % 2) {
            int imin = 0;
            float min = weight[8 * k] * xb[8 * k] * xb[8 * k];
            for (int i = 1; i < 8; ++i) {
                const float ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                if (ax < min) min = ax, imin = i;
            }
            xval[8 * k + imin] = -xval[8 * k + imin];
            s = uint8_t(s ^ 1 << imin);
        }
        block_signs[k] = s & 127;
    }
}

// Weighted sum(w x q) and sum(w q^2) of n values against the positions 2L + 1.
void weighted_sums(const float* weight, const float* xval, const int8_t* L, float* sumqx, float* sumq2, int n = 32) {
    float qx = 0, q2 = 0;
    for (int i = 0; i < n; ++i) {
        const float q = float(2 * L[i] + 1);
        qx += weight[i] * xval[i] * q;
        q2 += weight[i] * q * q;
    }
    *sumqx = qx, *sumq2 = q2;
}

// The IQ3 quantizers' error weights of 32 values: importance x sqrt(sigma2 + x^2), or x^2
// without importance; waux = their square roots (for the neighbour search).
void iq3_weights(const float* xb, const float* qw, float sigma2, float* weight, float* waux) {
    if (qw)
        for (int i = 0; i < 32; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
    else
        for (int i = 0; i < 32; ++i) weight[i] = xb[i] * xb[i];
    for (int i = 0; i < 32; ++i) waux[i] = std::sqrt(weight[i]);
}

// The scale search of both IQ3 quantizers on a 32-weight sub-block (|x| in xval, largest
// max): 2 n_steps + 1 scales around max / 15 (steps of 0.2 / max in 1 / scale), each point
// snapped to the lattice at each, the best kept by weighted least squares; then the points
// the best scale left off the grid are snapped again at it and the scale refitted. IQ3_S
// (iq3s) starts with every point counted off the grid and, when any is off, snaps all of
// them again; IQ3_XXS only those. L gets the codes; returns the scale.
float iq3_search(const Lattice<4, 3>& lat, const float* xval, const float* weight, const float* waux, float max, int n_steps, bool iq3s, int8_t* L) {
    constexpr int kMaxQ = 8;
    int8_t Laux[32];
    bool on_grid[8], on_grid_aux[8];
    float best = 0, scale = max / (2 * kMaxQ - 1), sumqx, sumq2;
    std::fill(on_grid, on_grid + 8, !iq3s);
    for (int is = -n_steps; is <= n_steps; ++is) {
        const float id = (float(2 * kMaxQ - 1) + float(is) * 0.2f) / max, this_scale = 1 / id;
        for (int k = 0; k < 8; ++k) {
            for (int i = 0; i < 4; ++i) Laux[4 * k + i] = int8_t(std::clamp(nearest(0.5f * (id * xval[4 * k + i] - 1)), 0, kMaxQ - 1));
            lat.snap(Laux + 4 * k, xval + 4 * k, waux + 4 * k, this_scale, &on_grid_aux[k]);
        }
        weighted_sums(weight, xval, Laux, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2, best = scale * sumqx;
            std::memcpy(L, Laux, 32);
            std::copy(on_grid_aux, on_grid_aux + 8, on_grid);
        }
    }
    if (std::count(on_grid, on_grid + 8, false) > 0 && scale > 0) {
        const float id = 1 / scale;
        for (int k = 0; k < 8; ++k) {
            if (on_grid[k] && !iq3s) continue;
            for (int i = 0; i < 4; ++i) L[4 * k + i] = int8_t(std::clamp(nearest(0.5f * (id * xval[4 * k + i] - 1)), 0, kMaxQ - 1));
            lat.snap(L + 4 * k, xval + 4 * k, waux + 4 * k, scale);
        }
        weighted_sums(weight, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
    }
    return scale;
}

// The scale of 16 weights (two lattice points of 8) as ggml's IQ2_XS / IQ2_S searches fit
// it: 19 scales around max / 5, the best by weighted least squares; points off the grid at
// the best scale are snapped to their neighbours again and the scale refitted. L (16) gets
// the codes; the scale may come out negative (the caller flips the signs).
float iq2_fit16(const Lattice<8, 2>& lat, const float* weight, const float* waux, const float* xval, float max, int8_t* L) {
    constexpr int kMaxQ = 3;
    int8_t Laux[16];
    bool on_grid[2], on_grid_aux[2];
    float best = 0, scale = max / (2 * kMaxQ - 1), sumqx, sumq2;
    on_grid[0] = on_grid[1] = true;
    for (int is = -9; is <= 9; ++is) {
        const float id = (float(2 * kMaxQ - 1) + float(is) * 0.1f) / max, this_scale = 1 / id;
        for (int k = 0; k < 2; ++k) {
            for (int i = 0; i < 8; ++i) Laux[8 * k + i] = int8_t(std::clamp(nearest(0.5f * (id * xval[8 * k + i] - 1)), 0, kMaxQ - 1));
            lat.snap(Laux + 8 * k, xval + 8 * k, waux + 8 * k, this_scale, &on_grid_aux[k]);
        }
        weighted_sums(weight, xval, Laux, &sumqx, &sumq2, 16);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2, best = scale * sumqx;
            std::memcpy(L, Laux, 16);
            on_grid[0] = on_grid_aux[0], on_grid[1] = on_grid_aux[1];
        }
    }
    if ((!on_grid[0] || !on_grid[1]) && scale > 0) {
        const float id = 1 / scale;
        for (int k = 0; k < 2; ++k) {
            if (on_grid[k]) continue;
            for (int i = 0; i < 8; ++i) L[8 * k + i] = int8_t(std::clamp(nearest(0.5f * (id * xval[8 * k + i] - 1)), 0, kMaxQ - 1));
            lat.snap(L + 8 * k, xval + 8 * k, waux + 8 * k, scale);
        }
        weighted_sums(weight, xval, L, &sumqx, &sumq2, 16);
        if (sumq2 > 0) scale = sumqx / sumq2;
    }
    return scale;
}

}  // namespace

void quantize_row_q2_K(const float* x, block_q2_K* y, int64_t n, const float* importance) {
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        uint8_t L[QK_K];
        float scales[QK_K / 16], mins[QK_K / 16], weight[16];
        if (!importance) {  // ggml's quantize_row_q2_K_ref: weights |x|, scales and mins on 4 bits against their maxima
            float max_scale = 0, max_min = 0;
            for (int j = 0; j < QK_K / 16; ++j) {
                for (int l = 0; l < 16; ++l) weight[l] = std::fabs(x[16 * j + l]);
                scales[j] = fit_scale_min(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
                max_scale = std::max(max_scale, scales[j]), max_min = std::max(max_min, mins[j]);
            }
            for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = max_scale > 0 ? uint8_t(nearest(15.0f / max_scale * scales[j])) : 0;
            y[i].d = fp32_to_fp16(max_scale > 0 ? max_scale / 15.0f : 0.0f);
            if (max_min > 0)
                for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = uint8_t(y[i].scales[j] | nearest(15.0f / max_min * mins[j]) << 4);
            y[i].dmin = fp32_to_fp16(max_min > 0 ? max_min / 15.0f : 0.0f);
        } else {  // quantize_row_q2_K_impl: weights from the imatrix, the 4-bit scales and mins fitted too
            const float* qw = importance + QK_K * i;
            float sumx2 = 0, sw[QK_K / 16] = {};
            for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
            const float sigma2 = sumx2 / QK_K;
            for (int j = 0; j < QK_K / 16; ++j) {
                for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
                for (int l = 0; l < 16; ++l) sw[j] += weight[l];
                scales[j] = fit_scale_min(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], -0.9f, 0.05f, 36, false);
            }
            uint8_t Ls[QK_K / 16], Lm[QK_K / 16];
            y[i].d = fp32_to_fp16(make_qp_quants(QK_K / 16, 15, scales, Ls, sw));
            y[i].dmin = fp32_to_fp16(make_qp_quants(QK_K / 16, 15, mins, Lm, sw));
            for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = uint8_t(Ls[j] | Lm[j] << 4);
        }
        // The codes again against the stored (fp16, 4-bit) scales and mins.
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = fp16_to_fp32(y[i].d) * float(y[i].scales[j] & 0xF);
            if (d == 0) continue;
            const float m = fp16_to_fp32(y[i].dmin) * float(y[i].scales[j] >> 4);
            for (int l = 0; l < 16; ++l) L[16 * j + l] = uint8_t(std::clamp(nearest((x[16 * j + l] + m) / d), 0, 3));
        }
        for (int j = 0; j < QK_K; j += 128)
            for (int l = 0; l < 32; ++l)
                y[i].qs[j / 4 + l] = uint8_t(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
    }
}

void quantize_row_iq2_xxs(const float* x, block_iq2_xxs* y, int64_t n, const float* importance) {
    KILN_ASSERT(importance != nullptr, "quantize_row_iq2_xxs: IQ2_XXS needs an importance matrix");
    const Lattice<8, 2>& lat = iq2xxs_lattice();
    constexpr int kMaxQ = 3;
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float* xbl = x + QK_K * ibl;
        float scales[QK_K / 32], weight[32], waux[32], xval[32];
        int8_t L[32], Laux[32];
        uint8_t block_signs[4];
        uint32_t q2[2 * (QK_K / 32)] = {};  // per sub-block: 4 grid indices, then 4 x 7 sign bits and the scale
        y[ibl].d = fp32_to_fp16(0.0f);
        float sumx2 = 0;
        for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
        const float sigma2 = sumx2 / QK_K;
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float* xb = xbl + 32 * ib;
            const float* qw = importance + QK_K * ibl + 32 * ib;
            for (int i = 0; i < 32; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
            for (int i = 0; i < 32; ++i) waux[i] = std::sqrt(weight[i]);
            even_signs(xb, weight, xval, block_signs);
            float max = xval[0];
            for (int i = 1; i < 32; ++i) max = std::max(max, xval[i]);
            if (max < kGroupMaxEps) {
                scales[ib] = 0;
                continue;
            }
            float scale = make_qp_quants(32, kMaxQ + 1, xval, reinterpret_cast<uint8_t*>(L), weight);
            const float eff_max = scale * kMaxQ;
            if (eff_max <= 0) {
                scales[ib] = 0;
                continue;
            }
            float best = 0, sumqx, sumq2;
            for (int is = -6; is <= 6; ++is) {
                const float id = (float(2 * kMaxQ - 1) + float(is) * 0.1f) / eff_max, this_scale = 1 / id;
                for (int k = 0; k < 4; ++k) {
                    for (int i = 0; i < 8; ++i) Laux[8 * k + i] = int8_t(std::clamp(nearest(0.5f * (id * xval[8 * k + i] - 1)), 0, kMaxQ - 1));
                    lat.snap(Laux + 8 * k, xval + 8 * k, waux + 8 * k, this_scale);
                }
                weighted_sums(weight, xval, Laux, &sumqx, &sumq2);
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                    scale = sumqx / sumq2, best = scale * sumqx;
                    std::memcpy(L, Laux, 32);
                }
            }
            if (scale > 0) {
                const float id = 1 / scale;
                for (int k = 0; k < 4; ++k) {
                    for (int i = 0; i < 8; ++i) L[8 * k + i] = int8_t(std::clamp(nearest(0.5f * (id * xval[8 * k + i] - 1)), 0, kMaxQ - 1));
                    lat.snap(L + 8 * k, xval + 8 * k, waux + 8 * k, scale);
                }
                weighted_sums(weight, xval, L, &sumqx, &sumq2);
                if (sumq2 > 0) scale = sumqx / sumq2;
            }
            if (scale < 0) {  // never expected (ggml guards it too): a positive scale, signs flipped
                scale = -scale;
                for (int k = 0; k < 4; ++k) block_signs[k] = uint8_t(~block_signs[k] & 127);
            }
            for (int k = 0; k < 4; ++k) {
                const int grid_index = lat.map[size_t(lat.code_of(L + 8 * k))];
                KILN_ASSERT(grid_index >= 0, "quantize_row_iq2_xxs: a point off the grid");
                q2[2 * ib] |= uint32_t(grid_index) << (8 * k);
                q2[2 * ib + 1] |= uint32_t(block_signs[k]) << (7 * k);
            }
            scales[ib] = scale;
            max_scale = std::max(max_scale, scale);
        }
        if (max_scale == 0) {
            std::memset(y[ibl].qs, 0, QK_K / 4);
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = fp32_to_fp16(d);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 32; ++ib) q2[2 * ib + 1] |= uint32_t(std::clamp(nearest(0.5f * (id * scales[ib] - 1)), 0, 15)) << 28;
        std::memcpy(y[ibl].qs, q2, QK_K / 4);
    }
}

void quantize_row_iq2_xs(const float* x, block_iq2_xs* y, int64_t n, const float* importance) {
    KILN_ASSERT(importance != nullptr, "quantize_row_iq2_xs: IQ2_XS needs an importance matrix");
    const Lattice<8, 2>& lat = iq2xs_lattice();
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float* xbl = x + QK_K * ibl;
        float scales[QK_K / 16], weight[16], waux[16], xval[16];
        int8_t L[16];
        uint8_t block_signs[2];
        uint16_t q2[2 * (QK_K / 16)] = {};  // per 8 weights: 9-bit grid index | 7 sign bits << 9
        y[ibl].d = fp32_to_fp16(0.0f);
        std::memset(y[ibl].scales, 0, sizeof y[ibl].scales);
        float sumx2 = 0;
        for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
        const float sigma2 = sumx2 / QK_K;
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {  // a scale per 16 weights
            const float* xb = xbl + 16 * ib;
            const float* qw = importance + QK_K * ibl + 16 * ib;
            for (int i = 0; i < 16; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
            for (int i = 0; i < 16; ++i) waux[i] = std::sqrt(weight[i]);
            even_signs(xb, weight, xval, block_signs, 2);
            float max = xval[0];
            for (int i = 1; i < 16; ++i) max = std::max(max, xval[i]);
            std::memset(L, 0, 16);
            if (max < kGroupMaxEps) {
                scales[ib] = 0;
                continue;
            }
            float scale = iq2_fit16(lat, weight, waux, xval, max, L);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 2; ++k) block_signs[k] = uint8_t(~block_signs[k] & 127);
            }
            for (int k = 0; k < 2; ++k) {
                const int grid_index = lat.map[size_t(lat.code_of(L + 8 * k))];
                KILN_ASSERT(grid_index >= 0, "quantize_row_iq2_xs: a point off the grid");
                q2[2 * ib + k] = uint16_t(grid_index | block_signs[k] << 9);
            }
            scales[ib] = scale;
            max_scale = std::max(max_scale, scale);
        }
        if (max_scale == 0) {
            std::memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = fp32_to_fp16(d);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const int l = std::clamp(nearest(0.5f * (id * scales[ib] - 1)), 0, 15);
            y[ibl].scales[ib / 2] = uint8_t(ib % 2 == 0 ? l : y[ibl].scales[ib / 2] | l << 4);
        }
        std::memcpy(y[ibl].qs, q2, sizeof q2);
    }
}

// IQ2_S: IQ2_XS's search on the 1024-point lattice, 8 plain sign bits per 8 weights,
// sigma2 twice as large and (without importance) weights sigma2 / 4 + x^2; 10-bit indices
// (low bytes, then the sign bytes, in qs; top bits in qh), d stored as 0.9875 of max / 31.
void quantize_row_iq2_s(const float* x, block_iq2_s* y, int64_t n, const float* importance) {
    const Lattice<8, 2>& lat = iq2s_lattice();
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float* xbl = x + QK_K * ibl;
        float scales[QK_K / 16], weight[16], waux[16], xval[16];  // (16) one scale's weights
        int8_t L[16];
        std::memset(&y[ibl], 0, sizeof y[ibl]);
        const float sigma2 = superblock_sigma2(xbl);
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const float* xb = xbl + 16 * ib;
            if (importance) {
                const float* qw = importance + QK_K * ibl + 16 * ib;
                for (int i = 0; i < 16; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
            } else {
                for (int i = 0; i < 16; ++i) weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
            }
            for (int i = 0; i < 16; ++i) waux[i] = std::sqrt(weight[i]);
            uint8_t block_signs[2] = {};
            for (int i = 0; i < 16; ++i) {
                xval[i] = std::fabs(xb[i]);
                if (xb[i] < 0) block_signs[i / 8] = uint8_t(block_signs[i / 8] | 1 << (i % 8));
            }
            float max = xval[0];
            for (int i = 1; i < 16; ++i) max = std::max(max, xval[i]);
            std::memset(L, 0, 16);
            if (max < 1e-8f) {  // ggml's GROUP_MAX_EPS_IQ2_S
                scales[ib] = 0;
                continue;
            }
            float scale = iq2_fit16(lat, weight, waux, xval, max, L);
            if (scale < 0) scale = -scale, block_signs[0] = uint8_t(~block_signs[0]), block_signs[1] = uint8_t(~block_signs[1]);
            for (int k = 0; k < 2; ++k) {
                const int grid_index = lat.map[size_t(lat.code_of(L + 8 * k))], i8 = 2 * ib + k;
                KILN_ASSERT(grid_index >= 0, "quantize_row_iq2_s: a point off the grid");
                y[ibl].qs[i8] = uint8_t(grid_index & 255);
                y[ibl].qh[i8 / 4] = uint8_t(y[ibl].qh[i8 / 4] | (grid_index >> 8) << 2 * (i8 % 4));
                y[ibl].qs[QK_K / 8 + i8] = block_signs[k];
            }
            scales[ib] = scale;
            max_scale = std::max(max_scale, scale);
        }
        if (max_scale == 0) continue;
        const float d = max_scale / 31;
        y[ibl].d = fp32_to_fp16(d * 0.9875f);
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const int l = std::clamp(nearest(0.5f * (id * scales[ib] - 1)), 0, 15);
            y[ibl].scales[ib / 2] = uint8_t(ib % 2 == 0 ? l : y[ibl].scales[ib / 2] | l << 4);
        }
    }
}

void quantize_row_iq3_xxs(const float* x, block_iq3_xxs* y, int64_t n, const float* importance) {
    const Lattice<4, 3>& lat = iq3xxs_lattice();
    constexpr float kEps = 1e-8f;  // ggml's GROUP_MAX_EPS_IQ3_XXS
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float* xbl = x + QK_K * ibl;
        float scales[QK_K / 32], weight[32], waux[32], xval[32];
        int8_t L[32];
        uint8_t block_signs[4];
        uint8_t q3[3 * (QK_K / 8)] = {};  // 64 grid indices, then per sub-block 4 x 7 sign bits and the scale
        uint32_t signs_scale[QK_K / 32] = {};
        y[ibl].d = fp32_to_fp16(0.0f);
        const float sigma2 = superblock_sigma2(xbl);
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float* xb = xbl + 32 * ib;
            iq3_weights(xb, importance ? importance + QK_K * ibl + 32 * ib : nullptr, sigma2, weight, waux);
            even_signs(xb, weight, xval, block_signs);
            float max = xval[0];
            for (int i = 1; i < 32; ++i) max = std::max(max, xval[i]);
            std::memset(L, 0, 32);
            if (max < kEps) {
                scales[ib] = 0;
                continue;
            }
            float scale = iq3_search(lat, xval, weight, waux, max, 15, false, L);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; ++k) block_signs[k] = uint8_t(~block_signs[k] & 127);
            }
            for (int k = 0; k < 8; ++k) {
                const int grid_index = lat.map[size_t(lat.code_of(L + 4 * k))];
                KILN_ASSERT(grid_index >= 0, "quantize_row_iq3_xxs: a point off the grid");
                q3[8 * ib + k] = uint8_t(grid_index);
            }
            signs_scale[ib] = uint32_t(block_signs[0]) | uint32_t(block_signs[1]) << 7 | uint32_t(block_signs[2]) << 14 | uint32_t(block_signs[3]) << 21;
            scales[ib] = scale;
            max_scale = std::max(max_scale, scale);
        }
        if (max_scale == 0) {
            std::memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        const float d = max_scale / 31;
        y[ibl].d = fp32_to_fp16(d * 1.0125f);  // ggml's fudge factor
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 32; ++ib) signs_scale[ib] |= uint32_t(std::clamp(nearest(0.5f * (id * scales[ib] - 1)), 0, 15)) << 28;
        std::memcpy(y[ibl].qs, q3, QK_K / 4);
        std::memcpy(y[ibl].qs + QK_K / 4, signs_scale, sizeof signs_scale);
    }
}

void quantize_row_iq3_s(const float* x, block_iq3_s* y, int64_t n, const float* importance) {
    const Lattice<4, 3>& lat = iq3s_lattice();
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float* xbl = x + QK_K * ibl;
        float scales[QK_K / 32], weight[32], waux[32], xval[32];
        int8_t L[32];
        uint8_t block_signs[4];
        std::memset(&y[ibl], 0, sizeof(block_iq3_s));
        // Where the next sub-block's indices and signs go: like ggml, an all-zero sub-block
        // (skipped) does not advance them.
        uint8_t* qs = y[ibl].qs;
        uint8_t* signs = y[ibl].signs;
        const float sigma2 = superblock_sigma2(xbl);
        float max_scale = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const float* xb = xbl + 32 * ib;
            iq3_weights(xb, importance ? importance + QK_K * ibl + 32 * ib : nullptr, sigma2, weight, waux);
            for (int k = 0; k < 4; ++k) {  // a stored sign bit per weight
                uint8_t sg = 0;
                for (int i = 0; i < 8; ++i) {
                    if (xb[8 * k + i] >= 0) xval[8 * k + i] = xb[8 * k + i];
                    else xval[8 * k + i] = -xb[8 * k + i], sg = uint8_t(sg | 1 << i);
                }
                block_signs[k] = sg;
            }
            float max = xval[0];
            for (int i = 1; i < 32; ++i) max = std::max(max, xval[i]);
            std::memset(L, 0, 32);
            if (max == 0) {
                scales[ib] = 0;
                continue;
            }
            float scale = iq3_search(lat, xval, weight, waux, max, 9, true, L);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; ++k) block_signs[k] = uint8_t(~block_signs[k]);
            }
            for (int k = 0; k < 8; ++k) {
                const int grid_index = lat.map[size_t(lat.code_of(L + 4 * k))];
                KILN_ASSERT(grid_index >= 0, "quantize_row_iq3_s: a point off the grid");
                qs[k] = uint8_t(grid_index & 255);
                y[ibl].qh[(ib * 8 + k) / 8] = uint8_t(y[ibl].qh[(ib * 8 + k) / 8] | (grid_index >> 8) << ((ib * 8 + k) % 8));
            }
            qs += 8;
            std::memcpy(signs, block_signs, 4);
            signs += 4;
            scales[ib] = scale;
            max_scale = std::max(max_scale, scale);
        }
        if (max_scale == 0) continue;
        const float d = max_scale / 31;
        y[ibl].d = fp32_to_fp16(d * 1.033f);  // ggml's fudge factor
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / 32; ib += 2) {
            const int l1 = std::clamp(nearest(0.5f * (id * scales[ib] - 1)), 0, 15), l2 = std::clamp(nearest(0.5f * (id * scales[ib + 1] - 1)), 0, 15);
            y[ibl].scales[ib / 2] = uint8_t(l1 | l2 << 4);
        }
    }
}

}  // namespace kiln::ref
