// Command recording: one command buffer collects the dispatches of a whole forward pass
// (or a test), with the barriers between dependent steps, and is submitted once.
#pragma once

#include <initializer_list>
#include <memory>
#include <vector>

#include "vulkan/buffer.h"
#include "vulkan/pipeline.h"

namespace kiln::vulkan {

class Recorder {
public:
    static Expected<std::unique_ptr<Recorder>> create(const Context& ctx);
    ~Recorder();
    Recorder(const Recorder&) = delete;
    Recorder& operator=(const Recorder&) = delete;

    // Starts a new recording; the descriptor sets of the previous one are recycled, so the
    // previous submission must have completed (submit_and_wait guarantees it).
    void begin();
    // Binds `buffers` to bindings 0.. of `p`, pushes `push` and dispatches groups (x, y, z).
    void dispatch(const Pipeline& p, std::initializer_list<BufferRange> buffers, const void* push, uint32_t push_bytes, uint32_t gx,
                  uint32_t gy = 1, uint32_t gz = 1);
    template <class Push>
    void dispatch(const Pipeline& p, std::initializer_list<BufferRange> buffers, const Push& push, uint32_t gx, uint32_t gy = 1, uint32_t gz = 1) {
        dispatch(p, buffers, &push, uint32_t(sizeof(Push)), gx, gy, gz);
    }
    // Everything written before is visible to every dispatch or copy recorded after.
    // Dispatches between two barriers may run concurrently, so they must not depend on
    // each other (e.g. the Q, K and V projections of one input).
    void barrier();
    void copy(const BufferRange& src, uint64_t src_offset, VkBuffer dst, uint64_t dst_offset, uint64_t bytes);
    // Ends the recording, submits it and blocks until the device has finished.
    Status submit_and_wait();
    int n_dispatches() const { return n_dispatches_; }

private:
    explicit Recorder(const Context& ctx) : ctx_(ctx) {}
    VkDescriptorSet allocate_set(VkDescriptorSetLayout layout);
    const Context& ctx_;
    VkCommandPool pool_ = VK_NULL_HANDLE;
    VkCommandBuffer cmd_ = VK_NULL_HANDLE;
    VkFence fence_ = VK_NULL_HANDLE;
    std::vector<VkDescriptorPool> descriptor_pools_;  // grown on demand, reset per recording
    size_t current_pool_ = 0;
    int n_dispatches_ = 0;
};

}  // namespace kiln::vulkan
