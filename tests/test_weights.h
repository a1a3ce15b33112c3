// Weight rows of any format for kernel tests (CPU and Vulkan).
#pragma once

#include <cstring>
#include <random>
#include <vector>

#include "kiln/format/blocks.h"
#include "ref/quants.h"
#include "ref/random_blocks.h"
#include "test_util.h"

namespace kiln::test {

// Weight rows of type t: quantized from Gaussian data where kiln has a quantizer, random
// bytes with sane fp16 scales otherwise (q2_K, q3_K, the IQ grid formats).
inline std::vector<uint8_t> weight_rows(DType t, int64_t rows, int64_t k, uint32_t seed) {
    const size_t rb = row_bytes(t, k);
    std::vector<uint8_t> w(rb * size_t(rows));
    if (ref::has_quantizer(t)) {
        auto x = gaussian(size_t(rows * k), seed, 0.05f);
        for (int64_t r = 0; r < rows; ++r) ref::quantize_row(t, x.data() + r * k, w.data() + size_t(r) * rb, k);
        return w;
    }
    ref::random_blocks(t, seed, w.data(), rows * k, 0.001f, 0.011f);
    return w;
}

}  // namespace kiln::test
