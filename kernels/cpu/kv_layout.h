// KV cache layouts, shared by the attention kernels (flash_attn-inl.h), the session that
// fills the cache and the tests. ISA-independent: storing one token is cheap and scalar.
//
// Keys are grouped in panels of kKvPanel positions, stored dimension-major inside the
// panel, so that one SIMD load gives one dimension of 16 consecutive keys: the scores of a
// query against a panel are then D broadcast-FMAs (or D/4 VNNI dot products) with no
// horizontal sums, and a key's score never depends on which other keys share its batch.
//   F32/F16 panel: (D, 16) elements
//   BF16 panel: (D / 2, 16, 2) elements, dimension pairs: one 32-bit lane holds dims 2i and
//     2i + 1 of one key, the operand vdpbf16ps multiplies by a broadcast query pair
//   Q8_0 panel, per 32-dim block b: fp16 d[16], then u8 q[8 quads][16 keys][4] = k/d + 128
//   Q4_0 panel, per 32-dim block b: fp16 d[16], then u8 [4][16 keys][4] holding quad i in
//     the low nibble and quad i + 4 in the high nibble; nibble = k/d + 8 (ggml's q4_0)
// Values are position-major rows of Dv in ggml's own formats (block_q8_0, block_q4_0, ...),
// since the output accumulates p_j * v_j one row at a time; BF16 values interleave each
// pair of positions (2m, 2m + 1) as (Dv, 2) elements over their two rows, so one 32-bit
// lane holds one dimension of both and vdpbf16ps adds two positions' p_j * v_j at once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kiln/format/blocks.h"

namespace kiln::cpu {

constexpr int kKvPanel = 16;   // key positions per K panel
constexpr int kAttnTile = 64;  // key positions per attention tile (4 panels)

// F32, F16, BF16, Q8_0, Q4_0. The block formats need a head dimension divisible by 32,
// BF16 an even one.
bool kv_type_supported(DType t, int dim);
// Bytes of one K panel (kKvPanel keys of D dims) and of one V row (Dv dims).
size_t k_panel_bytes(DType t, int D);
// Element offset of dim d of key `slot` in a float-type (F32/F16/BF16) panel.
inline size_t float_k_offset(DType t, int d, int slot) {
    return t == DType::BF16 ? (size_t(d / 2) * kKvPanel + slot) * 2 + d % 2 : size_t(d) * kKvPanel + slot;
}
size_t v_row_bytes(DType t, int Dv);

// Writes key k (D <= 512 floats) into slot `slot` (0..15) of a K panel; value v (Dv floats)
// as position `pos` of the V rows starting at v0 (position 0, rows v_row bytes apart).
// Quantized types round exactly as ggml's reference quantizers do. to_f16: the kernel
// table's f32_to_f16 for F16 (the same bits, vectorized), or nullptr for the scalar one.
using ToF16Fn = void (*)(const float* x, uint16_t* y, int64_t n);
void store_k(DType t, const float* k, int D, uint8_t* panel, int slot, ToF16Fn to_f16 = nullptr);
void store_v(DType t, const float* v, int Dv, uint8_t* v0, size_t v_row, int pos, ToF16Fn to_f16 = nullptr);
// Read back as floats: what the attention kernels see (the tests' reference input).
void load_k(DType t, const uint8_t* panel, int slot, int D, float* k);
void load_v(DType t, const uint8_t* v0, size_t v_row, int pos, int Dv, float* v);

// Queries as the kernels take them: for float keys the D floats (rounded to the key type,
// as llama.cpp converts Q to K's dot-product type); for Q8_0/Q4_0 keys Q quantized per 32
// like ggml's q8_0, with each block's sum for the unsigned-offset correction.
struct AttnQ8 {
    float d;       // block scale
    int32_t sum;   // sum of qs
    int8_t qs[32];
};
size_t attn_q_bytes(DType k_type, int D);
void prepare_q(DType k_type, const float* q, int D, uint8_t* out);

// x (n floats, n a power of two) <- H x with H the orthonormal Walsh-Hadamard matrix
// (H = H^T = H^-1). Rotating keys and queries alike keeps every q . k; rotating values
// and then the attention output undoes itself. Spreads a few large channels over the
// whole head, so 4-bit blocks quantize them with less error.
void hadamard(float* x, int n);
inline bool is_power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace kiln::cpu
