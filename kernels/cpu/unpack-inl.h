// Portable weight unpacking: every GGUF weight format, one block at a time, into a common
// form of 32-element sub-blocks with signed int8 values and, per 16-element half, a float
// scale and a float "min" coefficient:
//     w[i] = scale[h] * q[i] + min[h]            (h = i / 16)
// so that dot(w, a) = sum_h scale[h] * sum(q * a_q) * d_a + min[h] * sum(a) where sum(a)
// is the activation half's sum (q4_1 / q5_1 have one min for both halves).
// All formats fit: q4_0 has q-8 and no min, q4_K has 32-wide scale/min pairs, q6_K has
// 16-wide scales and q-32, and so on. Included by each isa_*.cpp inside its namespace.

#include "ref/iq_grids.h"

namespace kiln::cpu::KILN_ISA_NS {

struct SubBlock {
    int8_t q[32];
    float scale[2];
    float min[2];
};

template <DType T>
struct WeightFormat;

// q4_K / q5_K: the j-th (6-bit scale, 6-bit min) pair of the 12 packed bytes.
inline void k4_scale_min(int j, const uint8_t* s, int* sc, int* m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

inline void set_scales(SubBlock& s, float scale0, float scale1, float min0, float min1) {
    s.scale[0] = scale0, s.scale[1] = scale1, s.min[0] = min0, s.min[1] = min1;
}

template <>
struct WeightFormat<DType::Q4_0> {
    using Block = block_q4_0;
    static constexpr int kSub = 1;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d);
        for (int j = 0; j < 16; ++j) {
            out->q[j] = int8_t((b.qs[j] & 0xF) - 8);
            out->q[j + 16] = int8_t((b.qs[j] >> 4) - 8);
        }
        set_scales(*out, d, d, 0, 0);
    }
};

template <>
struct WeightFormat<DType::Q4_1> {
    using Block = block_q4_1;
    static constexpr int kSub = 1;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
        for (int j = 0; j < 16; ++j) {
            out->q[j] = int8_t(b.qs[j] & 0xF);
            out->q[j + 16] = int8_t(b.qs[j] >> 4);
        }
        set_scales(*out, d, d, m, m);
    }
};

// The 5th bit of element j of a q5_0 / q5_1 block.
inline int q5_high_bit(const uint8_t qh[4], int j) {
    uint32_t h;
    std::memcpy(&h, qh, 4);
    return int((h >> j) & 1) << 4;
}

template <>
struct WeightFormat<DType::Q5_0> {
    using Block = block_q5_0;
    static constexpr int kSub = 1;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d);
        for (int j = 0; j < 16; ++j) {
            out->q[j] = int8_t(((b.qs[j] & 0xF) | q5_high_bit(b.qh, j)) - 16);
            out->q[j + 16] = int8_t(((b.qs[j] >> 4) | q5_high_bit(b.qh, j + 16)) - 16);
        }
        set_scales(*out, d, d, 0, 0);
    }
};

template <>
struct WeightFormat<DType::Q5_1> {
    using Block = block_q5_1;
    static constexpr int kSub = 1;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
        for (int j = 0; j < 16; ++j) {
            out->q[j] = int8_t((b.qs[j] & 0xF) | q5_high_bit(b.qh, j));
            out->q[j + 16] = int8_t((b.qs[j] >> 4) | q5_high_bit(b.qh, j + 16));
        }
        set_scales(*out, d, d, m, m);
    }
};

template <>
struct WeightFormat<DType::Q8_0> {
    using Block = block_q8_0;
    static constexpr int kSub = 1;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d);
        std::memcpy(out->q, b.qs, 32);
        set_scales(*out, d, d, 0, 0);
    }
};

template <>
struct WeightFormat<DType::Q2_K> {
    using Block = block_q2_K;
    static constexpr int kSub = 8;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
        for (int sb = 0; sb < 8; ++sb) {  // 2 halves of 128, each 4 shifts of 32 elements
            const uint8_t* q = b.qs + 32 * (sb / 4);
            const int shift = 2 * (sb % 4);
            for (int l = 0; l < 32; ++l) out[sb].q[l] = int8_t((q[l] >> shift) & 3);
            const uint8_t s0 = b.scales[2 * sb], s1 = b.scales[2 * sb + 1];
            set_scales(out[sb], d * float(s0 & 0xF), d * float(s1 & 0xF), -dmin * float(s0 >> 4), -dmin * float(s1 >> 4));
        }
    }
};

template <>
struct WeightFormat<DType::Q3_K> {
    using Block = block_q3_K;
    static constexpr int kSub = 8;
    // The 16 6-bit scales: low 4 bits in bytes 0..7, high 2 bits in bytes 8..11.
    static int scale(const uint8_t* s, int i) {
        int low = i < 8 ? s[i] & 0xF : s[i - 8] >> 4;
        int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        return (low | high << 4) - 32;
    }
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d);
        for (int sb = 0; sb < 8; ++sb) {
            const uint8_t* q = b.qs + 32 * (sb / 4);
            const int shift = 2 * (sb % 4);
            const uint8_t m = uint8_t(1u << sb);  // the hmask bit of this sub-block
            for (int l = 0; l < 32; ++l) out[sb].q[l] = int8_t(((q[l] >> shift) & 3) - ((b.hmask[l] & m) ? 0 : 4));
            set_scales(out[sb], d * float(scale(b.scales, 2 * sb)), d * float(scale(b.scales, 2 * sb + 1)), 0, 0);
        }
    }
};

