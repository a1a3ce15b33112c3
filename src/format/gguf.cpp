// GGUF parser. Every read is bounds-checked against the file; every count and size is
// checked before it is used to allocate or index (see the ggml CVE list in
// ../shared/reference/ecosystem.md for what a crafted file tries).
#include "kiln/format/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cinttypes>
#include <cstring>

namespace kiln {

namespace {

constexpr uint32_t kMaxDims = 4;
constexpr uint64_t kMaxArrayDepth = 8;  // nested arrays deeper than this are refused

const char* const kTypeNames[] = {"u8",  "i8",  "u16",    "i16",   "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};

uint64_t scalar_size(GgufType t) {
    switch (t) {
        case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
        case GgufType::U16: case GgufType::I16: return 2;
        case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
        case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
        default: return 0;
    }
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

const char* gguf_type_name(GgufType t) {
    uint32_t i = uint32_t(t);
    return i < 13 ? kTypeNames[i] : "?";
}

bool is_valid_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    size_t n = s.size(), i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) { ++i; continue; }
        int len;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n) return false;
        for (int k = 1; k < len; ++k) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

// ---- GgufValue -----------------------------------------------------------------------

bool GgufValue::is_integer() const {
    switch (type) {
        case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
        case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
        default: return false;
    }
}

int64_t GgufValue::as_int() const {
    switch (type) {
        case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: return i;
        case GgufType::F32: case GgufType::F64: return int64_t(f);
        default: return int64_t(u);
    }
}

double GgufValue::as_double() const {
    if (is_float()) return f;
    switch (type) {
        case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: return double(i);
        default: return double(u);
    }
}

namespace {
// Reads element k of a numeric array (bounds already validated at parse time).
template <class T>
T load_le(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
double arr_elem(const GgufValue& v, uint64_t k, bool* is_int, int64_t* iv) {
    const uint8_t* p = v.arr_data + k * scalar_size(v.arr_type);
    *is_int = true;
    switch (v.arr_type) {
        case GgufType::U8: case GgufType::BOOL: *iv = p[0]; break;
        case GgufType::I8: *iv = int8_t(p[0]); break;
        case GgufType::U16: *iv = load_le<uint16_t>(p); break;
        case GgufType::I16: *iv = load_le<int16_t>(p); break;
        case GgufType::U32: *iv = load_le<uint32_t>(p); break;
        case GgufType::I32: *iv = load_le<int32_t>(p); break;
        case GgufType::U64: *iv = int64_t(load_le<uint64_t>(p)); break;
        case GgufType::I64: *iv = load_le<int64_t>(p); break;
        case GgufType::F32: *is_int = false; return load_le<float>(p);
        case GgufType::F64: *is_int = false; return load_le<double>(p);
        default: *iv = 0; break;
    }
    return double(*iv);
}
}  // namespace

int64_t GgufValue::arr_int(uint64_t k) const {
    KILN_ASSERT(type == GgufType::ARRAY && k < arr_len && arr_data, "arr_int out of range");
    bool is_int;
    int64_t iv;
    double d = arr_elem(*this, k, &is_int, &iv);
    return is_int ? iv : int64_t(d);
}

double GgufValue::arr_double(uint64_t k) const {
    KILN_ASSERT(type == GgufType::ARRAY && k < arr_len && arr_data, "arr_double out of range");
    bool is_int;
    int64_t iv;
    return arr_elem(*this, k, &is_int, &iv);
}

std::string GgufValue::to_string(size_t max_items) const {
    switch (type) {
        case GgufType::STRING: {
            std::string s(str.substr(0, 200));
            for (char& c : s) if (c == '\n') c = ' ';
            return "\"" + s + (str.size() > 200 ? "...\"" : "\"");
        }
        case GgufType::BOOL: return u ? "true" : "false";
        case GgufType::F32: case GgufType::F64: return strfmt("%g", f);
        case GgufType::ARRAY: {
            std::string s = strfmt("[%s x %" PRIu64 "]", gguf_type_name(arr_type), arr_len);
            s += " [";
            for (uint64_t k = 0; k < arr_len && k < max_items; ++k) {
                if (k) s += ", ";
                if (arr_type == GgufType::STRING) s += "\"" + std::string(arr_strings[k].substr(0, 40)) + "\"";
                else if (arr_type == GgufType::ARRAY) s += arr_nested[k].to_string(max_items);
                else if (arr_type == GgufType::F32 || arr_type == GgufType::F64) s += strfmt("%g", arr_double(k));
                else s += strfmt("%" PRId64, arr_int(k));
            }
            if (arr_len > max_items) s += ", ...";
            return s + "]";
        }
        default: return is_integer() && (type == GgufType::I8 || type == GgufType::I16 || type == GgufType::I32 || type == GgufType::I64)
                            ? strfmt("%" PRId64, i) : strfmt("%" PRIu64, u);
    }
}

std::string GgufTensor::shape_string() const {
    std::string s = "[";
    for (int d = 0; d < n_dims; ++d) s += strfmt(d ? ", %" PRId64 : "%" PRId64, ne[d]);
    return s + "]";
}

// ---- MappedFile ----------------------------------------------------------------------

Expected<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path, bool use_mmap) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::error("%s: cannot open: %s", path.c_str(), std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return Status::error("%s: not a regular file", path.c_str());
    }
    std::shared_ptr<MappedFile> m(new MappedFile());
    m->path_ = path;
    m->size_ = uint64_t(st.st_size);
    if (m->size_ > 0 && !use_mmap) {
        // Anonymous memory on transparent huge pages, filled from the file: page-cache
        // mappings use 4 KiB pages, and streaming weights through them costs TLB misses.
        const size_t len = (m->size_ + (2u << 20) - 1) / (2u << 20) * (2u << 20);
        void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            ::close(fd);
            return Status::error("%s: cannot allocate %zu bytes to load it: %s", path.c_str(), len, std::strerror(errno));
        }
        madvise(p, len, MADV_HUGEPAGE);
        m->data_ = static_cast<const uint8_t*>(p);
        m->mapped_len_ = len;
        for (uint64_t done = 0; done < m->size_;) {
            const ssize_t n = ::pread(fd, static_cast<uint8_t*>(p) + done, m->size_ - done, off_t(done));
            if (n <= 0) {
                ::close(fd);
                return Status::error("%s: read failed at offset %llu: %s", path.c_str(), (unsigned long long)done, n < 0 ? std::strerror(errno) : "unexpected end of file");
            }
            done += uint64_t(n);
        }
    } else if (m->size_ > 0) {
        void* p = mmap(nullptr, m->size_, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            ::close(fd);
            return Status::error("%s: mmap failed: %s", path.c_str(), std::strerror(errno));
        }
        m->data_ = static_cast<const uint8_t*>(p);
        m->mapped_len_ = m->size_;
        m->file_backed_ = true;
    }
    ::close(fd);
    return m;
}

