// Dequantization of GGUF weight rows, 16 elements at a time, for the weight format chosen
// by -DWTYPE_<FORMAT> (cmake/vulkan_shaders.cmake compiles one module per format).
// Layouts are ggml's (include/kiln/dtype.h); kernels/ref/quants.cpp is the spec.
//
// The includer declares the weights as `uint wq[]`: blocks are 18, 20, 22, 34, 136, 144, 176,
// 210 bytes, so fields are read from 32-bit words (no 8/16-bit storage extension needed).
// Every 16-element chunk of every format shares one scale, which is why 16 is the unit.

uint wq_u8(uint o) { return (wq[o >> 2] >> ((o & 3u) * 8u)) & 0xffu; }
uint wq_u16(uint o) { return (wq[o >> 2] >> ((o & 2u) * 8u)) & 0xffffu; }  // o even
// 4 bytes at any offset (the next word is only read when they straddle two words).
uint wq_u32(uint o) {
    const uint s = (o & 3u) * 8u, lo = wq[o >> 2];
    return s == 0u ? lo : (lo >> s) | (wq[(o >> 2) + 1u] << (32u - s));
}
float wq_f16(uint o) { return unpackHalf2x16(wq_u16(o)).x; }
int sext8(uint b) { return int(b << 24) >> 24; }

#if defined(WTYPE_F32)
#define BLOCK_ELEMS 16u
#define BLOCK_BYTES 64u
#elif defined(WTYPE_F16) || defined(WTYPE_BF16)
#define BLOCK_ELEMS 16u
#define BLOCK_BYTES 32u
#elif defined(WTYPE_Q4_0)
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 18u
#elif defined(WTYPE_Q4_1)
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 20u
#elif defined(WTYPE_Q5_0)
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 22u
#elif defined(WTYPE_Q5_1)
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 24u
#elif defined(WTYPE_Q8_0)
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 34u
#elif defined(WTYPE_Q4_K)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 144u
#elif defined(WTYPE_Q5_K)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 176u
#elif defined(WTYPE_Q6_K)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 210u
#elif defined(WTYPE_Q2_K)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 84u
#elif defined(WTYPE_Q3_K)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 110u
#elif defined(WTYPE_IQ4_NL)
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 18u
#elif defined(WTYPE_IQ4_XS)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 136u
#elif defined(WTYPE_IQ2_XXS)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 66u
#elif defined(WTYPE_IQ2_XS)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 74u
#elif defined(WTYPE_IQ2_S)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 82u
#elif defined(WTYPE_IQ3_XXS)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 98u
#elif defined(WTYPE_IQ3_S)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 110u
#elif defined(WTYPE_IQ1_S)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 50u
#elif defined(WTYPE_IQ1_M)
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 56u
#else
#error "compile with -DWTYPE_<format>"
#endif

#if defined(WTYPE_IQ2_XXS) || defined(WTYPE_IQ2_XS) || defined(WTYPE_IQ2_S) || defined(WTYPE_IQ3_XXS) || defined(WTYPE_IQ3_S) || \
    defined(WTYPE_IQ1_S) || defined(WTYPE_IQ1_M)
// The IQ1-IQ3 lattices ("grids"): kiln::ref::IqGrids as 32-bit words, bound by the host
// (src/vulkan/ops.cpp) at the includer's GRID_BINDING. A storage buffer, not a GLSL const
// array: glslang copies a dynamically indexed const array into a function-local variable,
// and lavapipe's LLVM then took 10+ minutes over the 16 KiB IQ1 grid in one shader.
layout(std430, binding = GRID_BINDING) readonly buffer Grids { uint grid[]; };
// Word offsets of each table (static_asserts beside the host's binding keep them true).
const uint kGridIq2xxs = 0u, kGridIq2xs = 512u, kGridIq2s = 1536u, kGridIq3xxs = 3584u, kGridIq3s = 3840u, kGridIq1s = 4352u;

