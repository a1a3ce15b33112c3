// TensorView: a non-owning view of a weight tensor (usually inside the mmap'd file).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kiln/dtype.h"

namespace kiln {

struct TensorView {
    const void* data = nullptr;
    DType dtype = DType::F32;
    int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] = elements per row
    const char* name = "";        // points into the owning Weights' name storage
    // Optional row-interleaved copy made at load (LoadOptions::repack): 16-row groups of
    // packed_group_bytes each, used by the kernels that have an r16 variant.
    const void* packed = nullptr;
    size_t packed_group_bytes = 0;

    bool empty() const { return data == nullptr; }
    int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
    int64_t cols() const { return ne[0]; }
    size_t row_size() const { return row_bytes(dtype, ne[0]); }
    const uint8_t* row(int64_t r) const { return static_cast<const uint8_t*>(data) + size_t(r) * row_size(); }
    // For 3-D expert tensors: a 2-D view of slice e (ne[2] index).
    TensorView slice(int64_t e) const {
        TensorView v = *this;
        v.data = static_cast<const uint8_t*>(data) + size_t(e) * size_t(ne[1]) * row_size();
        v.ne[2] = 1;
        if (packed) v.packed = static_cast<const uint8_t*>(packed) + size_t(e) * size_t(ne[1] / 16) * packed_group_bytes;
        return v;
    }
    size_t nbytes() const { return size_t(rows()) * row_size(); }
};

}  // namespace kiln
