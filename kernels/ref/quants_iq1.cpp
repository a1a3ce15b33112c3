// The IQ1_S and IQ1_M quantizers (kernels/ref/quants.h), as ggml's quantize_row_iq1_s_impl /
// quantize_row_iq1_m_impl search them, bit-exact with llama-quantize: a block's values take
// three levels {-1, 0, 1} + shift (+-1/8) times a scale; sorted by value, every split into the
// three levels is scored at once from prefix sums, the best snapped onto the 2048-point grid.
// Compiled without -m flags like quants.cpp, so no float operation is contracted into an FMA.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <utility>

#include "ref/fit.h"
#include "ref/iq_grids.h"
#include "ref/lattice.h"
#include "ref/quants.h"
#include "ref/rounding.h"

#include "kiln/status.h"

namespace kiln::ref {

namespace {

int nearest(float v) { return round_clamp(v, -4194303, 4194303); }  // ggml's nearest_int

constexpr float kDelta = 0.125f;                                     // IQ1S_DELTA, IQ1M_DELTA
constexpr float kPlus[3] = {-1 + kDelta, kDelta, 1 + kDelta};        // x_p: levels shifted up
constexpr float kMinus[3] = {-1 - kDelta, -kDelta, 1 - kDelta};      // x_m: shifted down

const Lattice<8, 2>& iq1_lattice() {  // nwant 3, as ggml lists IQ1's neighbours
    static const uint8_t levels[3] = {255, 0, 1};  // -1, 0, 1 as the grid's bytes
    static const Lattice<8, 2> lattice(reinterpret_cast<const uint8_t*>(&kIqGrids.iq1s[0][0]), 2048, levels, 3, 2, 3);
    return lattice;
}

// Block values in ascending order with their positions (ggml sorts (value, index) pairs
// with glibc's qsort, a stable merge sort). order: (n) positions.
void sort_by_value(const float* xb, int n, int* order) {
    std::pair<float, int> pairs[32];  // (n)
    for (int j = 0; j < n; ++j) pairs[j] = {xb[j], j};
    std::stable_sort(pairs, pairs + n, [](const auto& a, const auto& b) { return a.first < b.first; });
    for (int j = 0; j < n; ++j) order[j] = pairs[j].second;
}

// The three-level split (codes 0, 1, 2 below, between and above the boundaries) of sorted
// positions `order` into L.
void split_codes(const int* order, int n, int i1, int i2, int8_t* L) {
    for (int j = 0; j < n; ++j) L[order[j]] = int8_t(j < i1 ? 0 : j < i2 ? 1 : 2);
}

// Snaps each group of 8 codes onto the grid (levels `xx(k)` for group k) and refits the
// scale if any was off it; index: (n / 8) grid indices.
template <class Levels>
float snap_groups(const float* xb, const float* weight, int n, float scale, int8_t* L, uint16_t* index, Levels xx) {
    const Lattice<8, 2>& lat = iq1_lattice();
    bool all_on_grid = true;
    for (int k = 0; k < n / 8; ++k) {
        bool on = true;
        index[k] = uint16_t(lat.snap(L + 8 * k, xb + 8 * k, weight + 8 * k, scale, &on, xx(k)));
        all_on_grid = all_on_grid && on;
    }
    if (all_on_grid) return scale;
    float sumqx = 0, sumq2 = 0;
    for (int k = 0; k < n / 8; ++k)
        for (int j = 0; j < 8; ++j) {
            const float w = weight[8 * k + j], q = xx(k)[L[8 * k + j]];
            sumqx += w * q * xb[8 * k + j];
            sumq2 += w * q * q;
        }
    return sumqx > 0 && sumq2 > 0 ? sumqx / sumq2 : scale;
}

}  // namespace

void quantize_row_iq1_s(const float* x, block_iq1_s* y, int64_t n, const float* importance) {
    KILN_ASSERT(importance != nullptr, "quantize_row_iq1_s: IQ1_S needs an importance matrix");
    constexpr int kBlock = 32;
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float* xbl = x + QK_K * ibl;
        std::memset(&y[ibl], 0, sizeof y[ibl]);
        const float sigma2 = superblock_sigma2(xbl);
        float scales[QK_K / kBlock], max_scale = 0;  // (8) per block of 32
        int shifts[QK_K / kBlock];
        for (int ib = 0; ib < QK_K / kBlock; ++ib) {
            const float *xb = xbl + kBlock * ib, *qw = importance + QK_K * ibl + kBlock * ib;
            float weight[kBlock], max = std::fabs(xb[0]);
            for (int i = 0; i < kBlock; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
            for (int i = 1; i < kBlock; ++i) max = std::max(max, std::fabs(xb[i]));
            scales[ib] = 0, shifts[ib] = 1;
            if (max < 1e-12f) continue;  // GROUP_MAX_EPS_IQ1_S
            int order[kBlock];
            sort_by_value(xb, kBlock, order);
            float sumx[kBlock + 1] = {}, sumw[kBlock + 1] = {};  // prefix sums over the sorted values
            for (int j = 0; j < kBlock; ++j) {
                const int i = order[j];
                sumx[j + 1] = sumx[j] + weight[i] * xb[i];
                sumw[j + 1] = sumw[j] + weight[i];
            }
            float best_score = -FLT_MAX, scale = max;
            int besti1 = -1, besti2 = -1, best_shift = 0;
            for (int i1 = 0; i1 <= kBlock; ++i1)
                for (int i2 = i1; i2 <= kBlock; ++i2)
                    for (int shift : {1, -1}) {
                        const float* v = shift == 1 ? kPlus : kMinus;
                        const float sumqx = (sumx[i1] - sumx[0]) * v[0] + (sumx[i2] - sumx[i1]) * v[1] + (sumx[kBlock] - sumx[i2]) * v[2];
                        const float sumq2 =
                            (sumw[i1] - sumw[0]) * v[0] * v[0] + (sumw[i2] - sumw[i1]) * v[1] * v[1] + (sumw[kBlock] - sumw[i2]) * v[2] * v[2];
                        if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2)
                            scale = sumqx / sumq2, best_score = scale * sumqx, besti1 = i1, besti2 = i2, best_shift = shift;
                    }
            if (besti1 < 0 || besti2 < 0 || best_shift == 0) continue;
            int8_t L[kBlock];
            split_codes(order, kBlock, besti1, besti2, L);
            if (scale < 0) {
                for (int8_t& l : L) l = int8_t(2 - l);
                scale = -scale, best_shift = -best_shift;
            }
            uint16_t index[kBlock / 8];
            const float* xx = best_shift == 1 ? kPlus : kMinus;
            scale = snap_groups(xb, weight, kBlock, scale, L, index, [xx](int) { return xx; });
            uint16_t h = 0;
            for (int k = 0; k < kBlock / 8; ++k) {
                y[ibl].qs[(kBlock / 8) * ib + k] = uint8_t(index[k] & 255);
                h = uint16_t(h | (index[k] >> 8) << 3 * k);
            }
            y[ibl].qh[ib] = h;
            scales[ib] = scale, shifts[ib] = best_shift;
            max_scale = std::max(max_scale, scale);
        }
        if (max_scale == 0) continue;
        const float d = max_scale / 15;
        y[ibl].d = fp32_to_fp16(d * 1.125f);  // ggml's fudge factor
        const float id = 1 / d;
        for (int ib = 0; ib < QK_K / kBlock; ++ib) {
            int l = std::clamp(nearest(0.5f * (id * scales[ib] - 1)), 0, 7);
            if (shifts[ib] == -1) l |= 8;
            y[ibl].qh[ib] = uint16_t(y[ibl].qh[ib] | l << 12);
        }
    }
}