size_t MappedFile::release(const void* p, size_t n) const {
    const auto b = reinterpret_cast<uintptr_t>(p), map = reinterpret_cast<uintptr_t>(data_);
    if (!file_backed_ || b < map || n > mapped_len_ || b - map > mapped_len_ - n) return 0;
    const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    const uintptr_t first = (b + page - 1) / page * page, last = (b + n) / page * page;  // whole pages only
    if (last <= first || madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) != 0) return 0;
    return last - first;
}

MappedFile::~MappedFile() {
    if (data_) munmap(const_cast<uint8_t*>(data_), mapped_len_);
}

// ---- parser --------------------------------------------------------------------------

class GgufParser {
public:
    GgufParser(const uint8_t* p, uint64_t n) : p_(p), n_(n) {}

    Status parse(GgufFile& f) {
        if (n_ < 4) return Status::error("file is %" PRIu64 " bytes, too short for a GGUF header", n_);
        if (std::memcmp(p_, "GGUF", 4) != 0) {
            return Status::error("not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")", p_[0], p_[1], p_[2], p_[3]);
        }
        pos_ = 4;
        uint32_t version = 0;
        KILN_TRY(read_u32(&version, "header version"));
        if (version == 1) return Status::error("GGUF version 1 is not supported (only 2 and 3)");
        if (version != 2 && version != 3) {
            if ((version & 0xffff) == 0 && (version >> 16) != 0) return Status::error("big-endian GGUF (version 0x%08x) is not supported", version);
            return Status::error("unsupported GGUF version %u (only 2 and 3)", version);
        }
        f.version_ = version;
        uint64_t n_tensors = 0, n_kv = 0;
        KILN_TRY(read_u64(&n_tensors, "tensor count"));
        KILN_TRY(read_u64(&n_kv, "metadata count"));
        // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor
        // info at least 8 + 4 + 8 + 4 + 8: counts beyond what the file can hold are lies.
        if (n_kv > remaining() / 13) return Status::error("metadata count %" PRIu64 " cannot fit in the file (%" PRIu64 " bytes)", n_kv, n_);
        if (n_tensors > remaining() / 32) return Status::error("tensor count %" PRIu64 " cannot fit in the file (%" PRIu64 " bytes)", n_tensors, n_);

        f.kv_.reserve(n_kv);
        for (uint64_t k = 0; k < n_kv; ++k) {
            std::string_view key;
            KILN_TRY(read_string(&key, strfmt("key of metadata entry %" PRIu64, k)));
            std::string key_s(key);
            if (key.empty() || !is_valid_utf8(key)) return Status::error("metadata entry %" PRIu64 ": key is empty or not valid UTF-8", k);
            if (f.kv_index_.count(key_s)) return Status::error("metadata key '%s' appears twice", key_s.c_str());
            uint32_t type = 0;
            KILN_TRY(read_u32(&type, "type of metadata '" + key_s + "'"));
            GgufValue v;
            KILN_TRY(read_value(GgufType(type), &v, key_s, 0).with_context("metadata '" + key_s + "'"));
            f.kv_index_[key_s] = f.kv_.size();
            f.kv_.emplace_back(std::move(key_s), std::move(v));
        }

        if (const GgufValue* a = f.find("general.alignment")) {
            if (!a->is_integer()) return Status::error("general.alignment has type %s, expected an integer", gguf_type_name(a->type));
            int64_t al = a->as_int();
            if (al <= 0 || al > (1 << 30) || (al & (al - 1)) != 0) return Status::error("general.alignment %" PRId64 " is not a power of two in [1, 2^30]", al);
            f.alignment_ = uint64_t(al);
        }

        f.tensors_.reserve(n_tensors);
        for (uint64_t k = 0; k < n_tensors; ++k) {
            GgufTensor t;
            KILN_TRY(read_tensor_info(&t, k));
            if (f.tensor_index_.count(t.name)) return Status::error("tensor '%s' appears twice", t.name.c_str());
            f.tensor_index_[t.name] = f.tensors_.size();
            f.tensors_.push_back(std::move(t));
        }

        // The data section starts at the next multiple of the alignment.
        uint64_t data_off = (pos_ + f.alignment_ - 1) / f.alignment_ * f.alignment_;
        if (data_off < pos_) return Status::error("data section offset overflows");
        if (n_tensors > 0 && data_off > n_) return Status::error("data section starts at %" PRIu64 ", past end of file (size %" PRIu64 ")", data_off, n_);
        f.data_offset_ = data_off;
        uint64_t data_size = n_ >= data_off ? n_ - data_off : 0;

        for (GgufTensor& t : f.tensors_) {
            if (t.offset % f.alignment_ != 0) return Status::error("tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %" PRIu64, t.name.c_str(), t.offset, f.alignment_);
            if (t.offset > data_size || t.nbytes > data_size - t.offset) {
                return Status::error("tensor '%s': data [offset %" PRIu64 ", size %" PRIu64 "] ends past end of file (data section size %" PRIu64 ")",
                                     t.name.c_str(), data_off + t.offset, t.nbytes, data_size);
            }
            t.data = p_ + data_off + t.offset;
        }
        // Tensors must not overlap: sort by offset and compare neighbours.
        std::vector<const GgufTensor*> by_off;
        for (const GgufTensor& t : f.tensors_) by_off.push_back(&t);
        std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
        for (size_t k = 1; k < by_off.size(); ++k) {
            const GgufTensor *a = by_off[k - 1], *b = by_off[k];
            if (a->offset + a->nbytes > b->offset) return Status::error("tensors '%s' and '%s' overlap in the data section", a->name.c_str(), b->name.c_str());
        }
        return Status::ok();
    }

private:
    uint64_t remaining() const { return n_ - pos_; }

