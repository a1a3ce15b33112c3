// Compute backends: the CPU kernels (always) and the Vulkan shaders (when kiln is built
// with KILN_VULKAN=ON). A Session picks one in SessionOptions::backend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln {

enum class Backend { Cpu, Vulkan };

const char* backend_name(Backend b);  // "cpu", "vulkan"
Expected<Backend> parse_backend(const std::string& name);

// True when this build of kiln contains the Vulkan backend.
bool vulkan_compiled();

struct VulkanDeviceInfo {
    int index = 0;          // the --device number
    std::string name;       // e.g. "AMD Radeon 8060S (RADV GFX1151)"
    std::string type;       // "integrated GPU", "discrete GPU", "CPU", ...
    std::string api;        // Vulkan version, e.g. "1.3.255"
    uint64_t device_local_bytes = 0;
    bool usable = false;    // Vulkan 1.2+ with what kiln needs
};

// The Vulkan devices the loader sees, in --device order. An error when kiln was built
// without Vulkan or no Vulkan loader/driver is present.
Expected<std::vector<VulkanDeviceInfo>> list_vulkan_devices();

}  // namespace kiln
