// The model's tensors in device memory: uploaded once when a Vulkan session is created,
// packed into a few large buffers ("arenas") at offsets the device can bind.
#pragma once

#include <map>
#include <vector>

#include "kiln/model.h"
#include "vulkan/buffer.h"
#include "kiln/format/weights.h"

namespace kiln::vulkan {

struct DeviceTensor {
    // Rows row0 .. row0 + rows - 1, their bytes rounded up to whole 32-bit words. A tensor
    // larger than the device's largest storage binding (Gemma 3's 170 MiB embedding table
    // on lavapipe's 128 MiB) is split into parts by rows; the shaders take one part each.
    struct Part {
        BufferRange range;
        uint32_t row0 = 0, rows = 0;
    };
    std::vector<Part> parts;
    DType dtype = DType::F32;
    uint32_t rows = 0, cols = 0;
    bool empty() const { return parts.empty(); }
    // The binding of a tensor in one part (norm weights, biases).
    const BufferRange& range() const {
        KILN_ASSERT(parts.size() == 1, "a %u-part tensor bound whole", unsigned(parts.size()));
        return parts[0].range;
    }
};

class DeviceWeights {
public:
    // Uploads every tensor in `tensors` (empty views are skipped; a tensor listed twice,
    // such as tied embeddings, is uploaded once). Errors name the tensor that does not fit.
    Status upload(const Context& ctx, const std::vector<const TensorView*>& tensors);
    // The device copy of t (an empty DeviceTensor for an empty view).
    const DeviceTensor& operator[](const TensorView& t) const;
    uint64_t bytes() const { return bytes_; }

private:
    std::vector<Buffer> arenas_;
    std::map<const void*, DeviceTensor> by_data_;  // keyed by the host data pointer
    static const DeviceTensor kEmpty;
    uint64_t bytes_ = 0;
};

}  // namespace kiln::vulkan
