#include "kiln/format/blocks.h"

namespace kiln {

const DTypeInfo* dtype_info(uint32_t id) {
    // Indexed by ggml type id; {nullptr} marks ids kiln does not read.
    static const DTypeInfo kTable[] = {
        {"f32", 1, 4},                        // 0
        {"f16", 1, 2},                        // 1
        {"q4_0", QK4_0, sizeof(block_q4_0)},  // 2
        {"q4_1", QK4_1, sizeof(block_q4_1)},  // 3
        {nullptr, 0, 0},                      // 4 removed
        {nullptr, 0, 0},                      // 5 removed
        {"q5_0", QK5_0, sizeof(block_q5_0)},  // 6
        {"q5_1", QK5_1, sizeof(block_q5_1)},  // 7
        {"q8_0", QK8_0, sizeof(block_q8_0)},  // 8
        {"q8_1", QK8_1, sizeof(block_q8_1)},  // 9
        {"q2_K", QK_K, sizeof(block_q2_K)},   // 10
        {"q3_K", QK_K, sizeof(block_q3_K)},   // 11
        {"q4_K", QK_K, sizeof(block_q4_K)},   // 12
        {"q5_K", QK_K, sizeof(block_q5_K)},   // 13
        {"q6_K", QK_K, sizeof(block_q6_K)},   // 14
        {"q8_K", QK_K, sizeof(block_q8_K)},   // 15
        {"iq2_xxs", QK_K, sizeof(block_iq2_xxs)},  // 16
        {"iq2_xs", QK_K, sizeof(block_iq2_xs)},    // 17
        {"iq3_xxs", QK_K, sizeof(block_iq3_xxs)},  // 18
        {"iq1_s", QK_K, sizeof(block_iq1_s)},      // 19
        {"iq4_nl", QK4_NL, sizeof(block_iq4_nl)},  // 20
        {"iq3_s", QK_K, sizeof(block_iq3_s)},      // 21
        {"iq2_s", QK_K, sizeof(block_iq2_s)},      // 22
        {"iq4_xs", QK_K, sizeof(block_iq4_xs)},    // 23
        {nullptr, 0, 0},                      // 24 i8
        {nullptr, 0, 0},                      // 25 i16
        {nullptr, 0, 0},                      // 26 i32
        {nullptr, 0, 0},                      // 27 i64
        {nullptr, 0, 0},                      // 28 f64
        {"iq1_m", QK_K, sizeof(block_iq1_m)},      // 29
    };
    static const DTypeInfo kBF16 = {"bf16", 1, 2};
    if (id < sizeof kTable / sizeof kTable[0]) return kTable[id].name ? &kTable[id] : nullptr;
    if (id == uint32_t(DType::BF16)) return &kBF16;
    return nullptr;
}

}  // namespace kiln
