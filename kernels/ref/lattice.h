// The lattices of ggml's IQ1/IQ2/IQ3 quantizers with their neighbour lists, as its
// iq2xs_init_impl / iq3xs_init_impl build them (quants_weighted.cpp, quants_iq1.cpp).
#pragma once

#include <algorithm>
#include <array>
#include <cfloat>
#include <cstdint>
#include <utility>
#include <vector>

namespace kiln::ref {

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
    // scale, whose codes replace L's (ggml's iq2_find_best_neighbour / iq3_...; with
    // `values`, code l standing for values[l] instead of 2l + 1: iq1_find_best_neighbour2).
    int snap(int8_t* L, const float* xval, const float* weight, float scale, bool* on = nullptr, const float* values = nullptr) const {
        const int u = code_of(L);
        if (on) *on = map[size_t(u)] >= 0;
        if (map[size_t(u)] >= 0) return map[size_t(u)];
        const uint16_t* list = neighbours.data() + (-1 - map[size_t(u)]);
        float best_d2 = FLT_MAX;
        int best = -1;
        for (int j = 1; j <= list[0]; ++j) {
            float d2 = 0;
            for (int i = 0; i < kPer; ++i) {
                const int p = pos[list[j]][size_t(i)];
                const float diff = scale * (values ? values[(p - 1) / 2] : float(p)) - xval[i];
                d2 += weight[i] * diff * diff;
            }
            if (d2 < best_d2) best_d2 = d2, best = list[j];
        }
        for (int i = 0; i < kPer; ++i) L[i] = int8_t((pos[size_t(best)][size_t(i)] - 1) / 2);
        return best;
    }
};

}  // namespace kiln::ref
