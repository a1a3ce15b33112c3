// Instance creation, device enumeration (--list-devices) and device selection (--device N).
#include "vulkan/context.h"

#include "switches.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace kiln::vulkan {

const char* result_name(VkResult r) {
    switch (r) {
        case VK_SUCCESS: return "VK_SUCCESS";
        case VK_NOT_READY: return "VK_NOT_READY";
        case VK_TIMEOUT: return "VK_TIMEOUT";
        case VK_INCOMPLETE: return "VK_INCOMPLETE";
        case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
        case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
        case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
        case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
        case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
        case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
        case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
        case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
        case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER (no Vulkan driver installed?)";
        case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
        case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
        default: return "VkResult error";
    }
}

namespace {

constexpr uint32_t kMinApi = VK_API_VERSION_1_2;

struct Instance {
    VkInstance handle = VK_NULL_HANDLE;
    ~Instance() {
        if (handle) vkDestroyInstance(handle, nullptr);
    }
    VkInstance release() { return std::exchange(handle, VK_NULL_HANDLE); }
};

Status create_instance(Instance& out) {
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "kiln";
    app.pEngineName = "kiln";
    app.apiVersion = kMinApi;
    VkInstanceCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    ci.pApplicationInfo = &app;
    KILN_VK_TRY(vkCreateInstance(&ci, nullptr, &out.handle));
    return Status::ok();
}

Expected<std::vector<VkPhysicalDevice>> physical_devices(VkInstance instance) {
    uint32_t n = 0;
    KILN_VK_TRY(vkEnumeratePhysicalDevices(instance, &n, nullptr));
    std::vector<VkPhysicalDevice> devices(n);
    KILN_VK_TRY(vkEnumeratePhysicalDevices(instance, &n, devices.data()));
    devices.resize(n);
    return devices;
}

const char* type_name(VkPhysicalDeviceType t) {
    switch (t) {
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
        case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
        default: return "other";
    }
}

// A queue family with compute; -1 if none.
int compute_queue_family(VkPhysicalDevice d) {
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(d, &n, nullptr);
    std::vector<VkQueueFamilyProperties> families(n);
    vkGetPhysicalDeviceQueueFamilyProperties(d, &n, families.data());
    for (uint32_t i = 0; i < n; ++i)
        if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) return int(i);
    return -1;
}

VulkanDeviceInfo describe(VkPhysicalDevice d, int index) {
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(d, &p);
    VkPhysicalDeviceMemoryProperties m;
    vkGetPhysicalDeviceMemoryProperties(d, &m);
    VulkanDeviceInfo info;
    info.index = index;
    info.name = p.deviceName;
    info.type = type_name(p.deviceType);
    info.api = strfmt("%u.%u.%u", VK_API_VERSION_MAJOR(p.apiVersion), VK_API_VERSION_MINOR(p.apiVersion), VK_API_VERSION_PATCH(p.apiVersion));
    for (uint32_t i = 0; i < m.memoryHeapCount; ++i)
        if (m.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) info.device_local_bytes += m.memoryHeaps[i].size;
    info.usable = p.apiVersion >= kMinApi && compute_queue_family(d) >= 0;
    return info;
}

}  // namespace

Expected<std::shared_ptr<Context>> Context::create(int index) {
    Instance instance;
    KILN_TRY(create_instance(instance));
    auto devices = physical_devices(instance.handle);
    KILN_TRY(devices);
    if (devices->empty()) return Status::error("no Vulkan device found (is a Vulkan driver such as mesa-vulkan-drivers installed?)");
    if (index < 0 || size_t(index) >= devices->size())
        return Status::error("SessionOptions::device %d: there are %zu Vulkan devices (0..%zu; see list_vulkan_devices())", index, devices->size(), devices->size() - 1);
    const VkPhysicalDevice physical = (*devices)[size_t(index)];
    const VulkanDeviceInfo info = describe(physical, index);
    if (!info.usable) return Status::error("Vulkan device %d (%s) lacks Vulkan 1.2 or a compute queue", index, info.name.c_str());

    std::shared_ptr<Context> c(new Context());
    c->physical_ = physical;
    vkGetPhysicalDeviceProperties(physical, &c->props_);
    vkGetPhysicalDeviceMemoryProperties(physical, &c->memory_);
    c->queue_family_ = uint32_t(compute_queue_family(physical));
    c->max_binding_ = c->props_.limits.maxStorageBufferRange;
    if (const uint64_t cap = switches().vulkan_max_binding) c->max_binding_ = std::min<uint64_t>(c->max_binding_, cap);

    const float priority = 1.0f;
    VkDeviceQueueCreateInfo qi{};
    qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    qi.queueFamilyIndex = c->queue_family_;
    qi.queueCount = 1;
    qi.pQueuePriorities = &priority;
    VkDeviceCreateInfo di{};
    di.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
    di.queueCreateInfoCount = 1;
    di.pQueueCreateInfos = &qi;
    c->instance_ = instance.release();  // owned by c from here (its destructor frees it)
    KILN_VK_TRY(vkCreateDevice(physical, &di, nullptr, &c->device_));
    vkGetDeviceQueue(c->device_, c->queue_family_, 0, &c->queue_);
    return c;
}

Context::~Context() {
    if (device_) {
        vkDeviceWaitIdle(device_);
        vkDestroyDevice(device_, nullptr);
    }
    if (instance_) vkDestroyInstance(instance_, nullptr);
}

}  // namespace kiln::vulkan

namespace kiln {

bool vulkan_compiled() { return true; }

Expected<std::vector<VulkanDeviceInfo>> list_vulkan_devices() {
    vulkan::Instance instance;
    KILN_TRY(vulkan::create_instance(instance));
    auto devices = vulkan::physical_devices(instance.handle);
    KILN_TRY(devices);
    std::vector<VulkanDeviceInfo> out;
    for (size_t i = 0; i < devices->size(); ++i) out.push_back(vulkan::describe((*devices)[i], int(i)));
    return out;
}

}  // namespace kiln
