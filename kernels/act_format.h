// The formats activations take on their way into a matmul, shared by the CPU kernels and
// the Vulkan backend (which quantizes them the same way, so the two agree).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kiln/format/blocks.h"

namespace kiln {

// Activations for quantized weights are quantized on the fly to 8 bits:
//  - block_q8_x32 for 32-element weight formats (q4_0, q4_1, q5_0, q5_1, q8_0): ggml's
//    q8_0 / q8_1 in one (same rounding; scale and scaled sum rounded to fp16 as ggml
//    stores them, so the min term of q4_1 / q5_1 rounds as llama.cpp's does);
//  - ggml's block_q8_K (one float scale per 256, bsums per 16) for the k-quants.
struct block_q8_x32 {
    float d;        // scale (an fp16 value, kept as float)
    uint16_t s;     // fp16(unrounded scale * sum(qs)): ggml q8_1's s
    int16_t sum;    // sum(qs), exact: offsets of signed weights cancel against it
    int8_t qs[32];
};
static_assert(sizeof(block_q8_x32) == 40);

enum class ActFormat : uint8_t { F32, Q8x32, Q8K };
ActFormat act_format(DType weight);
// Bytes of one quantized activation row of k elements.
size_t act_row_bytes(ActFormat f, int64_t k);

}  // namespace kiln