    Status need(uint64_t bytes, const std::string& what) {
        if (bytes > remaining()) {
            return Status::error("truncated: %s needs %" PRIu64 " bytes at offset %" PRIu64 " but the file ends at %" PRIu64, what.c_str(), bytes, pos_, n_);
        }
        return Status::ok();
    }
    Status read_u32(uint32_t* v, const std::string& what) {
        KILN_TRY(need(4, what));
        std::memcpy(v, p_ + pos_, 4);
        pos_ += 4;
        return Status::ok();
    }
    Status read_u64(uint64_t* v, const std::string& what) {
        KILN_TRY(need(8, what));
        std::memcpy(v, p_ + pos_, 8);
        pos_ += 8;
        return Status::ok();
    }
    Status read_string(std::string_view* s, const std::string& what) {
        uint64_t len = 0;
        KILN_TRY(read_u64(&len, "length of " + what));
        if (len > remaining()) return Status::error("%s: string length %" PRIu64 " exceeds the %" PRIu64 " bytes left in the file", what.c_str(), len, remaining());
        *s = std::string_view(reinterpret_cast<const char*>(p_ + pos_), len);
        pos_ += len;
        return Status::ok();
    }

    Status read_value(GgufType type, GgufValue* v, const std::string& key, uint64_t depth) {
        v->type = type;
        if (uint32_t(type) > 12) return Status::error("unknown value type %u", uint32_t(type));
        if (type == GgufType::STRING) {
            KILN_TRY(read_string(&v->str, "string value"));
            if (!is_valid_utf8(v->str)) return Status::error("string value is not valid UTF-8");
            return Status::ok();
        }
        if (type == GgufType::ARRAY) {
            if (depth >= kMaxArrayDepth) return Status::error("arrays nested deeper than %" PRIu64, kMaxArrayDepth);
            uint32_t et = 0;
            KILN_TRY(read_u32(&et, "array element type"));
            if (et > 12) return Status::error("array of unknown element type %u", et);
            v->arr_type = GgufType(et);
            KILN_TRY(read_u64(&v->arr_len, "array length"));
            if (v->arr_type == GgufType::STRING || v->arr_type == GgufType::ARRAY) {
                // Each element needs at least 8 bytes (a length or a type+count).
                if (v->arr_len > remaining() / 8) return Status::error("array length %" PRIu64 " cannot fit in the %" PRIu64 " bytes left", v->arr_len, remaining());
                if (v->arr_type == GgufType::STRING) {
                    v->arr_strings.resize(v->arr_len);
                    // Strings inside arrays (token texts) are kept as raw bytes: some
                    // vocabularies hold partial UTF-8 sequences on purpose.
                    for (uint64_t k = 0; k < v->arr_len; ++k) KILN_TRY(read_string(&v->arr_strings[k], strfmt("array element %" PRIu64, k)));
                } else {
                    v->arr_nested.resize(v->arr_len);
                    for (uint64_t k = 0; k < v->arr_len; ++k) {
                        KILN_TRY(read_value(GgufType::ARRAY, &v->arr_nested[k], key, depth + 1).with_context(strfmt("element %" PRIu64, k)));
                    }
                }
                return Status::ok();
            }
            uint64_t bytes;
            if (mul_overflows(v->arr_len, scalar_size(v->arr_type), &bytes) || bytes > remaining()) {
                return Status::error("array of %" PRIu64 " %s elements exceeds the %" PRIu64 " bytes left in the file", v->arr_len, gguf_type_name(v->arr_type), remaining());
            }
            v->arr_data = p_ + pos_;
            pos_ += bytes;
            return Status::ok();
        }
        uint64_t sz = scalar_size(type);
        KILN_TRY(need(sz, std::string("value of type ") + gguf_type_name(type)));
        const uint8_t* q = p_ + pos_;
        pos_ += sz;
        switch (type) {
            case GgufType::U8: v->u = q[0]; break;
            case GgufType::BOOL:
                if (q[0] > 1) return Status::error("bool value %u is neither 0 nor 1", q[0]);
                v->u = q[0];
                break;
            case GgufType::I8: v->i = int8_t(q[0]); break;
            case GgufType::U16: v->u = load_le<uint16_t>(q); break;
            case GgufType::I16: v->i = load_le<int16_t>(q); break;
            case GgufType::U32: v->u = load_le<uint32_t>(q); break;
            case GgufType::I32: v->i = load_le<int32_t>(q); break;
            case GgufType::U64: v->u = load_le<uint64_t>(q); break;
            case GgufType::I64: v->i = load_le<int64_t>(q); break;
            case GgufType::F32: v->f = load_le<float>(q); break;
            case GgufType::F64: v->f = load_le<double>(q); break;
            default: break;
        }
        if (type == GgufType::I8 || type == GgufType::I16 || type == GgufType::I32 || type == GgufType::I64) v->u = uint64_t(v->i);
        else if (!v->is_float()) v->i = int64_t(v->u);
        return Status::ok();
    }

