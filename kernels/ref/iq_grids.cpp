// The IQ grids, unpacked at compile time, and the sub-block decoding of iq_grids.h.
#include "ref/iq_grids.h"

namespace kiln::ref {

namespace {

#include "ref/iq_grids.inc"

constexpr int hex_digit(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

// Point i of a packed grid: 2 bytes (4 hex digits); each byte holds 4 two-bit codes (at
// bits 0, 2, 4, 6) when the map has 3 values, or 2 three-bit codes (bits 0, 4) when it
// has 8; a code indexes the map.
template <class T, int N, int V, size_t M>
constexpr void unpack_grid(const char* hex, const int (&map)[M], T (&out)[N][V]) {
    constexpr int bits = M <= 4 ? 2 : 3, per_byte = 8 / (bits == 2 ? 2 : 4), shift = 8 / per_byte;
    for (int i = 0; i < N; ++i)
        for (int e = 0; e < V; ++e) {
            const int byte = 16 * hex_digit(hex[4 * i + 2 * (e / per_byte)]) + hex_digit(hex[4 * i + 2 * (e / per_byte) + 1]);
            out[i][e] = T(map[(byte >> (shift * (e % per_byte))) & ((1 << bits) - 1)]);
        }
}

constexpr IqGrids make_grids() {
    IqGrids g{};
    unpack_grid(kIq2xxsGridHex, kIq2xxsGridMap, g.iq2xxs);
    unpack_grid(kIq2xsGridHex, kIq2xsGridMap, g.iq2xs);
    unpack_grid(kIq2sGridHex, kIq2sGridMap, g.iq2s);
    unpack_grid(kIq3xxsGridHex, kIq3xxsGridMap, g.iq3xxs);
    unpack_grid(kIq3sGridHex, kIq3sGridMap, g.iq3s);
    unpack_grid(kIq1sGridHex, kIq1sGridMap, g.iq1s);
    return g;
}

// n values of a grid point with the sign bits of `signs` (bit j: value j negative).
template <class T>
void signed_point(const T* point, int n, uint32_t signs, int8_t* q) {
    for (int j = 0; j < n; ++j) q[j] = int8_t((signs >> j) & 1 ? -int(point[j]) : int(point[j]));
}

// IQ2 scales: d x (0.5 + s) / 4 in ggml's float order.
float iq2_scale(float d, uint32_t s) { return d * (0.5f + float(s)) * 0.25f; }

// IQ1: 8 values of a point shifted by +-1/8, as integers (8 x value +- 1).
void iq1_point(int idx, bool minus, int8_t* q) {
    for (int j = 0; j < 8; ++j) q[j] = int8_t(8 * kIqGrids.iq1s[idx][j] + (minus ? -1 : 1));
}

}  // namespace

constexpr IqGrids kIqGrids = make_grids();

void iq_unpack(const block_iq2_xxs& b, int s, int8_t* q, float* scale) {
    uint32_t aux[2];
    std::memcpy(aux, b.qs + 4 * s, 8);
    for (int l = 0; l < 4; ++l) signed_point(kIqGrids.iq2xxs[(aux[0] >> (8 * l)) & 0xFF], 8, iq_signs((aux[1] >> (7 * l)) & 127), q + 8 * l);
    scale[0] = scale[1] = iq2_scale(fp16_to_fp32(b.d), aux[1] >> 28);
}

void iq_unpack(const block_iq2_xs& b, int s, int8_t* q, float* scale) {
    for (int l = 0; l < 4; ++l) signed_point(kIqGrids.iq2xs[b.qs[4 * s + l] & 511], 8, iq_signs(b.qs[4 * s + l] >> 9), q + 8 * l);
    const float d = fp16_to_fp32(b.d);
    scale[0] = iq2_scale(d, b.scales[s] & 0xF), scale[1] = iq2_scale(d, b.scales[s] >> 4);
}

void iq_unpack(const block_iq2_s& b, int s, int8_t* q, float* scale) {
    const uint8_t* idx = b.qs + 4 * s;
    const uint8_t* signs = b.qs + QK_K / 8 + 4 * s;
    for (int l = 0; l < 4; ++l) signed_point(kIqGrids.iq2s[idx[l] | ((b.qh[s] << (8 - 2 * l)) & 0x300)], 8, signs[l], q + 8 * l);
    const float d = fp16_to_fp32(b.d);
    scale[0] = iq2_scale(d, b.scales[s] & 0xF), scale[1] = iq2_scale(d, b.scales[s] >> 4);
}

void iq_unpack(const block_iq3_xxs& b, int s, int8_t* q, float* scale) {
    const uint8_t* idx = b.qs + 8 * s;
    uint32_t aux;
    std::memcpy(&aux, b.qs + QK_K / 4 + 4 * s, 4);
    for (int l = 0; l < 4; ++l) {
        const uint32_t signs = iq_signs((aux >> (7 * l)) & 127);
        signed_point(kIqGrids.iq3xxs[idx[2 * l]], 4, signs, q + 8 * l);
        signed_point(kIqGrids.iq3xxs[idx[2 * l + 1]], 4, signs >> 4, q + 8 * l + 4);
    }
    scale[0] = scale[1] = fp16_to_fp32(b.d) * (0.5f + float(aux >> 28)) * 0.5f;
}

void iq_unpack(const block_iq3_s& b, int s, int8_t* q, float* scale) {
    const uint8_t* idx = b.qs + 8 * s;
    const uint8_t* signs = b.signs + 4 * s;
    const int qh = b.qh[s];
    for (int l = 0; l < 4; ++l) {
        signed_point(kIqGrids.iq3s[idx[2 * l] | ((qh << (8 - 2 * l)) & 256)], 4, signs[l], q + 8 * l);
        signed_point(kIqGrids.iq3s[idx[2 * l + 1] | ((qh << (7 - 2 * l)) & 256)], 4, signs[l] >> 4, q + 8 * l + 4);
    }
    scale[0] = scale[1] = fp16_to_fp32(b.d) * float(1 + 2 * ((b.scales[s / 2] >> (4 * (s % 2))) & 0xF));
}

void iq_unpack(const block_iq1_s& b, int s, int8_t* q, float* scale) {
    const uint32_t qh = b.qh[s];
    for (int l = 0; l < 4; ++l) iq1_point(b.qs[4 * s + l] | (((qh >> (3 * l)) & 7) << 8), qh & 0x8000, q + 8 * l);
    scale[0] = scale[1] = fp16_to_fp32(b.d) * float(2 * ((qh >> 12) & 7) + 1) * 0.125f;
}

void iq_unpack(const block_iq1_m& b, int s, int8_t* q, float* scale) {
    const uint8_t* qs = b.qs + 4 * s;
    const uint8_t* qh = b.qh + 2 * s;
    for (int l = 0; l < 4; ++l) {
        const int h = qh[l / 2] >> (4 * (l % 2));  // this group's nibble: 3 index bits, shift sign
        iq1_point(qs[l] | ((h & 7) << 8), h & 8, q + 8 * l);
    }
    uint16_t sc[4];
    std::memcpy(sc, b.scales, 8);
    const float d = fp16_to_fp32(iq1m_d(b));
    for (int h = 0; h < 2; ++h) scale[h] = d * float(2 * ((sc[s / 2] >> (6 * (s % 2) + 3 * h)) & 7) + 1) * 0.125f;
}

}  // namespace kiln::ref