void quantize_row_iq1_m(const float* x, block_iq1_m* y, int64_t n, const float* importance) {
    constexpr int kBlock = 16;
    const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};  // shift signs of the two halves by combination
    // Combination k: the first half's levels (k < 2: up), the second's (k even: up).
    auto levels = [](int k, int half) { return (half == 0 ? k < 2 : k % 2 == 0) ? kPlus : kMinus; };
    for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
        const float* xbl = x + QK_K * ibl;
        std::memset(&y[ibl], 0, sizeof y[ibl]);
        const float sigma2 = superblock_sigma2(xbl);
        auto weights_of = [&](int ib, float* weight) {  // (16)
            const float* xb = xbl + kBlock * ib;
            if (importance) {
                const float* qw = importance + QK_K * ibl + kBlock * ib;
                for (int i = 0; i < kBlock; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
            } else {
                for (int i = 0; i < kBlock; ++i) weight[i] = xb[i] * xb[i];
            }
        };
        float scales[QK_K / kBlock], max_scale = 0;  // (16) per block of 16
        int shifts[QK_K / kBlock];
        for (int ib = 0; ib < QK_K / kBlock; ++ib) {
            const float* xb = xbl + kBlock * ib;
            float weight[kBlock], max = std::fabs(xb[0]);
            weights_of(ib, weight);
            for (int i = 1; i < kBlock; ++i) max = std::max(max, std::fabs(xb[i]));
            scales[ib] = 0, shifts[ib] = 0;
            if (max < 1e-7f) continue;  // GROUP_MAX_EPS_IQ1_M
            int order[kBlock];
            sort_by_value(xb, kBlock, order);
            // Prefix sums per half (each half may take the other shift); a split's sums then
            // collapse to T v2 - S(i1) - S(i2), since v0 - v1 = v1 - v2 = -1 for both level sets.
            float px[2][kBlock + 1] = {}, pw[2][kBlock + 1] = {};
            for (int j = 0; j < kBlock; ++j) {
                const int i = order[j], h = i < kBlock / 2 ? 0 : 1;
                px[h][j + 1] = px[h][j] + weight[i] * xb[i], px[1 - h][j + 1] = px[1 - h][j];
                pw[h][j + 1] = pw[h][j] + weight[i], pw[1 - h][j + 1] = pw[1 - h][j];
            }
            const float txs[2] = {px[0][kBlock], px[1][kBlock]}, tws[2] = {pw[0][kBlock], pw[1][kBlock]};
            const float p2 = kPlus[2], m2 = kMinus[2];
            const float cp1 = kPlus[0] * kPlus[0] - kPlus[1] * kPlus[1], cp2 = kPlus[1] * kPlus[1] - kPlus[2] * kPlus[2];
            const float cm1 = kMinus[0] * kMinus[0] - kMinus[1] * kMinus[1], cm2 = kMinus[1] * kMinus[1] - kMinus[2] * kMinus[2];
            float best_score = -FLT_MAX, scale = max;
            int besti1 = -1, besti2 = -1, best_k = -1;
            for (int i1 = 0; i1 <= kBlock; ++i1)
                for (int i2 = i1; i2 <= kBlock; ++i2) {
                    float qx_p[2], qx_m[2], q2_p[2], q2_m[2];
                    for (int h = 0; h < 2; ++h) {
                        const float sx = px[h][i1] + px[h][i2];
                        qx_p[h] = txs[h] * p2 - sx, qx_m[h] = txs[h] * m2 - sx;
                        q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
                        q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
                    }
                    const float sumqx[4] = {qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1], qx_m[0] + qx_m[1]};
                    const float sumq2[4] = {q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1], q2_m[0] + q2_m[1]};
                    for (int k = 0; k < 4; ++k)
                        if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k])
                            scale = sumqx[k] / sumq2[k], best_score = scale * sumqx[k], besti1 = i1, besti2 = i2, best_k = k;
                }
            if (besti1 < 0 || besti2 < 0 || best_k < 0) continue;
            int8_t L[kBlock];
            split_codes(order, kBlock, besti1, besti2, L);
            if (scale < 0) {
                for (int8_t& l : L) l = int8_t(2 - l);
                scale = -scale, best_k = 3 - best_k;
            }
            uint16_t index[2];
            scale = snap_groups(xb, weight, kBlock, scale, L, index, [&](int k) { return levels(best_k, k); });
            y[ibl].qs[2 * ib] = uint8_t(index[0] & 255), y[ibl].qs[2 * ib + 1] = uint8_t(index[1] & 255);
            y[ibl].qh[ib] = uint8_t((index[0] >> 8) | (index[1] >> 8) << 4);
            scales[ib] = scale, shifts[ib] = best_k;
            max_scale = std::max(max_scale, scale);
        }
        if (max_scale == 0) continue;
        // 3-bit scales against max / 15, then the super-block scale refitted to the stored
        // codes and scales (least squares over the whole super-block).
        uint16_t sc[4] = {};  // the four scale words
        float d = max_scale / 15;
        const float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        const Lattice<8, 2>& lat = iq1_lattice();
        for (int ib = 0; ib < QK_K / kBlock; ++ib) {
            const int l = std::clamp(nearest(0.5f * (id * scales[ib] - 1)), 0, 7);
            sc[ib / 4] = uint16_t(sc[ib / 4] | l << 3 * (ib % 4));
            y[ibl].qh[ib] |= masks[shifts[ib]];
            float weight[kBlock];
            weights_of(ib, weight);
            const float* xb = xbl + kBlock * ib;
            for (int k = 0; k < 2; ++k) {
                const float* xx = levels(shifts[ib], k);
                const int g = y[ibl].qs[2 * ib + k] + ((y[ibl].qh[ib] << (8 - 4 * k)) & 0x700);
                for (int j = 0; j < 8; ++j) {
                    const float w = weight[8 * k + j], q = xx[(lat.pos[size_t(g)][size_t(j)] - 1) / 2] * float(2 * l + 1);
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
        }
        if (sumq2 > 0) d = sumqx / sumq2;
        const uint16_t s = fp32_to_fp16(d * 1.1125f);  // ggml's fudge factor
        sc[0] = uint16_t(sc[0] | (s & 0x000f) << 12), sc[1] = uint16_t(sc[1] | (s & 0x00f0) << 8);
        sc[2] = uint16_t(sc[2] | (s & 0x0f00) << 4), sc[3] = uint16_t(sc[3] | (s & 0xf000));
        std::memcpy(y[ibl].scales, sc, sizeof sc);
    }
}

}  // namespace kiln::ref
