// Random weight blocks (kernels/ref/random_blocks.h).
#include "ref/random_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kiln/format/blocks.h"
#include "ref/quants.h"
#include "kiln/status.h"

namespace kiln::ref {

namespace {

// Byte offset of the fp16 super-block scale d in a block of t (-1: IQ1_M keeps it in the
// top nibbles of its four scale words, bytes 48..55).
int d_offset(DType t) {
    switch (t) {
        case DType::Q2_K: return 80;  // d, then dmin at 82
        case DType::Q3_K: return 108;
        case DType::IQ1_M: return -1;
        default: return 0;  // IQ4_NL, IQ4_XS and the IQ2/IQ3/IQ1_S grids start with d
    }
}

}  // namespace

void random_blocks(DType t, uint64_t seed, void* dst, int64_t n, float d_lo, float d_hi) {
    const DTypeInfo& info = dtype_info(t);
    KILN_ASSERT(n % info.block_size == 0, "random_blocks: n=%lld is not whole %s blocks", (long long)n, info.name);
    auto* out = static_cast<uint8_t*>(dst);
    const size_t bytes = size_t(n / info.block_size) * info.type_size;
    std::mt19937_64 rng(seed);
    for (size_t i = 0; i < bytes; i += 8) {  // 8 bytes per draw
        const uint64_t r = rng();
        std::memcpy(out + i, &r, std::min<size_t>(8, bytes - i));
    }
    std::uniform_real_distribution<float> ud(d_lo, d_hi);
    for (size_t off = 0; off < bytes; off += info.type_size) {
        const uint16_t d = fp32_to_fp16(d_lo == d_hi ? d_lo : ud(rng));
        const int at = d_offset(t);
        if (at >= 0) std::memcpy(out + off + at, &d, 2);
        if (t == DType::Q2_K) std::memcpy(out + off + 82, &d, 2);  // dmin as d
        if (t == DType::IQ1_M)  // d's nibbles are the top nibbles of the 4 scale words
            for (int k = 0; k < 4; ++k) out[off + 49 + 2 * k] = uint8_t((out[off + 49 + 2 * k] & 0x0F) | ((d >> (4 * k)) & 0xF) << 4);
    }
}

double random_blocks_rms_per_d(DType t) {
    const int64_t n = 64 * int64_t(dtype_info(t).block_size);
    std::vector<uint8_t> blocks(size_t(64) * dtype_info(t).type_size);  // 64 blocks at d = 1
    std::vector<float> w(static_cast<size_t>(n));                       // (n) their weights
    random_blocks(t, 1, blocks.data(), n, 1.0f, 1.0f);
    dequantize_row(t, blocks.data(), w.data(), n);
    double ss = 0;
    for (float v : w) ss += double(v) * v;
    return std::sqrt(ss / double(n));
}

}  // namespace kiln::ref
