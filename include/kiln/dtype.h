// Tensor element types (ggml's type ids), their names and sizes. The block layouts and
// fp16/bf16 conversions are in kiln/format/blocks.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace kiln {

// Values are ggml's type ids as stored in GGUF tensor infos.
enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    IQ1_M = 29,
    BF16 = 30,
};

struct DTypeInfo {
    const char* name;     // ggml spelling, e.g. "q4_K"
    uint32_t block_size;  // elements per block (1 for plain floats)
    uint32_t type_size;   // bytes per block
};

// Returns nullptr for ids kiln does not know (removed types, TQ1_0/TQ2_0, MXFP4, ...).
const DTypeInfo* dtype_info(uint32_t ggml_type_id);
inline const DTypeInfo& dtype_info(DType t) { return *dtype_info(uint32_t(t)); }
inline const char* dtype_name(DType t) { return dtype_info(t).name; }
// Bytes of one row of n elements (n must be a multiple of the block size).
inline size_t row_bytes(DType t, int64_t n) {
    const DTypeInfo& i = dtype_info(t);
    return size_t(n / i.block_size) * i.type_size;
}

}  // namespace kiln
