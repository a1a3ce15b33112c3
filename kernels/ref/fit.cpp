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

void pack_nibbles32(const uint8_t* q, uint8_t* qs) {
    for (int j = 0; j < 16; ++j) qs[j] = uint8_t((q[j] & 0x0f) | (q[j + 16] & 0x0f) << 4);
}

void pack_fifth_bits32(const uint8_t* q, uint8_t* qh) {
    std::memset(qh, 0, 4);
    for (int j = 0; j < 32; ++j) qh[j / 8] = uint8_t(qh[j / 8] | ((q[j] >> 4) & 1) << (j % 8));
}

void store_scales_k(const float* x, int nmax, const uint8_t* sc, const uint8_t* m, float d, float dmin, f16_bits* d_out, f16_bits* dmin_out,
                    uint8_t* scales12, uint8_t* L) {
    pack_scale_min_k4(sc, m, scales12);
    *d_out = fp32_to_fp16(d), *dmin_out = fp32_to_fp16(dmin);
    for (int s = 0; s < 8; ++s) {
        const float ds = fp16_to_fp32(*d_out) * float(sc[s]);
        if (ds == 0.0f) continue;
        const float ms = fp16_to_fp32(*dmin_out) * float(m[s]);
        for (int l = 0; l < 32; ++l) L[32 * s + l] = uint8_t(round_clamp((x[32 * s + l] + ms) / ds, 0, nmax));
    }
}

void store_codes(const uint8_t* L, block_q4_K* y) {  // qs[32 c + l] = L[64 c + l] | L[64 c + 32 + l] << 4
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) y->qs[32 * c + l] = uint8_t((L[64 * c + l] & 0x0f) | (L[64 * c + 32 + l] & 0x0f) << 4);
}

void store_codes(const uint8_t* L, block_q5_K* y) {
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) y->qs[32 * c + l] = uint8_t((L[64 * c + l] & 0x0f) | (L[64 * c + 32 + l] & 0x0f) << 4);
    std::memset(y->qh, 0, sizeof y->qh);
    for (int i = 0; i < QK_K; ++i) y->qh[i % 32] = uint8_t(y->qh[i % 32] | ((L[i] >> 4) & 1) << (i / 32));
}

void store_q6_K(const float* x, const float* scales, int8_t* L, block_q6_K* y) {
    float max_scale = 0.0f, max_abs = 0.0f;
    for (int g = 0; g < 16; ++g)
        if (std::fabs(scales[g]) > max_abs) max_abs = std::fabs(scales[g]), max_scale = scales[g];
    if (max_abs < kGroupMaxEps) {
        std::memset(y, 0, sizeof *y);
        return;
    }
    const float iscale = -128.f / max_scale;
    y->d = fp32_to_fp16(1 / iscale);
    for (int g = 0; g < 16; ++g) y->scales[g] = int8_t(round_clamp(iscale * scales[g], -128, 127));
    for (int g = 0; g < 16; ++g) {
        const float dg = fp16_to_fp32(y->d) * float(y->scales[g]);
        if (dg == 0.0f) continue;
        for (int l = 0; l < 16; ++l) L[16 * g + l] = int8_t(round_clamp(x[16 * g + l] / dg, -32, 31) + 32);
    }
    for (int h = 0; h < 2; ++h) {
        const int8_t* Lh = L + 128 * h;
        for (int l = 0; l < 32; ++l) {
            const int q0 = Lh[l], q1 = Lh[l + 32], q2 = Lh[l + 64], q3 = Lh[l + 96];
            y->ql[64 * h + l] = uint8_t((q0 & 0x0f) | (q2 & 0x0f) << 4);
            y->ql[64 * h + 32 + l] = uint8_t((q1 & 0x0f) | (q3 & 0x0f) << 4);
            y->qh[32 * h + l] = uint8_t((q0 >> 4) | (q1 >> 4) << 2 | (q2 >> 4) << 4 | (q3 >> 4) << 6);
        }
    }
}

}  // namespace kiln::ref