    Status read_tensor_info(GgufTensor* t, uint64_t k) {
        std::string_view name;
        KILN_TRY(read_string(&name, strfmt("name of tensor %" PRIu64, k)));
        if (name.empty() || name.size() > 1024 || !is_valid_utf8(name)) return Status::error("tensor %" PRIu64 ": name is empty, longer than 1024 bytes or not valid UTF-8", k);
        t->name = std::string(name);
        const std::string ctx = "tensor '" + t->name + "'";
        uint32_t n_dims = 0;
        KILN_TRY(read_u32(&n_dims, ctx + " dimension count"));
        if (n_dims == 0 || n_dims > kMaxDims) return Status::error("%s: %u dimensions (expected 1 to %u)", ctx.c_str(), n_dims, kMaxDims);
        t->n_dims = int(n_dims);
        uint64_t n_elem = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            uint64_t ne = 0;
            KILN_TRY(read_u64(&ne, ctx + " dimension"));
            if (ne == 0 || ne > uint64_t(INT64_MAX)) return Status::error("%s: dimension %u is %" PRIu64 " (must be in [1, 2^63))", ctx.c_str(), d, ne);
            if (mul_overflows(n_elem, ne, &n_elem) || n_elem > uint64_t(INT64_MAX)) return Status::error("%s: element count overflows 63 bits", ctx.c_str());
            t->ne[d] = int64_t(ne);
        }
        uint32_t type = 0;
        KILN_TRY(read_u32(&type, ctx + " type"));
        const DTypeInfo* info = dtype_info(type);
        if (!info) return Status::error("%s: unsupported tensor type %u", ctx.c_str(), type);
        t->dtype = DType(type);
        if (t->ne[0] % info->block_size != 0) {
            return Status::error("%s: row length %" PRId64 " is not a multiple of the %s block size %u", ctx.c_str(), t->ne[0], info->name, info->block_size);
        }
        uint64_t nbytes;
        if (mul_overflows(n_elem / info->block_size, info->type_size, &nbytes)) return Status::error("%s: byte size overflows", ctx.c_str());
        t->nbytes = nbytes;
        KILN_TRY(read_u64(&t->offset, ctx + " offset"));
        return Status::ok();
    }

    const uint8_t* p_;
    uint64_t n_;
    uint64_t pos_ = 0;
};

