// GGUF reader: a valid file round-trips through GgufWriter, and a corpus of malformed
// files (truncated at every byte, lying counts, overflowing dims, bad offsets, unknown
// types, bad UTF-8, ...) is rejected with a message naming the problem, never a crash.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <unistd.h>

#include "kiln/format/gguf.h"
#include "kiln/format/gguf_writer.h"
#include "test_util.h"
#include "kiln/format/blocks.h"

using kiln::DType;
using kiln::GgufFile;
using kiln::GgufType;

namespace {

// Hand-rolled GGUF bytes, so each malformed case controls every field.
struct Raw {
    std::vector<uint8_t> b;
    template <class T>
    Raw& put(T v) {
        uint8_t tmp[sizeof(T)];
        std::memcpy(tmp, &v, sizeof(T));
        b.insert(b.end(), tmp, tmp + sizeof(T));
        return *this;
    }
    Raw& str(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        b.insert(b.end(), {'G', 'G', 'U', 'F'});
        return put<uint32_t>(version).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
    }
    Raw& kv_u32(const std::string& key, uint32_t v) { return str(key).put<uint32_t>(4).put<uint32_t>(v); }
    Raw& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
        str(name).put<uint32_t>(uint32_t(ne.size()));
        for (uint64_t n : ne) put<uint64_t>(n);
        return put<uint32_t>(type).put<uint64_t>(offset);
    }
    Raw& pad(size_t align = 32) {
        b.resize((b.size() + align - 1) / align * align, 0);
        return *this;
    }
    Raw& zeros(size_t n) {
        b.resize(b.size() + n, 0);
        return *this;
    }
};

std::string parse_error(const std::vector<uint8_t>& bytes) {
    auto f = GgufFile::parse(bytes.data(), bytes.size(), "bad.gguf");
    return f.is_ok() ? std::string() : f.message();
}

// A valid file with every metadata type, a nested array and three tensors.
std::vector<uint8_t> valid_file() {
    kiln::GgufWriter w;
    w.set_str("general.architecture", "llama");
    w.set_u32("llama.block_count", 2);
    w.set_i32("test.i32", -5);
    w.set_u64("test.u64", 1ull << 40);
    w.set_f32("test.f32", 0.25f);
    w.set_bool("test.bool", true);
    w.set_arr_str("test.strings", {"a", "bb", "\xe2\x96\x81x"});
    w.set_arr_f32("test.floats", {1.5f, -2.0f});
    w.set_arr_i32("test.ints", {7, 8, 9});
    std::vector<float> a(64, 1.0f);
    w.add_tensor("a.weight", DType::F32, {64}, a.data(), a.size() * 4);
    std::vector<uint8_t> q(2 * sizeof(kiln::block_q8_0), 0);
    w.add_tensor("b.weight", DType::Q8_0, {32, 2}, q.data(), q.size());
    std::vector<uint8_t> k(sizeof(kiln::block_q4_K), 0);
    w.add_tensor("c.weight", DType::Q4_K, {256}, k.data(), k.size());
    return w.to_bytes();
}

}  // namespace

TEST_CASE("gguf: a file written by GgufWriter reads back") {
    const auto bytes = valid_file();
    auto f = GgufFile::parse(bytes.data(), bytes.size());
    REQUIRE_MESSAGE(f.is_ok(), f.message());
    CHECK(f->version() == 3);
    CHECK(f->get_string("general.architecture").value() == "llama");
    CHECK(f->get_int("llama.block_count", 0).value() == 2);
    CHECK(f->get_int("test.i32", 0).value() == -5);
    CHECK(f->get_int("test.u64", 0).value() == (int64_t(1) << 40));
    CHECK(f->get_float("test.f32", 0).value() == doctest::Approx(0.25));
    CHECK(f->get_bool("test.bool", false).value());
    CHECK(f->get_int("missing", 42).value() == 42);
    CHECK_FALSE(f->get_int("general.architecture", 0).is_ok());  // wrong type is an error
    const kiln::GgufValue* s = f->find("test.strings");
    REQUIRE(s);
    REQUIRE(s->arr_strings.size() == 3);
    CHECK(s->arr_strings[2] == "\xe2\x96\x81x");
    CHECK(f->find("test.floats")->arr_double(1) == -2.0);
    CHECK(f->find("test.ints")->arr_int(2) == 9);
    REQUIRE(f->tensors().size() == 3);
    const kiln::GgufTensor* b = f->find_tensor("b.weight");
    REQUIRE(b);
    CHECK(b->dtype == DType::Q8_0);
    CHECK(b->ne[0] == 32);
    CHECK(b->ne[1] == 2);
    CHECK(b->nbytes == 68);
    CHECK(b->data == bytes.data() + f->data_offset() + b->offset);
}

