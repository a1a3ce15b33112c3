// Scalar repacking into the r16 layouts (runs once at load; portable code, no -m flags).
#include "cpu/r16.h"

#include <cstring>

#include "ref/quants.h"

namespace kiln::cpu {

namespace {

// The 256 4-bit values of a q4_K block, in weight order.
void q4_K_values(const block_q4_K& b, uint8_t* q) {
    for (int s = 0; s < 8; ++s)
        for (int l = 0; l < 32; ++l) q[32 * s + l] = uint8_t((b.qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0xF);
}

// The 256 6-bit values (0..63) of a q6_K block, in weight order.
void q6_K_values(const block_q6_K& b, uint8_t* q) {
    for (int s = 0; s < 8; ++s) {
        const int half = s / 4, t = s % 4;
        const uint8_t* ql = b.ql + 64 * half + 32 * (t & 1);
        const uint8_t* qh = b.qh + 32 * half;
        for (int l = 0; l < 32; ++l) q[32 * s + l] = uint8_t(((ql[l] >> (4 * (t >> 1))) & 0xF) | (((qh[l] >> (2 * t)) & 3) << 4));
    }
}

// Packs the low nibbles of 16 rows x 32 values (q[r][0..31]) as r16 nibble chunks.
void pack_nibbles(const uint8_t (*q)[32], uint8_t (*out)[64]) {
    for (int c = 0; c < 4; ++c)
        for (int r = 0; r < 16; ++r)
            for (int i = 0; i < 4; ++i) out[c][4 * r + i] = uint8_t((q[r][4 * c + i] & 0xF) | (q[r][4 * c + 16 + i] & 0xF) << 4);
}

// One 16-row group of a 32-weight nibble format (q4_0, q4_1, q5_0, q5_1): scales (and
// mins) per row, the nibbles as r16 chunks, and the 5th bits (q5) as one mask per step.
template <class Src, class Dst, class RowFn>
void repack_nibble_blocks(RowFn row, int64_t k, uint8_t* out) {
    constexpr bool kFifthBit = requires(Dst o) { o.qh; };
    for (int64_t ib = 0; ib < k / 32; ++ib) {
        Dst& o = reinterpret_cast<Dst*>(out)[ib];
        uint8_t q[16][32];
        if constexpr (kFifthBit) std::memset(o.qh, 0, sizeof o.qh);
        for (int r = 0; r < 16; ++r) {
            const Src& b = reinterpret_cast<const Src*>(row(r))[ib];
            o.d[r] = b.d;
            if constexpr (requires { o.m; }) o.m[r] = b.m;
            for (int e = 0; e < 32; ++e) q[r][e] = uint8_t((b.qs[e % 16] >> (e < 16 ? 0 : 4)) & 0xF);  // element e: nibble e % 16, high half for e >= 16
            if constexpr (kFifthBit) {
                uint32_t qh;
                std::memcpy(&qh, b.qh, 4);
                for (int e = 0; e < 32; ++e) o.qh[e / 4] |= uint64_t((qh >> e) & 1) << (4 * r + e % 4);
            }
        }
        pack_nibbles(q, o.qs);
    }
}

}  // namespace

bool r16_supported(DType t, int64_t rows) {
    return rows % kR16Rows == 0 && r16_group_bytes(t, QK_K) != 0;
}

size_t r16_group_bytes(DType t, int64_t k) {
    switch (t) {
        case DType::Q4_K: return size_t(k / QK_K) * sizeof(r16_q4_K);
        case DType::Q6_K: return size_t(k / QK_K) * sizeof(r16_q6_K);
        case DType::IQ4_XS: return size_t(k / QK_K) * sizeof(r16_iq4_xs);
        case DType::Q8_0: return size_t(k / QK8_0) * sizeof(r16_q8_0);
        case DType::Q4_0: return size_t(k / 32) * sizeof(r16_q4_0);
        case DType::Q4_1: return size_t(k / 32) * sizeof(r16_q4_1);
        case DType::Q5_0: return size_t(k / 32) * sizeof(r16_q5_0);
        case DType::Q5_1: return size_t(k / 32) * sizeof(r16_q5_1);
        default: return 0;
    }
}

void r16_repack(DType t, const void* src, size_t src_stride, int64_t rows, int64_t k, void* dst) {
    const size_t gbytes = r16_group_bytes(t, k);
    for (int64_t g = 0; g < rows / kR16Rows; ++g) {
        uint8_t* out = static_cast<uint8_t*>(dst) + size_t(g) * gbytes;
        auto row = [&](int r) { return static_cast<const uint8_t*>(src) + size_t(g * kR16Rows + r) * src_stride; };
        if (t == DType::Q4_K) {
            for (int64_t ib = 0; ib < k / QK_K; ++ib) {
                r16_q4_K& o = reinterpret_cast<r16_q4_K*>(out)[ib];
                uint8_t q[16][256];
                for (int r = 0; r < 16; ++r) {
                    const block_q4_K& b = reinterpret_cast<const block_q4_K*>(row(r))[ib];
                    o.d[r] = b.d, o.dmin[r] = b.dmin;
                    for (int s = 0; s < 8; ++s) ref::unpack_scale_min_k4(s, b.scales, &o.sc[s][r], &o.mn[s][r]);
                    q4_K_values(b, q[r]);
                }
                for (int s = 0; s < 8; ++s) {
                    uint8_t sub[16][32];
                    for (int r = 0; r < 16; ++r) std::memcpy(sub[r], q[r] + 32 * s, 32);
                    pack_nibbles(sub, o.qs[s]);
                }
            }
        } else if (t == DType::Q6_K) {
            for (int64_t ib = 0; ib < k / QK_K; ++ib) {
                r16_q6_K& o = reinterpret_cast<r16_q6_K*>(out)[ib];
                uint8_t q[16][256];
                for (int r = 0; r < 16; ++r) {
                    const block_q6_K& b = reinterpret_cast<const block_q6_K*>(row(r))[ib];
                    o.d[r] = b.d;
                    for (int gi = 0; gi < 16; ++gi) o.sc[gi][r] = b.scales[gi];
                    q6_K_values(b, q[r]);
                }
                for (int s = 0; s < 8; ++s) {
                    uint8_t sub[16][32];
                    for (int r = 0; r < 16; ++r) std::memcpy(sub[r], q[r] + 32 * s, 32);
                    pack_nibbles(sub, o.sub[s].ql);
                    for (int h = 0; h < 2; ++h)
                        for (int r = 0; r < 16; ++r)
                            for (int i = 0; i < 4; ++i) {
                                uint8_t bits = 0;
                                for (int t = 0; t < 4; ++t) bits = uint8_t(bits | (sub[r][4 * (4 * h + t) + i] >> 4) << (2 * t));
                                o.sub[s].qh[h][4 * r + i] = bits;
                            }
                }
            }
        } else if (t == DType::IQ4_XS) {
            for (int64_t ib = 0; ib < k / QK_K; ++ib) {
                r16_iq4_xs& o = reinterpret_cast<r16_iq4_xs*>(out)[ib];
                for (int s = 0; s < 8; ++s) {
                    uint8_t sub[16][32];  // level indices of sub-block s, in weight order
                    for (int r = 0; r < 16; ++r) {
                        const block_iq4_xs& b = reinterpret_cast<const block_iq4_xs*>(row(r))[ib];
                        o.d[r] = b.d;
                        o.sc[s][r] = int8_t(iq4xs_scale(b, s));
                        for (int l = 0; l < 16; ++l) sub[r][l] = b.qs[16 * s + l] & 0xF, sub[r][l + 16] = b.qs[16 * s + l] >> 4;
                    }
                    pack_nibbles(sub, o.qs[s]);
                }
            }
        } else if (t == DType::Q4_0) {
            repack_nibble_blocks<block_q4_0, r16_q4_0>(row, k, out);
        } else if (t == DType::Q4_1) {
            repack_nibble_blocks<block_q4_1, r16_q4_1>(row, k, out);
        } else if (t == DType::Q5_0) {
            repack_nibble_blocks<block_q5_0, r16_q5_0>(row, k, out);
        } else if (t == DType::Q5_1) {
            repack_nibble_blocks<block_q5_1, r16_q5_1>(row, k, out);
        } else if (t == DType::Q8_0) {
            for (int64_t ib = 0; ib < k / QK8_0; ++ib) {
                r16_q8_0& o = reinterpret_cast<r16_q8_0*>(out)[ib];
                for (int r = 0; r < 16; ++r) {
                    const block_q8_0& b = reinterpret_cast<const block_q8_0*>(row(r))[ib];
                    o.d[r] = b.d;
                    for (int j = 0; j < 8; ++j)
                        for (int i = 0; i < 4; ++i) o.qs[j][4 * r + i] = uint8_t(b.qs[4 * j + i] + 128);
                }
            }
        }
    }
}

}  // namespace kiln::cpu
