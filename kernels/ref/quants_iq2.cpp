// The lattice quantizers (kernels/ref/quants.h): ggml's search for IQ2_XXS, which needs an
// importance matrix, bit-exact with llama-quantize's output. Compiled without -m flags like
// quants.cpp, so no float operation is contracted into an FMA and every sum rounds as in
// ggml's C.
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

// A 2-bit lattice (IQ2_XXS's 256 points of 8 values 8, 25, 43) in the quantizer's own
// coordinates: value codes l = 0, 1, 2 at positions 2l + 1. `map` takes a point's 16-bit code
// (2 bits per value) to its grid index, or to -1 - (its offset in `neighbours`) for codes off
// the grid: there, the list (count first) of the grid points nearest to it in squared
// distance, all of the nearest 2 distances (ties by index), as ggml's iq2xs_init_impl
// builds it. Only codes of values 0..2 are ever looked up (the quantizer clamps to 2), so
// only those get lists.
struct Lattice2 {
    std::vector<std::array<int8_t, 8>> pos;  // [grid index] positions 1, 3, 5
    std::vector<int> map;                    // [16-bit code]
    std::vector<uint16_t> neighbours;
    explicit Lattice2(const uint8_t (*grid)[8], int n, int nwant) : pos(size_t(n)), map(1 << 16, 0) {
        for (int e = 0; e < n; ++e)
            for (int i = 0; i < 8; ++i) pos[size_t(e)][size_t(i)] = int8_t(grid[e][i] == 8 ? 1 : grid[e][i] == 25 ? 3 : 5);
        std::vector<bool> on_grid(1 << 16, false);
        for (int e = 0; e < n; ++e) {
            int code = 0;
            for (int i = 0; i < 8; ++i) code |= ((pos[size_t(e)][size_t(i)] - 1) / 2) << (2 * i);
            map[size_t(code)] = e, on_grid[size_t(code)] = true;
        }
        std::vector<std::pair<int, int>> dist(static_cast<size_t>(n));  // (squared distance, grid index)
        for (int code = 0; code < (1 << 16); ++code) {
            bool reachable = true;
            for (int i = 0; i < 8; ++i) reachable = reachable && ((code >> (2 * i)) & 3) < 3;
            if (on_grid[size_t(code)] || !reachable) continue;
            for (int e = 0; e < n; ++e) {
                int d2 = 0;
                for (int i = 0; i < 8; ++i) {
                    const int d = pos[size_t(e)][size_t(i)] - (2 * ((code >> (2 * i)) & 3) + 1);
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
    // The grid point for code u of values xval (8, |x|) nearest in weighted squared error at
    // this scale; L gets its value codes. ggml's iq2_find_best_neighbour.
    int best_neighbour(int u, const float* xval, const float* weight, float scale, int8_t* L) const {
        const uint16_t* list = neighbours.data() + (-1 - map[size_t(u)]);
        float best_d2 = FLT_MAX;
        int best = -1;
        for (int j = 1; j <= list[0]; ++j) {
            float d2 = 0;
            for (int i = 0; i < 8; ++i) {
                const float diff = scale * float(pos[list[j]][size_t(i)]) - xval[i];
                d2 += weight[i] * diff * diff;
            }
            if (d2 < best_d2) best_d2 = d2, best = list[j];
        }
        for (int i = 0; i < 8; ++i) L[i] = int8_t((pos[size_t(best)][size_t(i)] - 1) / 2);
        return best;
    }
    // The grid index of the point nearest to L's codes (on the grid, or its best neighbour).
    int snap(int8_t* L, const float* xval, const float* weight, float scale) const {
        int u = 0;
        for (int i = 0; i < 8; ++i) u |= L[i] << (2 * i);
        return map[size_t(u)] >= 0 ? map[size_t(u)] : best_neighbour(u, xval, weight, scale, L);
    }
};

const Lattice2& iq2xxs_lattice() {
    static const Lattice2 lattice(kIqGrids.iq2xxs, 256, 2);
    return lattice;
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

}  // namespace

void quantize_row_iq2_xxs(const float* x, block_iq2_xxs* y, int64_t n, const float* importance) {
    KILN_ASSERT(importance != nullptr, "quantize_row_iq2_xxs: IQ2_XXS needs an importance matrix");
    const Lattice2& lat = iq2xxs_lattice();
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
            // |x| with its signs; an odd count of negatives flips the least important weight
            // (the format stores 7 sign bits, the 8th is parity).
            for (int k = 0; k < 4; ++k) {
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
            float best = 0;
            for (int is = -6; is <= 6; ++is) {
                const float id = (float(2 * kMaxQ - 1) + float(is) * 0.1f) / eff_max, this_scale = 1 / id;
                for (int k = 0; k < 4; ++k) {
                    for (int i = 0; i < 8; ++i) Laux[8 * k + i] = int8_t(std::clamp(nearest(0.5f * (id * xval[8 * k + i] - 1)), 0, kMaxQ - 1));
                    lat.snap(Laux + 8 * k, xval + 8 * k, waux + 8 * k, this_scale);
                }
                float sumqx = 0, sumq2 = 0;
                for (int i = 0; i < 32; ++i) {
                    const float q = float(2 * Laux[i] + 1);
                    sumqx += weight[i] * xval[i] * q;
                    sumq2 += weight[i] * q * q;
                }
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
                float sumqx = 0, sumq2 = 0;
                for (int i = 0; i < 32; ++i) {
                    const float q = float(2 * L[i] + 1);
                    sumqx += weight[i] * xval[i] * q;
                    sumq2 += weight[i] * q * q;
                }
                if (sumq2 > 0) scale = sumqx / sumq2;
            }
            if (scale < 0) {  // never expected (ggml guards it too): a positive scale, signs flipped
                scale = -scale;
                for (int k = 0; k < 4; ++k) block_signs[k] = uint8_t(~block_signs[k] & 127);
            }
            for (int k = 0; k < 4; ++k) {
                int u = 0;
                for (int i = 0; i < 8; ++i) u |= L[8 * k + i] << (2 * i);
                const int grid_index = lat.map[size_t(u)];
                KILN_ASSERT(grid_index >= 0, "quantize_row_iq2_xxs: point %d is not on the grid", u);
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
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int l = std::clamp(nearest(0.5f * (id * scales[ib] - 1)), 0, 15);
            q2[2 * ib + 1] |= uint32_t(l) << 28;
        }
        std::memcpy(y[ibl].qs, q2, QK_K / 4);
    }
}

}  // namespace kiln::ref