TEST_CASE("gguf: nested arrays and v2 files parse") {
    Raw r;
    r.header(0, 1, 2).str("nested").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(2);
    r.put<uint32_t>(4).put<uint64_t>(2).put<uint32_t>(1).put<uint32_t>(2);  // [u32 x 2]
    r.put<uint32_t>(8).put<uint64_t>(1).str("x");                         // [string x 1]
    auto f = GgufFile::parse(r.b.data(), r.b.size());
    REQUIRE_MESSAGE(f.is_ok(), f.message());
    const kiln::GgufValue* v = f->find("nested");
    REQUIRE(v);
    REQUIRE(v->arr_nested.size() == 2);
    CHECK(v->arr_nested[0].arr_int(1) == 2);
    CHECK(v->arr_nested[1].arr_strings[0] == "x");
}

TEST_CASE("gguf: truncation at every byte is rejected") {
    const auto bytes = valid_file();
    auto f = GgufFile::parse(bytes.data(), bytes.size());
    REQUIRE(f.is_ok());
    uint64_t end_of_data = 0;
    for (const auto& t : f->tensors()) end_of_data = std::max(end_of_data, f->data_offset() + t.offset + t.nbytes);
    for (size_t cut = 0; cut < end_of_data; ++cut) {
        std::vector<uint8_t> part(bytes.begin(), bytes.begin() + long(cut));
        const std::string err = parse_error(part);
        CAPTURE(cut);
        CHECK_FALSE(err.empty());
        CHECK(err.find("bad.gguf") == 0);
    }
}

TEST_CASE("gguf: malformed headers and metadata name the problem") {
    struct Bad {
        const char* what;
        Raw raw;
        const char* expect;  // a substring of the error
    };
    std::vector<Bad> cases;
    cases.push_back({"bad magic", Raw().put<uint32_t>(0x4c4d4747).put<uint32_t>(3), "not a GGUF file"});  // "GGML"
    cases.push_back({"version 1", Raw().header(0, 0, 1), "version 1 is not supported"});
    cases.push_back({"big-endian", Raw().header(0, 0, 0x03000000), "big-endian"});
    cases.push_back({"future version", Raw().header(0, 0, 7), "unsupported GGUF version 7"});
    cases.push_back({"huge kv count", Raw().header(0, uint64_t(1) << 62), "metadata count"});
    cases.push_back({"huge tensor count", Raw().header(uint64_t(1) << 62, 0), "tensor count"});
    cases.push_back({"huge string length", Raw().header(0, 1).put<uint64_t>(uint64_t(-1)).zeros(32), "string length"});
    cases.push_back({"unknown value type", Raw().header(0, 1).str("k").put<uint32_t>(13), "unknown value type 13"});
    cases.push_back({"bad UTF-8 key", Raw().header(0, 1).str("k\xff").put<uint32_t>(4).put<uint32_t>(1), "UTF-8"});
    cases.push_back({"overlong UTF-8 value", Raw().header(0, 1).str("k").put<uint32_t>(8).str("\xc0\xaf"), "UTF-8"});
    cases.push_back({"duplicate key", Raw().header(0, 2).kv_u32("k", 1).kv_u32("k", 2), "appears twice"});
    cases.push_back({"huge array", Raw().header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(6).put<uint64_t>(uint64_t(1) << 61), "exceeds"});
    cases.push_back({"array of unknown type", Raw().header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(77).put<uint64_t>(1), "unknown element type"});
    cases.push_back({"bool out of range", Raw().header(0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2), "neither 0 nor 1"});
    cases.push_back({"alignment not a power of two", Raw().header(0, 1).kv_u32("general.alignment", 24), "power of two"});
    cases.push_back({"alignment zero", Raw().header(0, 1).kv_u32("general.alignment", 0), "power of two"});
    {
        Raw deep;
        deep.header(0, 1).str("k");
        deep.put<uint32_t>(9);
        for (int d = 0; d < 20; ++d) deep.put<uint32_t>(9).put<uint64_t>(1);
        cases.push_back({"arrays nested too deep", deep, "nested deeper"});
    }
    for (auto& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        const std::string err = parse_error(c.raw.b);
        CHECK_MESSAGE(err.find(c.expect) != std::string::npos, err);
    }
}