// ggml's ksigns: 7 stored sign bits, the 8th making the count of negatives even.
uint iq_signs(uint idx7) { return idx7 | ((bitCount(idx7) & 1u) << 7); }
// v[at .. at + 4) = scale x the 4 unsigned bytes of word g, negated where bits of `signs` are set.
void grid4(uint g, uint signs, float scale, uint at, inout float v[16]) {
    for (uint b = 0u; b < 4u; ++b) v[at + b] = scale * float((g >> (8u * b)) & 255u) * (((signs >> b) & 1u) != 0u ? -1.0 : 1.0);
}
// 8 weights: a 2-word grid point at word w with its sign byte.
void grid8(uint w, uint signs, float scale, uint at, inout float v[16]) {
    grid4(grid[w], signs, scale, at, v);
    grid4(grid[w + 1u], signs >> 4, scale, at + 4u, v);
}
// IQ1: 8 weights dl x (point + delta), the point's int8 values -1, 0, 1 from iq1s_grid.
void grid8_iq1(uint e, float dl, float delta, uint at, inout float v[16]) {
    const uint w0 = grid[kGridIq1s + 2u * e], w1 = grid[kGridIq1s + 2u * e + 1u];
    for (uint b = 0u; b < 4u; ++b) {
        v[at + b] = dl * (float(sext8(w0 >> (8u * b))) + delta);
        v[at + 4u + b] = dl * (float(sext8(w1 >> (8u * b))) + delta);
    }
}
#define IQ_GRID 1
#endif

// q4_K / q5_K: the 6-bit (scale, min) pair of sub-block s from the 12 bytes at `at`.
void k4_scale_min(uint at, uint s, out uint sc, out uint mn) {
    if (s < 4u) {
        sc = wq_u8(at + s) & 63u;
        mn = wq_u8(at + s + 4u) & 63u;
    } else {
        sc = (wq_u8(at + s + 4u) & 15u) | ((wq_u8(at + s - 4u) >> 6) << 4);
        mn = (wq_u8(at + s + 4u) >> 4) | ((wq_u8(at + s) >> 6) << 4);
    }
}

// Bytes of a row of k elements.
uint row_bytes(uint k) { return k / BLOCK_ELEMS * BLOCK_BYTES; }

// Formats whose blocks add a min m to every element (q4_1, q5_1). The matvec shaders dot
// only d * q with x and add m times the block's sum of x from a sums buffer: the CPU
// multiplies the min by q8_1's fp16-rounded sum, which an exact sum of x would part from.
#if defined(WTYPE_Q4_1) || defined(WTYPE_Q5_1)
#define WEIGHT_MIN 1
float block_min(uint row, uint chunk) { return wq_f16(row + chunk / 2u * BLOCK_BYTES + 2u); }
#endif

// v[0..16) = elements 16 chunk .. 16 chunk + 15 of the row starting at byte `row`;
// without the block's min when add_min is false.
void dequant16_min(uint row, uint chunk, bool add_min, out float v[16]);
void dequant16(uint row, uint chunk, out float v[16]) { dequant16_min(row, chunk, true, v); }

