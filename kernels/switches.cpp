// switches.h: the environment, read in one place.
#include "switches.h"

#include <cstdlib>
#include <cstring>

namespace kiln {

namespace {

Switches read_environment() {
    auto get = [](const char* name) -> std::string {
        const char* v = std::getenv(name);
        return v ? v : "";
    };
    Switches s;
    s.isa = get("KILN_ISA");
    s.weight_prefetch = get("KILN_WEIGHT_PREFETCH");
    s.debug_taps = !get("KILN_DEBUG_TAPS").empty();
    const unsigned long long binding = std::strtoull(get("KILN_VULKAN_MAX_BINDING").c_str(), nullptr, 10);
    s.vulkan_max_binding = binding >= 4096 ? binding : 0;
    const std::string dense = get("KILN_MOE_DENSE_REFERENCE");
    s.moe_dense_reference = !dense.empty() && dense != "0";
    return s;
}

Switches& current() {
    static Switches s = read_environment();
    return s;
}

}  // namespace

const Switches& switches() { return current(); }
void reload_switches() { current() = read_environment(); }

}  // namespace kiln