TEST_CASE("gguf: malformed tensor infos name the tensor") {
    struct Bad {
        const char* what;
        Raw raw;
        const char* expect;
    };
    std::vector<Bad> cases;
    auto one = [](std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data) {
        Raw r;
        r.header(1, 0).tensor("blk.3.attn_q.weight", ne, type, offset).pad().zeros(data);
        return r;
    };
    cases.push_back({"unknown type", one({32}, 99, 0, 128), "unsupported tensor type 99"});
    cases.push_back({"removed type 4", one({32}, 4, 0, 128), "unsupported tensor type 4"});
    cases.push_back({"zero dim", one({0}, 0, 0, 128), "dimension 0 is 0"});
    cases.push_back({"five dims", one({1, 1, 1, 1, 1}, 0, 0, 128), "5 dimensions"});
    cases.push_back({"overflowing dims", one({uint64_t(1) << 42, uint64_t(1) << 42}, 0, 0, 128), "overflows"});
    cases.push_back({"dims wrapping to zero bytes", one({(uint64_t(1) << 62) + 1, 4}, 0, 0, 128), "overflows"});
    cases.push_back({"row not a block multiple", one({33}, 8, 0, 128), "not a multiple of the q8_0 block size"});
    cases.push_back({"offset past end", one({32}, 0, 4096, 128), "ends past end of file"});
    cases.push_back({"size past end", one({1024}, 0, 0, 128), "ends past end of file"});
    cases.push_back({"misaligned offset", one({8}, 0, 4, 128), "not a multiple of the alignment"});
    cases.push_back({"huge offset", one({8}, 0, uint64_t(-32), 128), "ends past end of file"});
    {
        Raw r;
        r.header(2, 0).tensor("a", {32}, 0, 0).tensor("b", {32}, 0, 64).pad().zeros(256);
        cases.push_back({"overlapping tensors", r, "overlap"});
    }
    {
        Raw r;
        r.header(2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).pad().zeros(64);
        cases.push_back({"duplicate tensor", r, "appears twice"});
    }
    {
        Raw r;
        r.header(1, 0).tensor("bad\xed\xa0\x80name", {8}, 0, 0).pad().zeros(32);  // a UTF-16 surrogate
        cases.push_back({"bad UTF-8 name", r, "not valid UTF-8"});
    }
    for (auto& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        const std::string err = parse_error(c.raw.b);
        CHECK_MESSAGE(err.find(c.expect) != std::string::npos, err);
    }
    // The message names the tensor, its data range and the file size, as users need.
    const std::string err = parse_error(one({1024}, 0, 0, 128).b);
    CHECK(err.find("tensor 'blk.3.attn_q.weight'") != std::string::npos);
    CHECK(err.find("size 4096") != std::string::npos);
}

TEST_CASE("gguf: random corruption never crashes") {
    // Under ASan/UBSan (the sanitizer job) this finds out-of-bounds reads the asserts miss.
    const auto bytes = valid_file();
    std::mt19937 rng(1234);
    int rejected = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        std::vector<uint8_t> m = bytes;
        const int flips = 1 + int(rng() % 4);
        for (int k = 0; k < flips; ++k) {
            const size_t at = rng() % m.size();
            m[at] = rng() % 3 == 0 ? uint8_t(0xff) : uint8_t(rng());
        }
        auto f = GgufFile::parse(m.data(), m.size(), "mutant.gguf");
        if (!f) {
            ++rejected;
            CHECK(!f.message().empty());
        } else {
            for (const auto& t : f->tensors()) CHECK(f->data_offset() + t.offset + t.nbytes <= m.size());
        }
    }
    CHECK(rejected > 0);
}

TEST_CASE("gguf: files on disk, missing files and real models") {
    auto missing = GgufFile::open("/nonexistent/model.gguf");
    REQUIRE_FALSE(missing.is_ok());
    CHECK(missing.message().find("/nonexistent/model.gguf: cannot open") == 0);
    auto dir = GgufFile::open("/");
    CHECK_FALSE(dir.is_ok());
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto f = GgufFile::open(path);
    REQUIRE_MESSAGE(f.is_ok(), f.message());
    CHECK(f->tensors().size() == 272);
    CHECK(f->get_string("general.architecture").value() == "llama");
    CHECK(f->find("tokenizer.ggml.tokens")->arr_strings.size() == 49152);
}

TEST_CASE("gguf: release drops a mapped file's pages from the process; the bytes read back") {
    const std::string path = (std::filesystem::temp_directory_path() / "kiln_release_test.bin").string();
    const size_t page = size_t(sysconf(_SC_PAGESIZE)), size = 64 * page;
    std::vector<uint8_t> bytes(size);  // (size) a pattern with no period of a page
    for (size_t i = 0; i < size; ++i) bytes[i] = uint8_t(i * 7 + i / 251);
    {
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(size));
    }
    auto mapped = kiln::MappedFile::open(path, true);
    REQUIRE_MESSAGE(mapped.is_ok(), mapped.message());
    const kiln::MappedFile& m = *mapped.value();
    REQUIRE(std::memcmp(m.data(), bytes.data(), size) == 0);  // every page touched
    const int64_t before = kiln::test::resident_bytes_of_mapping(m.data());
    CHECK(before == int64_t(size));
    // Whole pages inside [1000, 1000 + 40 pages): pages 1 .. 40 (the first and last partial
    // pages stay).
    const size_t released = m.release(m.data() + 1000, 40 * page);
    CHECK(released == 39 * page);
    CHECK(kiln::test::resident_bytes_of_mapping(m.data()) == before - int64_t(released));
    CHECK(std::memcmp(m.data(), bytes.data(), size) == 0);  // faulted back in, same bytes
    // Out of the mapping, or a file read into memory (its pages are the only copy): nothing.
    CHECK(m.release(m.data() + size - page, 2 * page) == 0);
    CHECK(m.release(bytes.data(), page) == 0);
    auto read_in = kiln::MappedFile::open(path, false);
    REQUIRE(read_in.is_ok());
    CHECK(read_in.value()->release(read_in.value()->data(), size) == 0);
    CHECK(std::memcmp(read_in.value()->data(), bytes.data(), size) == 0);
    std::filesystem::remove(path);
}
