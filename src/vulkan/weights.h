// The model's tensors in device memory: uploaded once when a Vulkan session is created,
// packed into a few large buffers ("arenas") at offsets the device can bind.
#pragma once

#include <map>
#include <vector>

#include "kiln/model.h"
#include "vulkan/buffer.h"

namespace kiln::vulkan {

struct DeviceTensor {
    BufferRange range;  // the tensor's bytes (rounded up to whole 32-bit words)
    DType dtype = DType::F32;
    uint32_t rows = 0, cols = 0;
    bool empty() const { return range.buffer == VK_NULL_HANDLE; }
};

class DeviceWeights {
public:
    // Uploads every tensor in `tensors` (empty views are skipped; a tensor listed twice,
    // such as tied embeddings, is uploaded once). Errors name the tensor that does not fit.
    Status upload(const Context& ctx, const std::vector<const TensorView*>& tensors);
    // The device copy of t (an empty DeviceTensor for an empty view).
    DeviceTensor operator[](const TensorView& t) const;
    uint64_t bytes() const { return bytes_; }

private:
    std::vector<Buffer> arenas_;
    std::map<const void*, DeviceTensor> by_data_;  // keyed by the host data pointer
    uint64_t bytes_ = 0;
};

}  // namespace kiln::vulkan
