// Weight rows of any format for kernel tests (CPU and Vulkan).
#pragma once

#include <cstring>
#include <random>
#include <vector>

#include "kiln/format/blocks.h"
#include "ref/quants.h"
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
    std::mt19937 rng(seed);
    for (auto& b : w) b = uint8_t(rng());
    const size_t bs = dtype_info(t).type_size;
    for (size_t off = 0; off < w.size(); off += bs) {  // overwrite the fp16 scales with small normal values
        const uint16_t d = fp32_to_fp16(0.001f + 0.01f * float(rng() % 100) / 100.0f);
        if (t == DType::Q2_K) std::memcpy(&w[off + 80], &d, 2), std::memcpy(&w[off + 82], &d, 2);
        if (t == DType::Q3_K) std::memcpy(&w[off + 108], &d, 2);
        if (t == DType::IQ4_NL || t == DType::IQ4_XS || t == DType::IQ2_XXS || t == DType::IQ2_XS || t == DType::IQ2_S ||
            t == DType::IQ3_XXS || t == DType::IQ3_S || t == DType::IQ1_S)
            std::memcpy(&w[off], &d, 2);
        if (t == DType::IQ1_M)  // d's nibbles are the top nibbles of the 4 scale words (bytes 48..55)
            for (int n = 0; n < 4; ++n) w[off + 49 + 2 * n] = uint8_t((w[off + 49 + 2 * n] & 0x0F) | ((d >> (4 * n)) & 0xF) << 4);
    }
    return w;
}

}  // namespace kiln::test
