// Pipeline creation: shader module, descriptor set layout and pipeline layout per shader.
#include "vulkan/pipeline.h"

#include <cstring>

#include "vulkan/shaders.h"

namespace kiln::vulkan {

namespace {

const ShaderBlob* find_shader(const std::string& name) {
    for (size_t i = 0; i < kShaderCount; ++i)
        if (name == kShaders[i].name) return &kShaders[i];
    return nullptr;
}

void destroy(VkDevice d, Pipeline& p) {
    if (p.pipeline) vkDestroyPipeline(d, p.pipeline, nullptr);
    if (p.layout) vkDestroyPipelineLayout(d, p.layout, nullptr);
    if (p.set_layout) vkDestroyDescriptorSetLayout(d, p.set_layout, nullptr);
}

}  // namespace

bool PipelineCache::has_shader(const std::string& name) { return find_shader(name) != nullptr; }

Expected<const Pipeline*> PipelineCache::get(const std::string& name, uint32_t n_bindings, uint32_t push_bytes) {
    if (auto it = pipelines_.find(name); it != pipelines_.end()) {
        KILN_ASSERT(it->second->n_bindings == n_bindings && it->second->push_bytes == push_bytes, "shader %s used with two interfaces", name.c_str());
        return it->second.get();
    }
    const ShaderBlob* blob = find_shader(name);
    if (!blob) return Status::error("no Vulkan shader '%s' in this build", name.c_str());
    if (push_bytes > ctx_->properties().limits.maxPushConstantsSize)
        return Status::error("%s: shader %s needs %u bytes of push constants, the device allows %u", ctx_->name(), name.c_str(), push_bytes,
                             ctx_->properties().limits.maxPushConstantsSize);
    const VkDevice d = ctx_->device();
    auto p = std::make_unique<Pipeline>();
    p->name = name;
    p->n_bindings = n_bindings;
    p->push_bytes = push_bytes;

    VkDescriptorSetLayoutBinding bindings[8];
    KILN_ASSERT(n_bindings <= 8, "shader %s: %u bindings", name.c_str(), n_bindings);
    for (uint32_t i = 0; i < n_bindings; ++i) bindings[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
    VkDescriptorSetLayoutCreateInfo dl{};
    dl.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    dl.bindingCount = n_bindings;
    dl.pBindings = bindings;
    KILN_VK_TRY(vkCreateDescriptorSetLayout(d, &dl, nullptr, &p->set_layout));

    VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes};
    VkPipelineLayoutCreateInfo pl{};
    pl.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    pl.setLayoutCount = 1;
    pl.pSetLayouts = &p->set_layout;
    pl.pushConstantRangeCount = push_bytes ? 1 : 0;
    pl.pPushConstantRanges = &range;
    if (VkResult r = vkCreatePipelineLayout(d, &pl, nullptr, &p->layout); r != VK_SUCCESS) {
        destroy(d, *p);
        return Status::error("vkCreatePipelineLayout(%s): %s", name.c_str(), result_name(r));
    }

    VkShaderModuleCreateInfo mi{};
    mi.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    mi.codeSize = blob->n_words * 4;
    mi.pCode = blob->words;
    VkShaderModule module;
    if (VkResult r = vkCreateShaderModule(d, &mi, nullptr, &module); r != VK_SUCCESS) {
        destroy(d, *p);
        return Status::error("vkCreateShaderModule(%s): %s", name.c_str(), result_name(r));
    }
    VkComputePipelineCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    ci.stage = {};
    ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    ci.stage.module = module;
    ci.stage.pName = "main";
    ci.layout = p->layout;
    const VkResult r = vkCreateComputePipelines(d, VK_NULL_HANDLE, 1, &ci, nullptr, &p->pipeline);
    vkDestroyShaderModule(d, module, nullptr);
    if (r != VK_SUCCESS) {
        destroy(d, *p);
        return Status::error("vkCreateComputePipelines(%s): %s", name.c_str(), result_name(r));
    }
    const Pipeline* out = p.get();
    pipelines_.emplace(name, std::move(p));
    return out;
}

PipelineCache::~PipelineCache() {
    for (auto& [name, p] : pipelines_) destroy(ctx_->device(), *p);
}

}  // namespace kiln::vulkan
