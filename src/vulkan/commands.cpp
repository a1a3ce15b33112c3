// Recorder: command buffer, descriptor pools and the fence of one submission at a time.
#include "vulkan/commands.h"

namespace kiln::vulkan {

namespace {

constexpr uint32_t kSetsPerPool = 1024;
constexpr uint32_t kMaxBindingsPerSet = 8;

}  // namespace

Expected<std::unique_ptr<Recorder>> Recorder::create(const Context& ctx) {
    std::unique_ptr<Recorder> r(new Recorder(ctx));
    VkCommandPoolCreateInfo pi{};
    pi.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pi.queueFamilyIndex = ctx.queue_family();
    KILN_VK_TRY(vkCreateCommandPool(ctx.device(), &pi, nullptr, &r->pool_));
    VkCommandBufferAllocateInfo ai{};
    ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    ai.commandPool = r->pool_;
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    KILN_VK_TRY(vkAllocateCommandBuffers(ctx.device(), &ai, &r->cmd_));
    VkFenceCreateInfo fi{};
    fi.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
    KILN_VK_TRY(vkCreateFence(ctx.device(), &fi, nullptr, &r->fence_));
    return r;
}

Recorder::~Recorder() {
    const VkDevice d = ctx_.device();
    for (VkDescriptorPool p : descriptor_pools_) vkDestroyDescriptorPool(d, p, nullptr);
    if (fence_) vkDestroyFence(d, fence_, nullptr);
    if (pool_) vkDestroyCommandPool(d, pool_, nullptr);  // frees cmd_
}

void Recorder::begin() {
    for (VkDescriptorPool p : descriptor_pools_) KILN_VK_CHECK(vkResetDescriptorPool(ctx_.device(), p, 0));
    current_pool_ = 0;
    n_dispatches_ = 0;
    KILN_VK_CHECK(vkResetCommandBuffer(cmd_, 0));
    VkCommandBufferBeginInfo bi{};
    bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    KILN_VK_CHECK(vkBeginCommandBuffer(cmd_, &bi));
}

VkDescriptorSet Recorder::allocate_set(VkDescriptorSetLayout layout) {
    for (;; ++current_pool_) {
        if (current_pool_ == descriptor_pools_.size()) {
            VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * kMaxBindingsPerSet};
            VkDescriptorPoolCreateInfo ci{};
            ci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
            ci.maxSets = kSetsPerPool;
            ci.poolSizeCount = 1;
            ci.pPoolSizes = &size;
            VkDescriptorPool pool;
            KILN_VK_CHECK(vkCreateDescriptorPool(ctx_.device(), &ci, nullptr, &pool));
            descriptor_pools_.push_back(pool);
        }
        VkDescriptorSetAllocateInfo ai{};
        ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
        ai.descriptorPool = descriptor_pools_[current_pool_];
        ai.descriptorSetCount = 1;
        ai.pSetLayouts = &layout;
        VkDescriptorSet set;
        const VkResult r = vkAllocateDescriptorSets(ctx_.device(), &ai, &set);
        if (r == VK_SUCCESS) return set;
        // A full pool: move on to the next one (created above when needed).
        KILN_ASSERT(r == VK_ERROR_OUT_OF_POOL_MEMORY || r == VK_ERROR_FRAGMENTED_POOL, "vkAllocateDescriptorSets: %s", result_name(r));
    }
}

void Recorder::dispatch(const Pipeline& p, std::initializer_list<BufferRange> buffers, const void* push, uint32_t push_bytes, uint32_t gx,
                        uint32_t gy, uint32_t gz) {
    KILN_ASSERT(buffers.size() == p.n_bindings, "%s: %zu buffers for %u bindings", p.name.c_str(), buffers.size(), p.n_bindings);
    KILN_ASSERT(push_bytes == p.push_bytes, "%s: %u push bytes, pipeline has %u", p.name.c_str(), push_bytes, p.push_bytes);
    const VkDescriptorSet set = allocate_set(p.set_layout);
    VkDescriptorBufferInfo infos[kMaxBindingsPerSet];
    VkWriteDescriptorSet writes[kMaxBindingsPerSet];
    uint32_t i = 0;
    for (const BufferRange& b : buffers) {
        KILN_ASSERT(b.buffer != VK_NULL_HANDLE && b.bytes > 0, "%s: binding %u is empty", p.name.c_str(), i);
        infos[i] = {b.buffer, b.offset, b.bytes};
        writes[i] = {};
        writes[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
        writes[i].dstSet = set;
        writes[i].dstBinding = i;
        writes[i].descriptorCount = 1;
        writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        writes[i].pBufferInfo = &infos[i];
        ++i;
    }
    vkUpdateDescriptorSets(ctx_.device(), i, writes, 0, nullptr);
    vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
    vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nullptr);
    if (push_bytes) vkCmdPushConstants(cmd_, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
    vkCmdDispatch(cmd_, gx, gy, gz);
    ++n_dispatches_;
}

void Recorder::barrier() {
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    const VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    vkCmdPipelineBarrier(cmd_, stages, stages, 0, 1, &mb, 0, nullptr, 0, nullptr);
}

void Recorder::copy(const BufferRange& src, uint64_t src_offset, VkBuffer dst, uint64_t dst_offset, uint64_t bytes) {
    const VkBufferCopy region{src.offset + src_offset, dst_offset, bytes};
    vkCmdCopyBuffer(cmd_, src.buffer, dst, 1, &region);
}

Status Recorder::submit_and_wait() {
    KILN_VK_TRY(vkEndCommandBuffer(cmd_));
    VkSubmitInfo si{};
    si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd_;
    KILN_VK_TRY(vkResetFences(ctx_.device(), 1, &fence_));
    KILN_VK_TRY(vkQueueSubmit(ctx_.queue(), 1, &si, fence_));
    KILN_VK_TRY(vkWaitForFences(ctx_.device(), 1, &fence_, VK_TRUE, UINT64_MAX));
    return Status::ok();
}

}  // namespace kiln::vulkan
