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
#include "ref/quants.h"
#include "ref/rounding.h"

#include "kiln/status.h"

namespace kiln::ref {

namespace {

int nearest(float v) { return round_clamp(v, -4194303, 4194303); }  // ggml's nearest_int

// A lattice (IQ2_XXS's 256 points of 8 values 8, 25, 43; IQ3_XXS's 256 points of 4 values
// 4, 12, ..., 62) in the quantizer's own coordinates: value codes l (the level's index) at
// positions 2l + 1. `map` takes a point's code (kBits per value) to its grid index, or to
// -1 - (its offset in `neighbours`) for codes off the grid: there, the list (count first) of
// the grid points nearest to it in squared distance, all of the nearest `nwant` distances
// (ties by index), as ggml's iq2xs_init_impl / iq3xs_init_impl build it. Only codes of
// values up to max_code are ever looked up (the quantizer clamps to it), so only those get
// lists.
template <int kPer, int kBits>
struct Lattice {
    std::vector<std::array<int8_t, kPer>> pos;  // [grid index] positions 2l + 1
    std::vector<int> map;                       // [code]
    std::vector<uint16_t> neighbours;
    Lattice(const uint8_t* grid, int n, const uint8_t* levels, int n_levels, int max_code, int nwant) : pos(size_t(n)), map(size_t(1) << (kPer * kBits), 0) {
        for (int e = 0; e < n; ++e)
            for (int i = 0; i < kPer; ++i) {
                int l = 0;
                while (l + 1 < n_levels && levels[l] != grid[kPer * e + i]) ++l;
                pos[size_t(e)][size_t(i)] = int8_t(2 * l + 1);
            }
        std::vector<bool> on_grid(map.size(), false);
        for (int e = 0; e < n; ++e) {
            int code = 0;
            for (int i = 0; i < kPer; ++i) code |= ((pos[size_t(e)][size_t(i)] - 1) / 2) << (kBits * i);
            map[size_t(code)] = e, on_grid[size_t(code)] = true;
        }
        std::vector<std::pair<int, int>> dist(static_cast<size_t>(n));  // (squared distance, grid index)
        for (int code = 0; code < int(map.size()); ++code) {
            bool reachable = true;
            for (int i = 0; i < kPer; ++i) reachable = reachable && ((code >> (kBits * i)) & ((1 << kBits) - 1)) <= max_code;
            if (on_grid[size_t(code)] || !reachable) continue;
            for (int e = 0; e < n; ++e) {
                int d2 = 0;
                for (int i = 0; i < kPer; ++i) {
                    const int d = pos[size_t(e)][size_t(i)] - (2 * ((code >> (kBits * i)) & ((1 << kBits) - 1)) + 1);
                    d2 += d * d;
                }
                dist[size_t(e)] = {d2, e};
            }
            std::sort(dist.begin(), dist.end());
            map[size_t(code)] = -1 - int(neighbours.size());
            const size_t start = neighbours.size();
            neighbours.push_back(0);
            int d2 = dist[0].first, nhave = 1;
            for (const auto& [d, e] : dist) {
                if (d > d2) {
                    if (nhave == nwant) break;
                    d2 = d, ++nhave;
                }
                neighbours.push_back(uint16_t(e));
            }
            neighbours[start] = uint16_t(neighbours.size() - start - 1);
        }
    }
    int code_of(const int8_t* L) const {
        int u = 0;
        for (int i = 0; i < kPer; ++i) u |= L[i] << (kBits * i);
        return u;
    }
    // The grid index of the point of codes L (kPer of them): itself when on the grid (then
    // *on = true), else its neighbour nearest in weighted squared error to xval at this
    // scale, whose codes replace L's (ggml's iq2_find_best_neighbour / iq3_...).
    int snap(int8_t* L, const float* xval, const float* weight, float scale, bool* on = nullptr) const {
        const int u = code_of(L);
        if (on) *on = map[size_t(u)] >= 0;
        if (map[size_t(u)] >= 0) return map[size_t(u)];
        const uint16_t* list = neighbours.data() + (-1 - map[size_t(u)]);
        float best_d2 = FLT_MAX;
        int best = -1;
        for (int j = 1; j <= list[0]; ++j) {
            float d2 = 0;
            for (int i = 0; i < kPer; ++i) {
                const float diff = scale * float(pos[list[j]][size_t(i)]) - xval[i];
                d2 += weight[i] * diff * diff;
            }
            if (d2 < best_d2) best_d2 = d2, best = list[j];
        }
        for (int i = 0; i < kPer; ++i) L[i] = int8_t((pos[size_t(best)][size_t(i)] - 1) / 2);
        return best;
    }
};

const uint8_t kIq2Levels[3] = {8, 25, 43}, kIq3Levels[8] = {4, 12, 20, 28, 36, 44, 52, 62}, kIq3sLevels[8] = {1, 3, 5, 7, 9, 11, 13, 15};

const Lattice<8, 2>& iq2xxs_lattice() {
    static const Lattice<8, 2> lattice(&kIqGrids.iq2xxs[0][0], 256, kIq2Levels, 3, 2, 2);
    return lattice;
}
const Lattice<8, 2>& iq2xs_lattice() {
    static const Lattice<8, 2> lattice(&kIqGrids.iq2xs[0][0], 512, kIq2Levels, 3, 2, 2);
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

// ggml's make_qp_quants: codes 0..nmax of the n non-negative x with a weighted
// least-squares scale, after trying 8 scales around nmax / max and 5 rounds of one-code moves.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* w) {
    float max = 0;
    for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
    if (max < kGroupMaxEps) {
        std::memset(L, 0, size_t(n));
        return 0.0f;
    }
    float iscale = float(nmax) / max;
    for (int i = 0; i < n; ++i) L[i] = uint8_t(nearest(iscale * x[i]));
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - scale * float(L[i]);
        best_mse += w[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * float(is) + float(nmax)) / max, scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::min(nmax, nearest(iscale_is * x[i]));
            const float diff = x[i] - scale_is * float(l);
            mse += w[i] * diff * diff;
        }
        if (mse < best_mse) best_mse = mse, iscale = iscale_is;
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = std::min(nmax, nearest(iscale * x[i]));
        L[i] = uint8_t(l);
        sumlx += w[i] * x[i] * float(l);
        suml2 += w[i] * float(l) * float(l);
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float slx = sumlx - w[i] * x[i] * float(L[i]);
            float sl2 = suml2 - w[i] * float(L[i]) * float(L[i]);
            if (slx > 0 && sl2 > 0) {
                const int new_l = std::min(nmax, nearest(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w[i] * x[i] * float(new_l);
                    sl2 += w[i] * float(new_l) * float(new_l);
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) L[i] = uint8_t(new_l), sumlx = slx, suml2 = sl2, ++n_changed;
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// x[i] ~ scale * L[i] + min over codes 0..nmax with min <= 0 (ggml's make_qkx2_quants /
// make_qkx3_quants, the same for given weights): the first guess spans [min(x, 0), max(x)];
// then nstep + 1 grids of (nmax + rmin + k rdelta) steps each get the closed-form weighted
// least-squares (scale, min) of their codes, the best (by weighted |error| when use_mad,
// else squared error) moving the offset for the next. Returns the scale, *neg_min = -min.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* neg_min, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        std::memset(L, 0, size_t(n));
        *neg_min = -min;
        return 0.0f;
    }
    auto err_of = [use_mad](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
    float iscale = float(nmax) / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = uint8_t(std::clamp(nearest(iscale * (x[i] - min)), 0, nmax));
        best += w[i] * err_of(scale * float(L[i]) + min - x[i]);
    }
    uint8_t cand[16];
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(nearest(iscale * (x[i] - min)), 0, nmax);
            cand[i] = uint8_t(l);
            sum_l += w[i] * float(l);
            sum_l2 += w[i] * float(l) * float(l);
            sum_xl += w[i] * float(l) * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D, this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) this_min = 0, this_scale = sum_xl / sum_l2;
        float err = 0;
        for (int i = 0; i < n; ++i) err += w[i] * err_of(this_scale * float(cand[i]) + this_min - x[i]);
        if (err < best) {
            std::memcpy(L, cand, size_t(n));
            best = err, scale = this_scale, min = this_min;
        }
    }
    *neg_min = -min;
    return scale;
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
    constexpr int kMaxQ = 3;
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float* xbl = x + QK_K * ibl;
        float scales[QK_K / 16], weight[16], waux[16], xval[16];
        int8_t L[16], Laux[16];
        bool on_grid[2], on_grid_aux[2];
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
        float sumx2 = 0;
        for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
        const float sigma2 = 2 * sumx2 / QK_K;
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
        float sumx2 = 0;
        for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
        const float sigma2 = 2 * sumx2 / QK_K;
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
