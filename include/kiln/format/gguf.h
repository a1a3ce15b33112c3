// GGUF v2/v3 reader: memory-maps the file, validates every count, offset and size before
// anything uses it, and exposes metadata and tensors without copying tensor data.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/status.h"

namespace kiln {

enum class GgufType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars are widened into u/i/f; strings and arrays point into the
// mapped file (valid while the GgufFile lives).
struct GgufValue {
    GgufType type = GgufType::U8;
    uint64_t u = 0;       // unsigned integers and bool
    int64_t i = 0;        // signed integers
    double f = 0;         // floats
    std::string_view str; // STRING
    // ARRAY: element type and count; numeric elements are raw little-endian bytes at
    // arr_data; string elements are in arr_strings; nested arrays in arr_nested.
    GgufType arr_type = GgufType::U8;
    uint64_t arr_len = 0;
    const uint8_t* arr_data = nullptr;
    std::vector<std::string_view> arr_strings;
    std::vector<GgufValue> arr_nested;

    bool is_integer() const;
    bool is_float() const { return type == GgufType::F32 || type == GgufType::F64; }
    // Numeric value as int64 / double (integers, floats and bool).
    int64_t as_int() const;
    double as_double() const;
    // Element k of a numeric array widened to int64 / double.
    int64_t arr_int(uint64_t k) const;
    double arr_double(uint64_t k) const;
    // Human-readable rendering, arrays abbreviated after max_items elements.
    std::string to_string(size_t max_items = 8) const;
};

struct GgufTensor {
    std::string name;
    DType dtype = DType::F32;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] is the contiguous (row) dimension
    uint64_t offset = 0;            // relative to the start of the data section
    uint64_t nbytes = 0;
    const uint8_t* data = nullptr;  // inside the mapping
    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    std::string shape_string() const;
};

// A whole file in memory: mapped read-only (use_mmap, zero copy) or read into anonymous
// memory on transparent huge pages (fewer TLB misses when weights are streamed).
class MappedFile {
public:
    static Expected<std::shared_ptr<MappedFile>> open(const std::string& path, bool use_mmap = true);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // Drops this process's pages of the whole pages inside [p, p + n) when the file is
    // mapped: the bytes stay readable (faulted back from the page cache if touched again)
    // but stop counting against the process. Why: after --repack the original rows are
    // not read, and keeping them mapped doubles the resident size. Returns the bytes
    // released: 0 for a file read in without mmap (its pages are the only copy) or a
    // range outside the mapping.
    size_t release(const void* p, size_t n) const;

private:
    MappedFile() = default;
    bool file_backed_ = false;  // mmap of the file (not anonymous memory read from it)
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    size_t mapped_len_ = 0;
    std::string path_;
};

class GgufFile {
public:
    // Maps (or, without use_mmap, reads) and validates a GGUF file. Errors name the file
    // and what is wrong.
    static Expected<GgufFile> open(const std::string& path, bool use_mmap = true);
    // Parses an in-memory image (the fuzzer's entry point); `bytes` must outlive the result.
    static Expected<GgufFile> parse(const uint8_t* bytes, uint64_t size, const std::string& name = "<memory>");

    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }
    uint64_t file_size() const { return size_; }
    const std::string& path() const { return name_; }

    const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
    const GgufValue* find(std::string_view key) const;
    const std::vector<GgufTensor>& tensors() const { return tensors_; }
    const GgufTensor* find_tensor(std::string_view name) const;

    // Typed getters: a missing key returns `fallback`; a key of the wrong type is an error.
    Expected<std::string> get_string(std::string_view key, std::string fallback = "") const;
    Expected<int64_t> get_int(std::string_view key, int64_t fallback) const;
    Expected<double> get_float(std::string_view key, double fallback) const;
    Expected<bool> get_bool(std::string_view key, bool fallback) const;
    bool has(std::string_view key) const { return find(key) != nullptr; }

    // Overrides (or adds) a scalar metadata value, e.g. from --override-kv.
    void set_override(const std::string& key, GgufValue value);

    // A file assembled in memory (a Hugging Face checkpoint read as GGUF): `image` is a
    // GGUF image holding the metadata (a GgufWriter's to_bytes() without tensors), which
    // the file keeps; tensors are then added with add_tensor.
    static Expected<GgufFile> from_image(std::vector<uint8_t> image, const std::string& name);
    // Adds a tensor whose bytes live elsewhere; `owner` keeps them alive as long as the
    // file (nullptr when they live in something the file already holds).
    Status add_tensor(GgufTensor t, std::shared_ptr<const void> owner);
    // Points tensor `name` at new bytes of another type with the same shape (in-place
    // quantization); `owner` keeps them alive.
    Status replace_tensor(std::string_view name, DType dtype, const uint8_t* data, uint64_t nbytes, std::shared_ptr<const void> owner);
    // MappedFile::release on the file's own mapping (0 for anything else).
    size_t release(const void* p, size_t n) const { return file_ ? file_->release(p, n) : 0; }
    // Keeps `owner` alive as long as the file (e.g. the safetensors mappings tensors point into).
    void keep_alive(std::shared_ptr<const void> owner) { owned_.push_back(std::move(owner)); }

private:
    std::shared_ptr<MappedFile> file_;  // keeps the mapping alive for views into it
    std::vector<std::shared_ptr<const void>> owned_;  // other storage metadata or tensors point into
    std::string name_;
    uint64_t size_ = 0;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::map<std::string, size_t, std::less<>> kv_index_;
    std::vector<GgufTensor> tensors_;
    std::map<std::string, size_t, std::less<>> tensor_index_;
    friend class GgufParser;
};

// True if s is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Parses one --override-kv spec ("llama.expert_used_count=int:4", "gemma3.rope.scaling.type=str:linear")
// into key and value; a str value is a view of `spec` (GgufFile::set_override keeps a copy).
Expected<std::pair<std::string, GgufValue>> parse_override_kv(const std::string& spec);

}  // namespace kiln
