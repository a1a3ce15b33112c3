// Row-interleaved ("r16") weight layouts, made at load time when asked (--repack).
//
// 16 consecutive rows are stored together so that one 512-bit register holds 4
// consecutive weights of all 16 rows: one vpdpbusd against 4 broadcast activation bytes
// then advances 16 dot products at once, with no horizontal sums, and the per-row scales
// of the 16 rows are one vector. The 4- and 6-bit formats keep their bit width (nibbles
// stay packed two to a byte), so decode reads as many bytes as from the original file.
//
// Step j of a 32-weight sub-block covers its weights 4j .. 4j+3; "byte 4r + i" is weight
// i of that step for row r of the group.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kiln/format/blocks.h"

namespace kiln::cpu {

constexpr int kR16Rows = 16;

// 16 rows x 256 weights of q4_K (2368 bytes; q4_K itself: 16 x 144 = 2304).
struct r16_q4_K {
    uint16_t d[16], dmin[16];  // per row, fp16
    uint8_t sc[8][16];         // [sub-block][row] 6-bit scale
    uint8_t mn[8][16];         // [sub-block][row] 6-bit min
    uint8_t qs[8][4][64];      // [sub-block][c][4r+i]: step c in the low nibble, step c + 4 in the high
};
static_assert(sizeof(r16_q4_K) == 2368);

// 16 rows x 256 weights of q6_K (3360 bytes, as q6_K: 16 x 210): the low 4 bits as q4_K's
// nibbles, the high 2 bits of the four steps of a nibble half in one byte. (Widening the
// values to bytes, as this layout once did, reads 30% more bytes for a q6_K matrix; with
// its loads kept in address order the 6-bit splice is cheaper than those bytes.)
struct r16_q6_K {
    uint16_t d[16];         // per row, fp16
    int8_t sc[16][16];      // [16-weight group][row]
    struct {                // a sub-block's 6 lines together: a decode reads the block in address order
        uint8_t ql[4][64];  // [c][4r+i]: low 4 bits, step c in the low nibble, step c + 4 in the high
        uint8_t qh[2][64];  // [h][4r+i]: bits 2t, 2t+1 are the high 2 bits of step 4h + t
    } sub[8];
};
static_assert(sizeof(r16_q6_K) == 3360);

// 16 rows x 32 weights of q8_0 (544 bytes, as q8_0: 16 x 34).
struct r16_q8_0 {
    uint16_t d[16];         // per row, fp16
    uint8_t qs[8][64];      // [step][4r+i]: q + 128, so vpdpbusd's unsigned operand is the weight
};
static_assert(sizeof(r16_q8_0) == 544);

// 16 rows x 32 weights of q5_0 (352 bytes, as q5_0: 16 x 22), the 5th bits as one 64-bit
// mask per step: a masked byte add puts them back (vpaddb under k), so the kernel reads
// q5_0's bytes and still feeds whole bytes to vpdpbusd. (Gemma 3's 640-wide matrices are
// q5_0 in Q4_K_M files; widened to q8_0 they read 55% more bytes.)
struct r16_q5_0 {
    uint16_t d[16];         // per row, fp16
    uint8_t qs[4][64];      // [c][4r+i]: 4 low bits, step c in the low nibble, step c + 4 in the high
    uint64_t qh[8];         // [step]: bit 4r+i is the 5th bit of weight 4 step + i of row r
};
static_assert(sizeof(r16_q5_0) == 352);

// 16 rows x 32 weights of q4_0 (288 bytes, as q4_0: 16 x 18): nibbles as q5_0's, value q - 8.
struct r16_q4_0 {
    uint16_t d[16];         // per row, fp16
    uint8_t qs[4][64];      // [c][4r+i]: step c in the low nibble, step c + 4 in the high
};
static_assert(sizeof(r16_q4_0) == 288);

// 16 rows x 32 weights of q4_1 (320 bytes, as q4_1: 16 x 20): w = d q + m. (SmolLM2's
// Q4_1 file is nearly all q4_1; its 576-wide rows are 18 blocks, too short for a row
// kernel's per-row horizontal sums to hide behind the stream.)
struct r16_q4_1 {
    uint16_t d[16], m[16];  // per row, fp16
    uint8_t qs[4][64];      // [c][4r+i]: step c in the low nibble, step c + 4 in the high
};
static_assert(sizeof(r16_q4_1) == 320);

// 16 rows x 32 weights of q5_1 (384 bytes, as q5_1: 16 x 24): q5_0's bits, w = d q + m.
struct r16_q5_1 {
    uint16_t d[16], m[16];  // per row, fp16
    uint8_t qs[4][64];      // [c][4r+i]: 4 low bits, step c in the low nibble, step c + 4 in the high
    uint64_t qh[8];         // [step]: bit 4r+i is the 5th bit of weight 4 step + i of row r
};
static_assert(sizeof(r16_q5_1) == 384);

// 16 rows x 256 weights of iq4_xs (2208 bytes; iq4_xs: 16 x 136 = 2176): the level
// indices as q4_K's nibbles (a byte shuffle maps them to the levels), the 6-bit scales
// less 32 as bytes.
struct r16_iq4_xs {
    uint16_t d[16];        // per row, fp16
    int8_t sc[8][16];      // [sub-block][row] scale - 32
    uint8_t qs[8][4][64];  // [sub-block][c][4r+i]: step c in the low nibble, step c + 4 in the high
};
static_assert(sizeof(r16_iq4_xs) == 2208);

// True if rows of type t can be repacked (and rows is a multiple of 16).
bool r16_supported(DType t, int64_t rows);
// Bytes of one 16-row group of k weights (the row-group stride of a repacked tensor).
size_t r16_group_bytes(DType t, int64_t k);
// Repacks `rows` rows (a multiple of 16) of k weights; dst holds rows / 16 groups.
void r16_repack(DType t, const void* src, size_t src_stride, int64_t rows, int64_t k, void* dst);

}  // namespace kiln::cpu
