// safetensors reader: see include/kiln/format/safetensors.h. Every error names the file and, where
// there is one, the tensor.
#include "kiln/format/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace kiln {

namespace {

using json = nlohmann::json;

// The format's own bound (the reference implementation refuses larger headers): a header
// is a table of contents, never near this.
constexpr uint64_t kMaxHeader = 100ull << 20;
constexpr int kMaxDims = 8;

// A JSON document, or an error naming what failed to parse (no exceptions).
Expected<json> parse_json(std::string_view text, const std::string& what) {
    json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Status::error("%s: not valid JSON", what.c_str());
    return j;
}

// One tensor entry {"dtype", "shape", "data_offsets"} checked against the data size.
Expected<SafetensorsTensor> read_entry(const std::string& file, const std::string& name, const json& e, const uint8_t* data, uint64_t data_size) {
    const char* f = file.c_str();
    const char* n = name.c_str();
    if (!e.is_object()) return Status::error("%s: tensor '%s': entry is not an object", f, n);
    SafetensorsTensor t;
    t.name = name;
    const auto dt = e.find("dtype"), sh = e.find("shape"), off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) return Status::error("%s: tensor '%s': missing or non-string \"dtype\"", f, n);
    t.dtype = dt->get<std::string>();
    const size_t esize = safetensors_dtype_size(t.dtype);
    if (esize == 0) return Status::error("%s: tensor '%s': unknown dtype '%s'", f, n, t.dtype.c_str());
    if (sh == e.end() || !sh->is_array() || sh->size() > kMaxDims) return Status::error("%s: tensor '%s': \"shape\" is not an array of at most %d sizes", f, n, kMaxDims);
    uint64_t count = 1;
    for (const json& d : *sh) {
        if (!d.is_number_unsigned()) return Status::error("%s: tensor '%s': a shape entry is not a non-negative integer", f, n);
        const uint64_t v = d.get<uint64_t>();
        if (v > (uint64_t(1) << 40) || (v && count > (uint64_t(1) << 60) / v)) return Status::error("%s: tensor '%s': shape too large", f, n);
        count *= v;
        t.shape.push_back(int64_t(v));
    }
    if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
        return Status::error("%s: tensor '%s': \"data_offsets\" is not [begin, end]", f, n);
    const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
    if (begin > end || end > data_size)
        return Status::error("%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes", f, n, (unsigned long long)begin,
                             (unsigned long long)end, (unsigned long long)data_size);
    if (end - begin != count * esize)
        return Status::error("%s: tensor '%s': %llu bytes for %llu elements of %s", f, n, (unsigned long long)(end - begin), (unsigned long long)count,
                             t.dtype.c_str());
    t.data = data + begin;
    t.nbytes = end - begin;
    return t;
}

}  // namespace

int64_t SafetensorsTensor::n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

