// The run-time switches kiln reads from the environment, all of them, here (read once, at
// first use). They change how kiln runs, never what it computes unless named so:
//   KILN_ISA=avx512|avx2|generic    the CPU kernel set (default: the best this CPU has)
//   KILN_WEIGHT_PREFETCH=0|1|l1|l2  decode weight prefetch: off, on, or on starting from the
//                                   L1 / L1+L2 distance (default: by CPU vendor)
//   KILN_DEBUG_TAPS=1               the CPU forward prints a sum of each intermediate, named
//                                   like llama.cpp's graph callbacks ("attn_norm-3")
//   KILN_VULKAN_MAX_BINDING=BYTES   caps the Vulkan storage binding size (>= 4096), so the
//                                   tests exercise tensors split over several bindings
//   KILN_MOE_DENSE_REFERENCE=1      MoE layers run every expert on every token and mask the
//                                   outputs (the reference tests/test_moe.cpp compares with)
#pragma once

#include <cstdint>
#include <string>

namespace kiln {

struct Switches {
    std::string isa;              // "" : the best
    std::string weight_prefetch;  // "" : the CPU's default
    bool debug_taps = false;
    uint64_t vulkan_max_binding = 0;  // 0: the device's limit
    bool moe_dense_reference = false;
};

// The environment as it was at the first call.
const Switches& switches();
// Read again (tests that set a variable between sessions).
void reload_switches();

}  // namespace kiln