template <>
struct WeightFormat<DType::Q4_K> {
    using Block = block_q4_K;
    static constexpr int kSub = 8;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
        for (int sb = 0; sb < 8; ++sb) {  // 64-element chunks: low nibbles then high nibbles
            const uint8_t* q = b.qs + 32 * (sb / 2);
            const int shift = 4 * (sb % 2);
            for (int l = 0; l < 32; ++l) out[sb].q[l] = int8_t((q[l] >> shift) & 0xF);
            int sc, m;
            k4_scale_min(sb, b.scales, &sc, &m);
            set_scales(out[sb], d * float(sc), d * float(sc), -dmin * float(m), -dmin * float(m));
        }
    }
};

template <>
struct WeightFormat<DType::Q5_K> {
    using Block = block_q5_K;
    static constexpr int kSub = 8;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
        for (int sb = 0; sb < 8; ++sb) {
            const uint8_t* q = b.qs + 32 * (sb / 2);
            const int shift = 4 * (sb % 2);
            for (int l = 0; l < 32; ++l) out[sb].q[l] = int8_t(((q[l] >> shift) & 0xF) | (((b.qh[l] >> sb) & 1) << 4));
            int sc, m;
            k4_scale_min(sb, b.scales, &sc, &m);
            set_scales(out[sb], d * float(sc), d * float(sc), -dmin * float(m), -dmin * float(m));
        }
    }
};

template <>
struct WeightFormat<DType::Q6_K> {
    using Block = block_q6_K;
    static constexpr int kSub = 8;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d);
        for (int sb = 0; sb < 8; ++sb) {  // halves of 128; in each, 4 sub-blocks of 32
            const int half = sb / 4, t = sb % 4;
            const uint8_t* ql = b.ql + 64 * half + 32 * (t & 1);
            const uint8_t* qh = b.qh + 32 * half;
            const int lshift = 4 * (t >> 1), hshift = 2 * t;
            for (int l = 0; l < 32; ++l) out[sb].q[l] = int8_t((((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32);
            const int8_t* sc = b.scales + 8 * half + 2 * t;
            set_scales(out[sb], d * float(sc[0]), d * float(sc[1]), 0, 0);
        }
    }
};

// IQ4_NL / IQ4_XS: the nibbles index the non-linear levels (kIq4nlValues), signed int8.
inline void iq4_levels(const uint8_t* qs, int8_t* q) {
    for (int j = 0; j < 16; ++j) q[j] = kIq4nlValues[qs[j] & 0xF], q[j + 16] = kIq4nlValues[qs[j] >> 4];
}

template <>
struct WeightFormat<DType::IQ4_NL> {
    using Block = block_iq4_nl;
    static constexpr int kSub = 1;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d);
        iq4_levels(b.qs, out->q);
        set_scales(*out, d, d, 0, 0);
    }
};

template <>
struct WeightFormat<DType::IQ4_XS> {
    using Block = block_iq4_xs;
    static constexpr int kSub = 8;
    static void unpack(const Block& b, SubBlock* out) {
        const float d = fp16_to_fp32(b.d);
        for (int sb = 0; sb < 8; ++sb) {
            iq4_levels(b.qs + 16 * sb, out[sb].q);
            const float dl = d * float(iq4xs_scale(b, sb));
            set_scales(out[sb], dl, dl, 0, 0);
        }
    }
};

// The IQ1-IQ3 grid formats: the reference's sub-block decoding (ref/iq_grids.h), called
// out of line; their speed comes from the AVX-512 decoders, this is the portable path.
template <class B>
struct IqGridFormat {
    using Block = B;
    static constexpr int kSub = 8;
    static void unpack(const Block& b, SubBlock* out) {
        for (int s = 0; s < 8; ++s) {
            ref::iq_unpack(b, s, out[s].q, out[s].scale);
            out[s].min[0] = out[s].min[1] = 0;
        }
    }
};
template <> struct WeightFormat<DType::IQ2_XXS> : IqGridFormat<block_iq2_xxs> {};
template <> struct WeightFormat<DType::IQ2_XS> : IqGridFormat<block_iq2_xs> {};
template <> struct WeightFormat<DType::IQ2_S> : IqGridFormat<block_iq2_s> {};
template <> struct WeightFormat<DType::IQ3_XXS> : IqGridFormat<block_iq3_xxs> {};
template <> struct WeightFormat<DType::IQ3_S> : IqGridFormat<block_iq3_s> {};
template <> struct WeightFormat<DType::IQ1_S> : IqGridFormat<block_iq1_s> {};
template <> struct WeightFormat<DType::IQ1_M> : IqGridFormat<block_iq1_m> {};

}  // namespace kiln::cpu::KILN_ISA_NS
