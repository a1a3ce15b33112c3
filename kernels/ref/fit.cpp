// The shared scale searches (kernels/ref/fit.h), as ggml's C computes them. Compiled without
// -m flags like quants.cpp, so no float operation is contracted into an FMA.
#include "ref/fit.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ref/quants.h"
#include "ref/rounding.h"

namespace kiln::ref {

namespace {
int nearest(float v) { return round_clamp(v, -4194303, 4194303); }  // ggml's nearest_int
}  // namespace

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
    uint8_t cand[32];  // (n)
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

// For fixed codes l the best scale is sum(w x l) / sum(w l^2) and the error left is
// sum(w x^2) - sum(w x l)^2 / sum(w l^2), so the candidate grid with the largest
// sumlx^2 / suml2 wins. Candidates: 19 grids of (nmax + 0.1 k) steps, k = -9..9.
float fit_scale_signed(int n, int nmax, const float* x, int8_t* L, const float* qw) {
    float max = 0, amax = 0;  // the value of largest magnitude, with its sign
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
    if (amax < kGroupMaxEps) {
        std::fill(L, L + n, int8_t(0));
        return 0.0f;
    }
    // Codes for grid iscale: sums for the least-squares scale, codes into out.
    auto grid = [&](float iscale, int8_t* out, float* sumlx, float* suml2) {
        *sumlx = *suml2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = round_clamp(iscale * x[i], -nmax, nmax - 1);
            out[i] = int8_t(l + nmax);
            const float w = qw ? qw[i] : x[i] * x[i];
            *sumlx += w * x[i] * float(l);
            *suml2 += w * float(l) * float(l);
        }
    };
    float sumlx, suml2;
    grid(-nmax / max, L, &sumlx, &suml2);
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    int8_t cand[32];  // (n)
    for (int k = -9; k <= 9; ++k) {
        if (k == 0) continue;
        grid(-(float(nmax) + 0.1f * float(k)) / max, cand, &sumlx, &suml2);
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            std::copy(cand, cand + n, L);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void pack_scale_min_k4(const uint8_t* sc, const uint8_t* m, uint8_t* out) {
    std::memset(out, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            out[j] = sc[j];
            out[j + 4] = m[j];
        } else {
            out[j + 4] = uint8_t((sc[j] & 0x0f) | (m[j] & 0x0f) << 4);
            out[j - 4] |= uint8_t((sc[j] >> 4) << 6);
            out[j] |= uint8_t((m[j] >> 4) << 6);
        }
    }
}

}  // namespace kiln::ref