size_t safetensors_dtype_size(std::string_view dtype) {
    static const std::map<std::string_view, size_t> sizes = {{"F64", 8}, {"I64", 8}, {"U64", 8}, {"F32", 4}, {"I32", 4}, {"U32", 4},
                                                             {"F16", 2}, {"BF16", 2}, {"I16", 2}, {"U16", 2}, {"I8", 1}, {"U8", 1},
                                                             {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    const auto it = sizes.find(dtype);
    return it == sizes.end() ? 0 : it->second;
}

Expected<SafetensorsFile> SafetensorsFile::open(const std::string& path, bool use_mmap) {
    auto m = MappedFile::open(path, use_mmap);
    if (!m) return m.status();
    auto f = parse(m.value()->data(), m.value()->size(), path);
    if (f) f.value().file_ = m.value();
    return f;
}

Expected<SafetensorsFile> SafetensorsFile::parse(const uint8_t* bytes, uint64_t size, const std::string& name) {
    const char* f = name.c_str();
    if (size < 8) return Status::error("%s: %llu bytes, too short for a safetensors header length", f, (unsigned long long)size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | bytes[i];  // little-endian
    if (n < 2 || n > kMaxHeader) return Status::error("%s: header length %llu is not between 2 and %llu", f, (unsigned long long)n, (unsigned long long)kMaxHeader);
    if (n > size - 8) return Status::error("%s: header length %llu runs past the end of the file (%llu bytes)", f, (unsigned long long)n, (unsigned long long)size);
    const std::string_view text(reinterpret_cast<const char*>(bytes + 8), size_t(n));
    if (!is_valid_utf8(text)) return Status::error("%s: header is not valid UTF-8", f);
    auto header = parse_json(text, name + ": header");
    if (!header) return header.status();
    const json& h = header.value();
    if (!h.is_object()) return Status::error("%s: header is not a JSON object", f);

    SafetensorsFile out;
    out.name_ = name;
    const uint8_t* data = bytes + 8 + n;
    const uint64_t data_size = size - 8 - n;
    for (const auto& [key, value] : h.items()) {
        if (key == "__metadata__") {
            if (!value.is_object()) return Status::error("%s: \"__metadata__\" is not an object", f);
            for (const auto& [mk, mv] : value.items()) {
                if (!mv.is_string()) return Status::error("%s: \"__metadata__\" value '%s' is not a string", f, mk.c_str());
                out.metadata_[mk] = mv.get<std::string>();
            }
            continue;
        }
        auto t = read_entry(name, key, value, data, data_size);
        if (!t) return t.status();
        out.index_[key] = out.tensors_.size();
        out.tensors_.push_back(std::move(t.value()));
    }
    // No two tensors may share bytes (a crafted header could alias one tensor's bytes as
    // another's); empty tensors take none.
    std::vector<const SafetensorsTensor*> by_start;
    for (const SafetensorsTensor& t : out.tensors_)
        if (t.nbytes) by_start.push_back(&t);
    std::sort(by_start.begin(), by_start.end(), [](auto* a, auto* b) { return a->data < b->data; });
    for (size_t i = 1; i < by_start.size(); ++i)
        if (by_start[i - 1]->data + by_start[i - 1]->nbytes > by_start[i]->data)
            return Status::error("%s: tensors '%s' and '%s' overlap", f, by_start[i - 1]->name.c_str(), by_start[i]->name.c_str());
    return out;
}

const SafetensorsTensor* SafetensorsFile::find_tensor(std::string_view name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

Expected<SafetensorsCheckpoint> SafetensorsCheckpoint::open(const std::string& dir, bool use_mmap) {
    namespace fs = std::filesystem;
    SafetensorsCheckpoint c;
    const fs::path single = fs::path(dir) / "model.safetensors", index = fs::path(dir) / "model.safetensors.index.json";
    std::map<std::string, std::string> weight_map;  // tensor -> shard file name
    std::vector<std::string> files;
    if (fs::exists(index)) {
        std::ifstream in(index);
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        auto j = parse_json(text, index.string());
        if (!j) return j.status();
        const auto wm = j.value().is_object() ? j.value().find("weight_map") : j.value().end();
        if (wm == j.value().end() || !wm->is_object()) return Status::error("%s: no \"weight_map\" object", index.c_str());
        for (const auto& [tensor, file] : wm->items()) {
            if (!file.is_string()) return Status::error("%s: weight_map entry '%s' is not a file name", index.c_str(), tensor.c_str());
            const std::string shard = file.get<std::string>();
            if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
                return Status::error("%s: shard name '%s' is not a file in the checkpoint directory", index.c_str(), shard.c_str());
            weight_map[tensor] = shard;
            if (std::find(files.begin(), files.end(), shard) == files.end()) files.push_back(shard);
        }
    } else if (fs::exists(single)) {
        files.push_back("model.safetensors");
    } else {
        return Status::error("%s: neither model.safetensors nor model.safetensors.index.json", dir.c_str());
    }
    for (const std::string& file : files) {
        auto s = SafetensorsFile::open((fs::path(dir) / file).string(), use_mmap);
        if (!s) return s.status();
        c.shards_.push_back(std::move(s.value()));
    }
    for (size_t i = 0; i < c.shards_.size(); ++i)
        for (const SafetensorsTensor& t : c.shards_[i].tensors()) {
            if (!weight_map.empty()) {
                const auto it = weight_map.find(t.name);
                if (it == weight_map.end() || it->second != files[i]) continue;  // the index decides which shard holds it
            }
            if (!c.where_.emplace(t.name, &t).second) return Status::error("%s: tensor '%s' appears twice", dir.c_str(), t.name.c_str());
        }
    for (const auto& [tensor, file] : weight_map)
        if (!c.where_.count(tensor)) return Status::error("%s: tensor '%s' is not in %s as the index says", dir.c_str(), tensor.c_str(), file.c_str());
    return c;
}

const SafetensorsTensor* SafetensorsCheckpoint::find_tensor(std::string_view name) const {
    const auto it = where_.find(name);
    return it == where_.end() ? nullptr : it->second;
}

}  // namespace kiln
