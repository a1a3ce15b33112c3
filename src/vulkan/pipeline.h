// Compute pipelines built from the embedded SPIR-V, created on first use and cached.
// Every kiln shader has the same interface: bindings 0..n-1 are storage buffers in
// descriptor set 0, and one push-constant block carries the sizes and scalars.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "vulkan/context.h"

namespace kiln::vulkan {

struct Pipeline {
    std::string name;
    VkPipeline pipeline = VK_NULL_HANDLE;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
    uint32_t n_bindings = 0;
    uint32_t push_bytes = 0;
};

class PipelineCache {
public:
    explicit PipelineCache(std::shared_ptr<const Context> ctx) : ctx_(std::move(ctx)) {}
    ~PipelineCache();
    PipelineCache(const PipelineCache&) = delete;
    PipelineCache& operator=(const PipelineCache&) = delete;

    // The pipeline of shader `name` with `n_bindings` storage buffers and a push-constant
    // block of `push_bytes`; an error if no such shader was compiled in.
    Expected<const Pipeline*> get(const std::string& name, uint32_t n_bindings, uint32_t push_bytes);
    // True when a shader of that name is embedded.
    static bool has_shader(const std::string& name);

private:
    std::shared_ptr<const Context> ctx_;
    std::map<std::string, std::unique_ptr<Pipeline>> pipelines_;
};

}  // namespace kiln::vulkan
