// Device memory: one VkBuffer with its own allocation, device-local (weights, activations,
// KV cache) or host-visible and mapped (staging, per-forward inputs, results).
#pragma once

#include <cstdint>

#include "vulkan/context.h"

namespace kiln::vulkan {

enum class Memory {
    DeviceLocal,  // fastest for the shaders; filled through a staging copy
    HostVisible,  // mapped and coherent: written or read by the CPU directly
};

class Buffer {
public:
    Buffer() = default;
    static Expected<Buffer> create(const Context& ctx, uint64_t bytes, Memory memory);
    Buffer(Buffer&& o) noexcept { *this = std::move(o); }
    Buffer& operator=(Buffer&& o) noexcept;
    ~Buffer() { release(); }

    VkBuffer handle() const { return buffer_; }
    uint64_t size() const { return size_; }
    // Host pointer of a HostVisible buffer (nullptr for DeviceLocal ones unless the device
    // memory happened to be host-visible, as on lavapipe and most APUs).
    void* mapped() const { return mapped_; }
    bool empty() const { return buffer_ == VK_NULL_HANDLE; }

private:
    void release();
    VkDevice device_ = VK_NULL_HANDLE;
    VkBuffer buffer_ = VK_NULL_HANDLE;
    VkDeviceMemory memory_ = VK_NULL_HANDLE;
    uint64_t size_ = 0;
    void* mapped_ = nullptr;
};

// A byte range of a buffer, as bound to one shader binding.
struct BufferRange {
    VkBuffer buffer = VK_NULL_HANDLE;
    uint64_t offset = 0;
    uint64_t bytes = 0;
};
inline BufferRange whole(const Buffer& b) { return {b.handle(), 0, b.size()}; }

// Copies host bytes into `dst` at `offset`: directly when it is mapped, else through a
// staging buffer in chunks (one submit per chunk; used at load, not per token).
Status upload(const Context& ctx, const Buffer& dst, uint64_t offset, const void* src, uint64_t bytes);
// Copies `bytes` from `src` at `offset` to host memory (through a staging buffer unless mapped).
Status download(const Context& ctx, const Buffer& src, uint64_t offset, void* dst, uint64_t bytes);

}  // namespace kiln::vulkan
