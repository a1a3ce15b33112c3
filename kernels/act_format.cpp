// act_format.h: which activation format each weight type's kernels take, and its size.
#include "act_format.h"

#include "kiln/format/blocks.h"

namespace kiln {

ActFormat act_format(DType w) {
    switch (w) {
        case DType::F32: case DType::F16: case DType::BF16: return ActFormat::F32;
        case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::IQ4_XS:
        case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S: case DType::IQ3_XXS: case DType::IQ3_S: case DType::IQ1_S: case DType::IQ1_M:
            return ActFormat::Q8K;
        default: return ActFormat::Q8x32;
    }
}

size_t act_row_bytes(ActFormat f, int64_t k) {
    switch (f) {
        case ActFormat::F32: return size_t(k) * sizeof(float);
        case ActFormat::Q8x32: return size_t(k / 32) * sizeof(block_q8_x32);
        case ActFormat::Q8K: return size_t(k / QK_K) * sizeof(block_q8_K);
    }
    return 0;
}

}  // namespace kiln
