// safetensors reader (Hugging Face checkpoints): an 8-byte little-endian header length, a
// JSON header naming each tensor's dtype, shape and byte range, then the tensor bytes.
// Memory-maps the file and checks every size and offset before anything uses it: the
// header must fit the file, each range must lie inside the data, match its shape and
// dtype, and no two tensors may overlap. Sharded checkpoints are read through their
// model.safetensors.index.json.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/format/gguf.h"  // MappedFile
#include "kiln/status.h"

namespace kiln {

struct SafetensorsTensor {
    std::string name;
    std::string dtype;              // as written: "F32", "F16", "BF16", "I8", "U8", ...
    std::vector<int64_t> shape;     // row-major, outermost first (PyTorch order)
    const uint8_t* data = nullptr;  // inside the mapping
    uint64_t nbytes = 0;
    int64_t n_elements() const;
};

// Bytes per element of a safetensors dtype name; 0 if kiln does not know it.
size_t safetensors_dtype_size(std::string_view dtype);

class SafetensorsFile {
public:
    static Expected<SafetensorsFile> open(const std::string& path, bool use_mmap = true);
    // Parses an in-memory image (the fuzzer's entry point); `bytes` must outlive the result.
    static Expected<SafetensorsFile> parse(const uint8_t* bytes, uint64_t size, const std::string& name = "<memory>");

    const std::string& path() const { return name_; }
    const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
    const SafetensorsTensor* find_tensor(std::string_view name) const;
    // The header's optional "__metadata__" (string to string).
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

private:
    std::shared_ptr<MappedFile> file_;
    std::string name_;
    std::vector<SafetensorsTensor> tensors_;
    std::map<std::string, size_t, std::less<>> index_;
    std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: model.safetensors, or the shards model.safetensors.index.json
// names (its "weight_map": tensor name -> shard file). Each tensor must be in the shard
// the index says, and shard names may not leave the directory.
class SafetensorsCheckpoint {
public:
    static Expected<SafetensorsCheckpoint> open(const std::string& dir, bool use_mmap = true);
    const SafetensorsTensor* find_tensor(std::string_view name) const;
    const std::vector<SafetensorsFile>& shards() const { return shards_; }
    size_t n_tensors() const { return where_.size(); }

private:
    std::vector<SafetensorsFile> shards_;
    std::map<std::string, const SafetensorsTensor*, std::less<>> where_;
};

}  // namespace kiln
