// Buffer allocation and the staging copies between host memory and device-local buffers.
#include "vulkan/buffer.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "vulkan/commands.h"

namespace kiln::vulkan {

namespace {

// Index of a memory type allowed by `type_bits` with all `required` flags, preferring
// one that also has `preferred`; -1 if none.
int find_memory_type(const VkPhysicalDeviceMemoryProperties& mp, uint32_t type_bits, VkMemoryPropertyFlags required, VkMemoryPropertyFlags preferred) {
    int fallback = -1;
    for (uint32_t i = 0; i < mp.memoryTypeCount; ++i) {
        if (!(type_bits & (1u << i))) continue;
        const VkMemoryPropertyFlags f = mp.memoryTypes[i].propertyFlags;
        if ((f & required) != required) continue;
        if ((f & preferred) == preferred) return int(i);
        if (fallback < 0) fallback = int(i);
    }
    return fallback;
}

constexpr uint64_t kStagingChunk = 64ull << 20;

}  // namespace

Expected<Buffer> Buffer::create(const Context& ctx, uint64_t bytes, Memory memory) {
    Buffer b;
    b.device_ = ctx.device();
    b.size_ = bytes;
    VkBufferCreateInfo bi{};
    bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    bi.size = std::max<uint64_t>(bytes, 4);
    bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    KILN_VK_TRY(vkCreateBuffer(b.device_, &bi, nullptr, &b.buffer_));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(b.device_, b.buffer_, &req);
    const VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    const int type = memory == Memory::DeviceLocal ? find_memory_type(ctx.memory(), req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0)
                                                   : find_memory_type(ctx.memory(), req.memoryTypeBits, host, VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    if (type < 0) return Status::error("%s: no %s memory type for a buffer", ctx.name(), memory == Memory::DeviceLocal ? "device-local" : "host-visible");
    VkMemoryAllocateInfo ai{};
    ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = uint32_t(type);
    const VkResult r = vkAllocateMemory(b.device_, &ai, nullptr, &b.memory_);
    if (r != VK_SUCCESS)
        return Status::error("%s: allocating %.1f MiB of %s memory failed: %s", ctx.name(), double(bytes) / (1 << 20),
                             memory == Memory::DeviceLocal ? "device" : "host-visible", result_name(r));
    KILN_VK_TRY(vkBindBufferMemory(b.device_, b.buffer_, b.memory_, 0));
    // Device-local memory that is also host-visible (lavapipe, APUs, resizable BAR) is
    // mapped too when coherent, so uploads skip the staging copy.
    if ((ctx.memory().memoryTypes[type].propertyFlags & host) == host)
        KILN_VK_TRY(vkMapMemory(b.device_, b.memory_, 0, VK_WHOLE_SIZE, 0, &b.mapped_));
    return b;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        release();
        device_ = std::exchange(o.device_, VK_NULL_HANDLE);
        buffer_ = std::exchange(o.buffer_, VK_NULL_HANDLE);
        memory_ = std::exchange(o.memory_, VK_NULL_HANDLE);
        size_ = std::exchange(o.size_, 0);
        mapped_ = std::exchange(o.mapped_, nullptr);
    }
    return *this;
}

void Buffer::release() {
    if (buffer_) vkDestroyBuffer(device_, buffer_, nullptr);
    if (memory_) vkFreeMemory(device_, memory_, nullptr);  // unmaps too
    buffer_ = VK_NULL_HANDLE;
    memory_ = VK_NULL_HANDLE;
    mapped_ = nullptr;
}

namespace {

// Moves `bytes` between host memory and `device` at `offset`, chunk by chunk through a
// mapped staging buffer.
Status staged_copy(const Context& ctx, const Buffer& device, uint64_t offset, uint8_t* host, uint64_t bytes, bool to_device) {
    auto staging = Buffer::create(ctx, std::min(bytes, kStagingChunk), Memory::HostVisible);
    KILN_TRY(staging);
    auto recorder = Recorder::create(ctx);
    KILN_TRY(recorder);
    Recorder& rec = *recorder.value();
    for (uint64_t done = 0; done < bytes;) {
        const uint64_t n = std::min(bytes - done, staging->size());
        rec.begin();
        if (to_device) {
            std::memcpy(staging->mapped(), host + done, n);
            rec.copy(whole(*staging), 0, device.handle(), offset + done, n);
        } else {
            rec.copy({device.handle(), 0, device.size()}, offset + done, staging->handle(), 0, n);
        }
        KILN_TRY(rec.submit_and_wait());
        if (!to_device) std::memcpy(host + done, staging->mapped(), n);
        done += n;
    }
    return Status::ok();
}

}  // namespace

Status upload(const Context& ctx, const Buffer& dst, uint64_t offset, const void* src, uint64_t bytes) {
    KILN_ASSERT(offset + bytes <= dst.size(), "upload of %llu bytes at %llu overflows a %llu-byte buffer", (unsigned long long)bytes,
                (unsigned long long)offset, (unsigned long long)dst.size());
    if (bytes == 0) return Status::ok();
    if (dst.mapped()) {
        std::memcpy(static_cast<uint8_t*>(dst.mapped()) + offset, src, bytes);
        return Status::ok();
    }
    return staged_copy(ctx, dst, offset, const_cast<uint8_t*>(static_cast<const uint8_t*>(src)), bytes, true);
}

Status download(const Context& ctx, const Buffer& src, uint64_t offset, void* dst, uint64_t bytes) {
    KILN_ASSERT(offset + bytes <= src.size(), "download of %llu bytes at %llu overflows a %llu-byte buffer", (unsigned long long)bytes,
                (unsigned long long)offset, (unsigned long long)src.size());
    if (bytes == 0) return Status::ok();
    if (src.mapped()) {
        std::memcpy(dst, static_cast<const uint8_t*>(src.mapped()) + offset, bytes);
        return Status::ok();
    }
    return staged_copy(ctx, src, offset, static_cast<uint8_t*>(dst), bytes, false);
}

}  // namespace kiln::vulkan