// ---- GgufFile ------------------------------------------------------------------------

Expected<GgufFile> GgufFile::parse(const uint8_t* bytes, uint64_t size, const std::string& name) {
    GgufFile f;
    f.name_ = name;
    f.size_ = size;
    GgufParser parser(bytes, size);
    Status s = parser.parse(f);
    if (!s) return s.with_context(name);
    return f;
}

Expected<GgufFile> GgufFile::open(const std::string& path, bool use_mmap) {
    auto m = MappedFile::open(path, use_mmap);
    if (!m) return m.status();
    auto f = parse(m.value()->data(), m.value()->size(), path);
    if (!f) return f.status();
    f->file_ = std::move(m.value());
    return f;
}

Expected<GgufFile> GgufFile::from_image(std::vector<uint8_t> image, const std::string& name) {
    // The parsed metadata points into the image: it moves into shared storage first.
    auto bytes = std::make_shared<const std::vector<uint8_t>>(std::move(image));
    auto f = parse(bytes->data(), bytes->size(), name);
    if (!f) return f.status();
    if (!f->tensors_.empty()) return Status::error("%s: an in-memory image must hold metadata only", name.c_str());
    f->owned_.push_back(std::move(bytes));
    return f;
}

namespace {
// True when nbytes are exactly whole rows of `dtype` for the shape ne.
bool holds_shape(DType dtype, const int64_t* ne, uint64_t nbytes) {
    return ne[0] % dtype_info(dtype).block_size == 0 && nbytes == row_bytes(dtype, ne[0]) * uint64_t(ne[1] * ne[2] * ne[3]);
}
}  // namespace

