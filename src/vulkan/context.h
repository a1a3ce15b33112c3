// The Vulkan instance, the chosen physical device, its logical device and compute queue.
#pragma once

#include <memory>
#include <vector>

#include <vulkan/vulkan.h>

#include "kiln/session.h"
#include "kiln/status.h"

namespace kiln::vulkan {

// "vkCreateDevice: VK_ERROR_OUT_OF_HOST_MEMORY"-style message for a failed call.
const char* result_name(VkResult r);

#define KILN_VK_TRY(call)                                                                  \
    do {                                                                                   \
        const VkResult kiln_vk_r_ = (call);                                                \
        if (kiln_vk_r_ != VK_SUCCESS)                                                      \
            return ::kiln::Status::error("%s failed: %s", #call, ::kiln::vulkan::result_name(kiln_vk_r_)); \
    } while (0)
// For calls that cannot fail on valid input (internal invariants).
#define KILN_VK_CHECK(call)                                                                \
    do {                                                                                   \
        const VkResult kiln_vk_r_ = (call);                                                \
        KILN_ASSERT(kiln_vk_r_ == VK_SUCCESS, "%s: %s", #call, ::kiln::vulkan::result_name(kiln_vk_r_)); \
    } while (0)

class Context {
public:
    // Opens device `index` of list_vulkan_devices(). Errors name the device and the reason.
    static Expected<std::shared_ptr<Context>> create(int index);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    VkDevice device() const { return device_; }
    VkPhysicalDevice physical() const { return physical_; }
    VkQueue queue() const { return queue_; }
    uint32_t queue_family() const { return queue_family_; }
    const VkPhysicalDeviceProperties& properties() const { return props_; }
    const VkPhysicalDeviceMemoryProperties& memory() const { return memory_; }
    const char* name() const { return props_.deviceName; }
    // Largest storage buffer binding the device allows (bytes). KILN_VULKAN_MAX_BINDING=N
    // lowers it, so tests reach the split-tensor and grouped-logits paths on small models.
    uint64_t max_binding_bytes() const { return max_binding_; }

private:
    Context() = default;
    VkInstance instance_ = VK_NULL_HANDLE;
    VkPhysicalDevice physical_ = VK_NULL_HANDLE;
    VkDevice device_ = VK_NULL_HANDLE;
    VkQueue queue_ = VK_NULL_HANDLE;
    uint32_t queue_family_ = 0;
    VkPhysicalDeviceProperties props_{};
    VkPhysicalDeviceMemoryProperties memory_{};
    uint64_t max_binding_ = 0;
};

}  // namespace kiln::vulkan
