#include "kiln/format/gguf_writer.h"

#include <cstdio>
#include <cstring>

namespace kiln {

namespace {
template <class T>
void put(std::vector<uint8_t>& out, T v) {
    size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &v, sizeof(T));
}
void put_str(std::vector<uint8_t>& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    size_t at = out.size();
    out.resize(at + s.size());
    if (!s.empty()) std::memcpy(out.data() + at, s.data(), s.size());
}
// GGUF value type ids.
enum : uint32_t { T_U16 = 2, T_U32 = 4, T_I32 = 5, T_F32 = 6, T_BOOL = 7, T_STR = 8, T_ARR = 9, T_U64 = 10 };
}  // namespace

void GgufWriter::begin_kv(const std::string& key, uint32_t type) {
    ++n_kv_;
    put_str(kv_, key);
    put<uint32_t>(kv_, type);
}

void GgufWriter::set_u16(const std::string& key, uint16_t v) { begin_kv(key, T_U16); put(kv_, v); }
void GgufWriter::set_u32(const std::string& key, uint32_t v) { begin_kv(key, T_U32); put(kv_, v); }
void GgufWriter::set_i32(const std::string& key, int32_t v) { begin_kv(key, T_I32); put(kv_, v); }
void GgufWriter::set_u64(const std::string& key, uint64_t v) { begin_kv(key, T_U64); put(kv_, v); }
void GgufWriter::set_f32(const std::string& key, float v) { begin_kv(key, T_F32); put(kv_, v); }
void GgufWriter::set_bool(const std::string& key, bool v) { begin_kv(key, T_BOOL); put<uint8_t>(kv_, v ? 1 : 0); }
void GgufWriter::set_str(const std::string& key, const std::string& v) { begin_kv(key, T_STR); put_str(kv_, v); }

void GgufWriter::set_arr_str(const std::string& key, const std::vector<std::string>& v) {
    begin_kv(key, T_ARR);
    put<uint32_t>(kv_, T_STR);
    put<uint64_t>(kv_, v.size());
    for (const auto& s : v) put_str(kv_, s);
}
void GgufWriter::set_arr_f32(const std::string& key, const std::vector<float>& v) {
    begin_kv(key, T_ARR);
    put<uint32_t>(kv_, T_F32);
    put<uint64_t>(kv_, v.size());
    for (float x : v) put(kv_, x);
}
void GgufWriter::set_arr_i32(const std::string& key, const std::vector<int32_t>& v) {
    begin_kv(key, T_ARR);
    put<uint32_t>(kv_, T_I32);
    put<uint64_t>(kv_, v.size());
    for (int32_t x : v) put(kv_, x);
}

void GgufWriter::put_value(const GgufValue& v) {
    switch (v.type) {
        case GgufType::U8: case GgufType::BOOL: put<uint8_t>(kv_, uint8_t(v.u)); break;
        case GgufType::I8: put<int8_t>(kv_, int8_t(v.i)); break;
        case GgufType::U16: put<uint16_t>(kv_, uint16_t(v.u)); break;
        case GgufType::I16: put<int16_t>(kv_, int16_t(v.i)); break;
        case GgufType::U32: put<uint32_t>(kv_, uint32_t(v.u)); break;
        case GgufType::I32: put<int32_t>(kv_, int32_t(v.i)); break;
        case GgufType::U64: put<uint64_t>(kv_, v.u); break;
        case GgufType::I64: put<int64_t>(kv_, v.i); break;
        case GgufType::F32: put<float>(kv_, float(v.f)); break;
        case GgufType::F64: put<double>(kv_, v.f); break;
        case GgufType::STRING: put_str(kv_, std::string(v.str)); break;
        case GgufType::ARRAY:
            put<uint32_t>(kv_, uint32_t(v.arr_type));
            put<uint64_t>(kv_, v.arr_len);
            if (v.arr_type == GgufType::STRING) {
                for (std::string_view s : v.arr_strings) put_str(kv_, std::string(s));
            } else if (v.arr_type == GgufType::ARRAY) {
                for (const GgufValue& e : v.arr_nested) put_value(e);  // each is (type, count, elements)
            } else if (v.arr_data && v.arr_len) {
                const size_t elem = v.arr_type == GgufType::U8 || v.arr_type == GgufType::I8 || v.arr_type == GgufType::BOOL ? 1
                                    : v.arr_type == GgufType::U16 || v.arr_type == GgufType::I16                         ? 2
                                    : v.arr_type == GgufType::U32 || v.arr_type == GgufType::I32 || v.arr_type == GgufType::F32 ? 4
                                                                                                                            : 8;
                const size_t at = kv_.size();
                kv_.resize(at + elem * v.arr_len);
                std::memcpy(kv_.data() + at, v.arr_data, elem * v.arr_len);
            }
            break;
    }
}

void GgufWriter::set_value(const std::string& key, const GgufValue& v) {
    begin_kv(key, uint32_t(v.type));
    put_value(v);
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& ne, const void* data, size_t nbytes) {
    Tensor t{name, dtype, ne, {}};
    t.bytes.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + nbytes);
    tensors_.push_back(std::move(t));
}

void GgufWriter::add_metadata(const GgufFile& f) {
    for (const auto& [key, value] : f.metadata())
        if (key != "general.alignment" && key != "split.no" && key != "split.count" && key != "split.tensors.count") set_value(key, value);
}

void GgufWriter::add_file(const GgufFile& f) {
    add_metadata(f);
    for (const GgufTensor& t : f.tensors()) add_tensor(t.name, t.dtype, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data, t.nbytes);
}

// Header, metadata and tensor infos, padded to the alignment: the data section follows.
std::vector<uint8_t> GgufWriter::header_bytes() const {
    std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
    put<uint32_t>(out, 3);
    put<uint64_t>(out, tensors_.size());
    put<uint64_t>(out, n_kv_ + (alignment_ != 32 ? 1 : 0));
    out.insert(out.end(), kv_.begin(), kv_.end());
    if (alignment_ != 32) {
        put_str(out, "general.alignment");
        put<uint32_t>(out, T_U32);
        put<uint32_t>(out, alignment_);
    }
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
        put_str(out, t.name);
        put<uint32_t>(out, uint32_t(t.ne.size()));
        for (int64_t n : t.ne) put<uint64_t>(out, uint64_t(n));
        put<uint32_t>(out, uint32_t(t.dtype));
        put<uint64_t>(out, offset);
        offset = pad(offset + t.bytes.size());
    }
    out.resize(pad(out.size()), 0);
    return out;
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
    std::vector<uint8_t> out = header_bytes();
    for (const Tensor& t : tensors_) {
        out.insert(out.end(), t.bytes.begin(), t.bytes.end());
        out.resize(pad(out.size()), 0);
    }
    return out;
}

// Streams the tensors instead of building the image: multi-GB benchmark models would
// otherwise need twice their size in memory.
Status GgufWriter::write(const std::string& path) const {
    const std::vector<uint8_t> head = header_bytes();
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return Status::error("%s: cannot open for writing", path.c_str());
    bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size();
    const std::vector<uint8_t> zeros(alignment_, 0);
    for (const Tensor& t : tensors_) {
        ok = ok && std::fwrite(t.bytes.data(), 1, t.bytes.size(), f) == t.bytes.size();
        const size_t padding = pad(t.bytes.size()) - t.bytes.size();
        ok = ok && std::fwrite(zeros.data(), 1, padding, f) == padding;
    }
    const int rc = std::fclose(f);
    if (!ok || rc != 0) return Status::error("%s: write failed", path.c_str());
    return Status::ok();
}

}  // namespace kiln
