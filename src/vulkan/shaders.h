// The SPIR-V modules glslc compiled from kernels/vulkan/*.comp, embedded at build time
// (cmake/embed_spirv.cmake writes the table).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln::vulkan {

struct ShaderBlob {
    const char* name;  // file stem, plus "_<format>" for the per-weight-format shaders
    const uint32_t* words;
    size_t n_words;
};

extern const ShaderBlob kShaders[];
extern const size_t kShaderCount;

}  // namespace kiln::vulkan