Status GgufFile::add_tensor(GgufTensor t, std::shared_ptr<const void> owner) {
    if (tensor_index_.count(t.name)) return Status::error("%s: duplicate tensor '%s'", name_.c_str(), t.name.c_str());
    if (!holds_shape(t.dtype, t.ne, t.nbytes))
        return Status::error("%s: tensor '%s': %" PRIu64 " bytes do not hold shape %s of %s", name_.c_str(), t.name.c_str(), t.nbytes, t.shape_string().c_str(), dtype_name(t.dtype));
    if (owner) owned_.push_back(std::move(owner));
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
    return Status::ok();
}

Status GgufFile::replace_tensor(std::string_view name, DType dtype, const uint8_t* data, uint64_t nbytes, std::shared_ptr<const void> owner) {
    auto it = tensor_index_.find(name);
    if (it == tensor_index_.end()) return Status::error("%s: no tensor '%.*s' to replace", name_.c_str(), int(name.size()), name.data());
    GgufTensor& t = tensors_[it->second];
    if (!holds_shape(dtype, t.ne, nbytes))
        return Status::error("%s: tensor '%s': %" PRIu64 " bytes of %s do not hold shape %s", name_.c_str(), t.name.c_str(), nbytes, dtype_name(dtype), t.shape_string().c_str());
    t.dtype = dtype;
    t.data = data;
    t.nbytes = nbytes;
    if (owner) owned_.push_back(std::move(owner));
    return Status::ok();
}

const GgufValue* GgufFile::find(std::string_view key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Expected<std::string> GgufFile::get_string(std::string_view key, std::string fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (v->type != GgufType::STRING) return Status::error("%s: metadata '%.*s' has type %s, expected string", name_.c_str(), int(key.size()), key.data(), gguf_type_name(v->type));
    return std::string(v->str);
}

Expected<int64_t> GgufFile::get_int(std::string_view key, int64_t fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (!v->is_integer()) return Status::error("%s: metadata '%.*s' has type %s, expected an integer", name_.c_str(), int(key.size()), key.data(), gguf_type_name(v->type));
    if (v->type == GgufType::U64 && v->u > uint64_t(INT64_MAX)) return Status::error("%s: metadata '%.*s' is out of range", name_.c_str(), int(key.size()), key.data());
    return v->as_int();
}

Expected<double> GgufFile::get_float(std::string_view key, double fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (!v->is_float() && !v->is_integer()) return Status::error("%s: metadata '%.*s' has type %s, expected a number", name_.c_str(), int(key.size()), key.data(), gguf_type_name(v->type));
    return v->as_double();
}

Expected<bool> GgufFile::get_bool(std::string_view key, bool fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (v->type != GgufType::BOOL) return Status::error("%s: metadata '%.*s' has type %s, expected bool", name_.c_str(), int(key.size()), key.data(), gguf_type_name(v->type));
    return v->u != 0;
}

void GgufFile::set_override(const std::string& key, GgufValue value) {
    if (value.type == GgufType::STRING) {  // the caller's text may not outlive this call
        auto text = std::make_shared<const std::string>(value.str);
        value.str = *text;
        owned_.push_back(std::move(text));
    }
    auto it = kv_index_.find(key);
    if (it != kv_index_.end()) {
        kv_[it->second].second = std::move(value);
    } else {
        kv_index_[key] = kv_.size();
        kv_.emplace_back(key, std::move(value));
    }
}

}  // namespace kiln