void dequant16_min(uint row, uint chunk, bool add_min, out float v[16]) {
    const uint base = row + chunk / (BLOCK_ELEMS / 16u) * BLOCK_BYTES;
    const uint c = chunk % (BLOCK_ELEMS / 16u);  // chunk within the block
#if defined(WTYPE_F32)
    for (uint i = 0u; i < 16u; ++i) v[i] = uintBitsToFloat(wq[(base >> 2) + i]);
#elif defined(WTYPE_F16)
    for (uint i = 0u; i < 8u; ++i) {
        const vec2 h = unpackHalf2x16(wq[(base >> 2) + i]);
        v[2u * i] = h.x;
        v[2u * i + 1u] = h.y;
    }
#elif defined(WTYPE_BF16)
    for (uint i = 0u; i < 8u; ++i) {
        const uint u = wq[(base >> 2) + i];
        v[2u * i] = uintBitsToFloat(u << 16);
        v[2u * i + 1u] = uintBitsToFloat(u & 0xffff0000u);
    }
#elif defined(WTYPE_Q4_0) || defined(WTYPE_Q4_1)
    // Nibbles: low = element j, high = element j + 16 of qs[j]; chunk c takes nibble c.
#if defined(WTYPE_Q4_0)
    const float d = wq_f16(base), m = -8.0 * d;
    const uint qs = base + 2u;
#else
    const float d = wq_f16(base), m = add_min ? wq_f16(base + 2u) : 0.0;
    const uint qs = base + 4u;
#endif
    for (uint j = 0u; j < 4u; ++j) {
        const uint u = wq_u32(qs + 4u * j) >> (4u * c);
        for (uint b = 0u; b < 4u; ++b) v[4u * j + b] = float((u >> (8u * b)) & 15u) * d + m;
    }
#elif defined(WTYPE_Q5_0) || defined(WTYPE_Q5_1)
    // As q4, plus a 5th bit per element in the 32-bit qh.
#if defined(WTYPE_Q5_0)
    const float d = wq_f16(base), m = -16.0 * d;
    const uint qh = wq_u32(base + 2u) >> (16u * c), qs = base + 6u;
#else
    const float d = wq_f16(base), m = add_min ? wq_f16(base + 2u) : 0.0;
    const uint qh = wq_u32(base + 4u) >> (16u * c), qs = base + 8u;
#endif
    for (uint j = 0u; j < 4u; ++j) {
        const uint u = wq_u32(qs + 4u * j) >> (4u * c);
        for (uint b = 0u; b < 4u; ++b) {
            const uint i = 4u * j + b;
            v[i] = float(((u >> (8u * b)) & 15u) | (((qh >> i) & 1u) << 4)) * d + m;
        }
    }
#elif defined(WTYPE_Q8_0)
    const float d = wq_f16(base);
    for (uint j = 0u; j < 4u; ++j) {
        const uint u = wq_u32(base + 2u + 16u * c + 4u * j);
        for (uint b = 0u; b < 4u; ++b) v[4u * j + b] = float(sext8(u >> (8u * b))) * d;
    }
#elif defined(WTYPE_Q4_K)
    // 8 sub-blocks of 32 with 6-bit (scale, min) pairs; sub-block s lives in nibble s % 2
    // of qs[32 (s / 2) ..]. Chunk c is the half c % 2 of sub-block c / 2.
    const uint s = c / 2u;
    uint sc, mn;
    k4_scale_min(base + 4u, s, sc, mn);
    const float d = wq_f16(base) * float(sc), m = wq_f16(base + 2u) * float(mn);
    const uint qs = base + 16u + 32u * (s / 2u) + 16u * (c % 2u), shift = 4u * (s % 2u);
    for (uint j = 0u; j < 4u; ++j) {
        const uint u = wq_u32(qs + 4u * j) >> shift;
        for (uint b = 0u; b < 4u; ++b) v[4u * j + b] = d * float((u >> (8u * b)) & 15u) - m;
    }
#elif defined(WTYPE_Q5_K)
    // As q4_K (qs after 32 bytes of qh), plus a 5th bit: bit s of qh[l] for element l of
    // sub-block s.
    const uint s = c / 2u;
    uint sc, mn;
    k4_scale_min(base + 4u, s, sc, mn);
    const float d = wq_f16(base) * float(sc), m = wq_f16(base + 2u) * float(mn);
    const uint qs = base + 48u + 32u * (s / 2u) + 16u * (c % 2u), qh = base + 16u + 16u * (c % 2u), shift = 4u * (s % 2u);
    for (uint j = 0u; j < 4u; ++j) {
        const uint u = wq_u32(qs + 4u * j) >> shift, h = wq_u32(qh + 4u * j) >> s;
        for (uint b = 0u; b < 4u; ++b) v[4u * j + b] = d * float(((u >> (8u * b)) & 15u) | (((h >> (8u * b)) & 1u) << 4)) - m;
    }
#elif defined(WTYPE_Q6_K)
    // Two halves of 128; in half h, quadrant k (32 elements) takes the low (k < 2) or high
    // nibble of ql[64 h + 32 (k & 1) + l] and bits 2k of qh[32 h + l]; one int8 scale per 16.
    const uint h = c / 8u, k = (c / 2u) % 4u, l0 = 16u * (c % 2u);
    const float d = wq_f16(base + 208u) * float(sext8(wq_u8(base + 192u + c)));
    const uint ql = base + 64u * h + 32u * (k & 1u) + l0, qh = base + 128u + 32u * h + l0;
    for (uint j = 0u; j < 4u; ++j) {
        const uint lo = wq_u32(ql + 4u * j) >> (4u * (k >> 1)), hi = wq_u32(qh + 4u * j) >> (2u * k);
        for (uint b = 0u; b < 4u; ++b) v[4u * j + b] = d * float(int(((lo >> (8u * b)) & 15u) | (((hi >> (8u * b)) & 3u) << 4)) - 32);
    }
#elif defined(WTYPE_Q2_K) || defined(WTYPE_Q3_K)
    // Two halves of 128; in half h, chunk c takes bits 2j of bytes 16 (c % 2) .. of the half's
    // 32 quant bytes, j = (c % 8) / 2; one scale per 16. q2_K: w = d (sc & 15) q - dmin (sc >> 4)
    // (scales[16] at 0, qs at 16, d at 80, dmin at 82). q3_K: w = d (s - 32) (q - (hmask bit
    // 4h + j of byte 16 (c % 2) + l ? 0 : 4)), the 6-bit s from 12 packed bytes (hmask[32] at
    // 0, qs at 32, scales at 96, d at 108).
    const uint h = c / 8u, j = (c % 8u) / 2u, l0 = 16u * (c % 2u);
#if defined(WTYPE_Q2_K)
    const uint sc = wq_u8(base + c);
    const float d = wq_f16(base + 80u) * float(sc & 15u), m = wq_f16(base + 82u) * float(sc >> 4);
    const uint qs = base + 16u + 32u * h + l0;
    for (uint i = 0u; i < 4u; ++i) {
        const uint u = wq_u32(qs + 4u * i) >> (2u * j);
        for (uint b = 0u; b < 4u; ++b) v[4u * i + b] = d * float((u >> (8u * b)) & 3u) - m;
    }
#else
    const uint lo = c < 8u ? wq_u8(base + 96u + c) & 15u : wq_u8(base + 96u + c - 8u) >> 4;
    const uint hi = (wq_u8(base + 104u + c % 4u) >> (2u * (c / 4u))) & 3u;
    const float d = wq_f16(base + 108u) * float(int(lo | (hi << 4)) - 32);
    const uint qs = base + 32u + 32u * h + l0, hm = base + l0, bit = 4u * h + j;
    for (uint i = 0u; i < 4u; ++i) {
        const uint u = wq_u32(qs + 4u * i) >> (2u * j), mk = wq_u32(hm + 4u * i) >> bit;
        for (uint b = 0u; b < 4u; ++b) v[4u * i + b] = d * float(int((u >> (8u * b)) & 3u) - (((mk >> (8u * b)) & 1u) != 0u ? 0 : 4));
    }
#endif
#elif defined(WTYPE_IQ4_NL) || defined(WTYPE_IQ4_XS)
    // Nibbles (as q4_0's) index ggml's 16 non-linear levels; IQ4_XS: 8 sub-blocks of 32,
    // each scaled by d * (its 6-bit scale - 32), the low 4 bits in scales_l, the high 2 in
    // scales_h. Chunk c is nibble c % 2 of its 32-element sub-block.
    const float levels[16] = float[16](-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
#if defined(WTYPE_IQ4_NL)
    const float d = wq_f16(base);
    const uint qs = base + 2u;
#else
    const uint s = c / 2u;
    const uint ls = ((wq_u8(base + 4u + s / 2u) >> (4u * (s % 2u))) & 15u) | (((wq_u16(base + 2u) >> (2u * s)) & 3u) << 4);
    const float d = wq_f16(base) * float(int(ls) - 32);
    const uint qs = base + 8u + 16u * s;
#endif
    for (uint j = 0u; j < 4u; ++j) {
        const uint u = wq_u32(qs + 4u * j) >> (4u * (c % 2u));
        for (uint b = 0u; b < 4u; ++b) v[4u * j + b] = d * levels[(u >> (8u * b)) & 15u];
    }
#elif defined(IQ_GRID)
    // 8 sub-blocks of 32 weights; chunk c is half h of sub-block s: grid groups 2h, 2h + 1
    // (8 weights each; IQ3: two 4-weight points each). kernels/ref/iq_grids.cpp is the spec.
    const uint s = c / 2u, h = c % 2u;
#if defined(WTYPE_IQ2_XXS)
    // Per 32: 4 grid bytes, then 4 x 7 sign bits and the 4-bit scale on top.
    const uint idx = wq_u32(base + 2u + 8u * s), aux = wq_u32(base + 6u + 8u * s);
    const float d = wq_f16(base) * (0.5 + float(aux >> 28)) * 0.25;
    for (uint g = 0u; g < 2u; ++g) {
        const uint l = 2u * h + g;
        grid8(kGridIq2xxs + 2u * ((idx >> (8u * l)) & 255u), iq_signs((aux >> (7u * l)) & 127u), d, 8u * g, v);
    }
#elif defined(WTYPE_IQ2_XS)
    // One uint16 per 8: 9-bit grid index, 7 sign bits; a 4-bit scale per 16.
    const float d = wq_f16(base) * (0.5 + float((wq_u8(base + 66u + s) >> (4u * h)) & 15u)) * 0.25;
    for (uint g = 0u; g < 2u; ++g) {
        const uint q = wq_u16(base + 2u + 2u * (4u * s + 2u * h + g));
        grid8(kGridIq2xs + 2u * (q & 511u), iq_signs(q >> 9), d, 8u * g, v);
    }
#elif defined(WTYPE_IQ2_S)
    // Low 8 index bits per 8 in qs, the top 2 in qh[s], a sign byte per 8; a 4-bit scale per 16.
    const float d = wq_f16(base) * (0.5 + float((wq_u8(base + 74u + s) >> (4u * h)) & 15u)) * 0.25;
    const uint qh = wq_u8(base + 66u + s);
    for (uint g = 0u; g < 2u; ++g) {
        const uint l = 2u * h + g;
        const uint e = wq_u8(base + 2u + 4u * s + l) | ((qh << (8u - 2u * l)) & 0x300u);
        grid8(kGridIq2s + 2u * e, wq_u8(base + 34u + 4u * s + l), d, 8u * g, v);
    }
#elif defined(WTYPE_IQ3_XXS)
    // A grid byte per 4 weights; per 32 one word of 4 x 7 sign bits and a 4-bit scale.
    const uint aux = wq_u32(base + 66u + 4u * s);
    const float d = wq_f16(base) * (0.5 + float(aux >> 28)) * 0.5;
    for (uint g = 0u; g < 2u; ++g) {
        const uint l = 2u * h + g, signs = iq_signs((aux >> (7u * l)) & 127u);
        grid4(grid[kGridIq3xxs + wq_u8(base + 2u + 8u * s + 2u * l)], signs, d, 8u * g, v);
        grid4(grid[kGridIq3xxs + wq_u8(base + 3u + 8u * s + 2u * l)], signs >> 4, d, 8u * g + 4u, v);
    }
#elif defined(WTYPE_IQ3_S)
    // 9-bit grid indices per 4 weights (the 9th bits in qh[s]), a sign bit per weight; a
    // 4-bit scale per 32, d x (1 + 2 scale).
    const float d = wq_f16(base) * float(1u + 2u * ((wq_u8(base + 106u + s / 2u) >> (4u * (s % 2u))) & 15u));
    const uint qh = wq_u8(base + 66u + s);
    for (uint g = 0u; g < 2u; ++g) {
        const uint l = 2u * h + g, signs = wq_u8(base + 74u + 4u * s + l);
        const uint e0 = wq_u8(base + 2u + 8u * s + 2u * l) | ((qh << (8u - 2u * l)) & 256u);
        const uint e1 = wq_u8(base + 3u + 8u * s + 2u * l) | ((qh << (7u - 2u * l)) & 256u);
        grid4(grid[kGridIq3s + e0], signs, d, 8u * g, v);
        grid4(grid[kGridIq3s + e1], signs >> 4, d, 8u * g + 4u, v);
    }
#elif defined(WTYPE_IQ1_S)
    // Low 8 index bits per 8; per 32 a uint16: 4 x 3 high index bits, a 3-bit scale, the
    // shift's sign (bit 15): w = d (2 scale + 1) (point +- 1/8).
    const uint qh = wq_u16(base + 34u + 2u * s);
    const float dl = wq_f16(base) * float(2u * ((qh >> 12) & 7u) + 1u), delta = (qh & 0x8000u) != 0u ? -0.125 : 0.125;
    for (uint g = 0u; g < 2u; ++g) {
        const uint l = 2u * h + g;
        grid8_iq1(wq_u8(base + 2u + 4u * s + l) | (((qh >> (3u * l)) & 7u) << 8), dl, delta, 8u * g, v);
    }
#elif defined(WTYPE_IQ1_M)
    // Low 8 index bits per 8; per 8 a nibble of 3 high bits and the shift's sign (qh byte c
    // holds chunk c's two); 3-bit scales per 16 in 4 uint16 whose top nibbles are the fp16 d.
    const uint sc0 = wq_u16(base + 48u), sc1 = wq_u16(base + 50u), sc2 = wq_u16(base + 52u), sc3 = wq_u16(base + 54u);
    const uint dbits = (sc0 >> 12) | ((sc1 >> 8) & 0x00f0u) | ((sc2 >> 4) & 0x0f00u) | (sc3 & 0xf000u);
    const uint sc = wq_u16(base + 48u + 2u * (s / 2u));
    const float dl = unpackHalf2x16(dbits).x * float(2u * ((sc >> (6u * (s % 2u) + 3u * h)) & 7u) + 1u);
    const uint qh = wq_u8(base + 32u + c);
    for (uint g = 0u; g < 2u; ++g) {
        const uint nib = (qh >> (4u * g)) & 15u;
        grid8_iq1(wq_u8(base + 4u * s + 2u * h + g) | ((nib & 7u) << 8), dl, (nib & 8u) != 0u ? -0.125 : 0.125, 8u * g, v);
    }
#endif
#endif
}
