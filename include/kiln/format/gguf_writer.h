// GGUF v3 writer: used by kiln-quantize, by the tests to build synthetic models and
// malformed files, and by apps that want to save tensors in llama.cpp's format.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/format/gguf.h"
#include "kiln/status.h"

namespace kiln {

class GgufWriter {
public:
    explicit GgufWriter(uint32_t alignment = 32) : alignment_(alignment) {}

    void set_u16(const std::string& key, uint16_t v);
    void set_u32(const std::string& key, uint32_t v);
    void set_i32(const std::string& key, int32_t v);
    void set_u64(const std::string& key, uint64_t v);
    void set_f32(const std::string& key, float v);
    void set_bool(const std::string& key, bool v);
    void set_str(const std::string& key, const std::string& v);
    void set_arr_str(const std::string& key, const std::vector<std::string>& v);
    void set_arr_f32(const std::string& key, const std::vector<float>& v);
    void set_arr_i32(const std::string& key, const std::vector<int32_t>& v);
    // Copies any value read by GgufFile (scalars, strings, numeric/string/nested arrays).
    void set_value(const std::string& key, const GgufValue& v);

    // Adds a tensor; `ne` in ggml order (ne[0] = row length). The bytes are copied.
    void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& ne, const void* data, size_t nbytes);
    // Adds every metadata value and tensor of f, in its order (a quantized or HF-converted
    // file written out as GGUF).
    void add_file(const GgufFile& f);
    // f's metadata alone, less what describes one file rather than the model: the alignment
    // (the writer states its own) and the split keys (a split's parts write their own).
    void add_metadata(const GgufFile& f);

    // The complete file image.
    std::vector<uint8_t> to_bytes() const;
    Status write(const std::string& path) const;

private:
    struct Tensor {
        std::string name;
        DType dtype;
        std::vector<int64_t> ne;
        std::vector<uint8_t> bytes;
    };
    void begin_kv(const std::string& key, uint32_t type);
    void put_value(const GgufValue& v);
    std::vector<uint8_t> header_bytes() const;
    uint64_t pad(uint64_t x) const { return (x + alignment_ - 1) / alignment_ * alignment_; }
    uint32_t alignment_;
    uint64_t n_kv_ = 0;
    std::vector<uint8_t> kv_;  // serialized key/value entries
    std::vector<Tensor> tensors_;
};

}  // namespace kiln
