// Backend names, and the stand-ins for the Vulkan entry points in builds without Vulkan.
#include "kiln/session.h"

#include "runtime/device_forward.h"

namespace kiln {

const char* backend_name(Backend b) { return b == Backend::Vulkan ? "vulkan" : "cpu"; }

Expected<Backend> parse_backend(const std::string& name) {
    if (name == "cpu") return Backend::Cpu;
    if (name == "vulkan") {
        if (!vulkan_compiled()) return Status::error("this kiln was built without Vulkan (configure with -DKILN_VULKAN=ON)");
        return Backend::Vulkan;
    }
    return Status::error("'%s' is not a backend (cpu, vulkan)", name.c_str());
}

#ifndef KILN_HAVE_VULKAN
bool vulkan_compiled() { return false; }

Expected<std::vector<VulkanDeviceInfo>> list_vulkan_devices() {
    return Status::error("this kiln was built without Vulkan (configure with -DKILN_VULKAN=ON)");
}

Expected<std::unique_ptr<DeviceForward>> create_vulkan_forward(const Model&, const SessionOptions&, int, int, const std::vector<bool>&) {
    return Status::error("the Vulkan backend is not in this build of kiln (configure with -DKILN_VULKAN=ON)");
}
#endif

}  // namespace kiln
