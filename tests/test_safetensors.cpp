// The safetensors reader: a valid file reads back; every malformed header, range, dtype or
// overlap is an error naming the problem; truncation at any byte is an error; sharded
// checkpoints follow their index and refuse shards that break it.
#include <algorithm>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kiln/format/safetensors.h"
#include "test_util.h"

namespace {

// 8-byte little-endian length, the header text, then the data bytes.
std::vector<uint8_t> image(const std::string& header, const std::vector<uint8_t>& data, uint64_t length_field) {
    std::vector<uint8_t> out(8 + header.size() + data.size());
    for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(length_field >> (8 * i));
    std::copy(header.begin(), header.end(), out.begin() + 8);
    std::copy(data.begin(), data.end(), out.begin() + 8 + std::ptrdiff_t(header.size()));
    return out;
}
std::vector<uint8_t> image(const std::string& header, const std::vector<uint8_t>& data) { return image(header, data, header.size()); }

std::vector<uint8_t> bytes(size_t n) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(i * 7 + 1);
    return v;
}

const std::string kValid =
    R"({"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
    R"("b":{"dtype":"F32","shape":[3],"data_offsets":[12,24]},"e":{"dtype":"U8","shape":[0],"data_offsets":[24,24]}})";

// The error for a one-tensor file with this entry, over 16 data bytes.
std::string entry_error(const std::string& entry) {
    const auto img = image(R"({"t":)" + entry + "}", bytes(16));
    auto f = kiln::SafetensorsFile::parse(img.data(), img.size(), "x.safetensors");
    REQUIRE_FALSE(f.is_ok());
    return f.message();
}

void write(const std::filesystem::path& p, const std::vector<uint8_t>& b) {
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
void write(const std::filesystem::path& p, const std::string& s) { std::ofstream(p) << s; }

}  // namespace

TEST_CASE("safetensors: a valid file reads back") {
    const auto data = bytes(24);
    const auto img = image(kValid, data);
    auto f = kiln::SafetensorsFile::parse(img.data(), img.size(), "ok.safetensors");
    REQUIRE(f.is_ok());
    REQUIRE(f->tensors().size() == 3);
    const kiln::SafetensorsTensor* w = f->find_tensor("w");
    REQUIRE(w);
    CHECK(w->dtype == "BF16");
    CHECK(w->shape == std::vector<int64_t>{2, 3});
    CHECK(w->n_elements() == 6);
    CHECK(w->nbytes == 12);
    CHECK(std::memcmp(w->data, data.data(), 12) == 0);
    const kiln::SafetensorsTensor* b = f->find_tensor("b");
    REQUIRE(b);
    CHECK(std::memcmp(b->data, data.data() + 12, 12) == 0);
    CHECK(f->find_tensor("e")->nbytes == 0);
    CHECK(f->find_tensor("missing") == nullptr);
    CHECK(f->metadata().at("format") == "pt");
}

TEST_CASE("safetensors: malformed headers name the problem") {
    auto error = [](const std::vector<uint8_t>& img) {
        auto f = kiln::SafetensorsFile::parse(img.data(), img.size(), "bad.safetensors");
        REQUIRE_FALSE(f.is_ok());
        CHECK(f.message().find("bad.safetensors") != std::string::npos);
        return f.message();
    };
    CHECK(error({1, 2, 3}).find("too short") != std::string::npos);
    CHECK(error(image("{}", {}, 1)).find("header length 1") != std::string::npos);
    CHECK(error(image("{}", {}, 1000)).find("past the end") != std::string::npos);
    CHECK(error(image("{}", {}, uint64_t(1) << 62)).find("header length") != std::string::npos);
    CHECK(error(image(R"({"a":)", {})).find("not valid JSON") != std::string::npos);
    CHECK(error(image("[1,2]", {})).find("not a JSON object") != std::string::npos);
    CHECK(error(image("{\"\xff\":1}", {})).find("UTF-8") != std::string::npos);
    CHECK(error(image(R"({"__metadata__":{"k":1}})", {})).find("not a string") != std::string::npos);
    CHECK(error(image(R"({"__metadata__":[]})", {})).find("__metadata__") != std::string::npos);
}

TEST_CASE("safetensors: bad tensor entries name the tensor and the field") {
    CHECK(entry_error("[]").find("'t': entry is not an object") != std::string::npos);
    CHECK(entry_error(R"({"shape":[4],"data_offsets":[0,16]})").find("dtype") != std::string::npos);
    CHECK(entry_error(R"({"dtype":"Q4","shape":[4],"data_offsets":[0,16]})").find("unknown dtype 'Q4'") != std::string::npos);
    CHECK(entry_error(R"({"dtype":"F32","shape":4,"data_offsets":[0,16]})").find("shape") != std::string::npos);
    CHECK(entry_error(R"({"dtype":"F32","shape":[-4],"data_offsets":[0,16]})").find("non-negative") != std::string::npos);
    CHECK(entry_error(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,16]})").find("non-negative") != std::string::npos);
    CHECK(entry_error(R"({"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]})").find("too large") != std::string::npos);
    CHECK(entry_error(R"({"dtype":"F32","shape":[4],"data_offsets":[0]})").find("[begin, end]") != std::string::npos);
    CHECK(entry_error(R"({"dtype":"F32","shape":[4],"data_offsets":[8,4]})").find("outside") != std::string::npos);
    CHECK(entry_error(R"({"dtype":"F32","shape":[4],"data_offsets":[8,24]})").find("outside the 16 data bytes") != std::string::npos);
    CHECK(entry_error(R"({"dtype":"F32","shape":[3],"data_offsets":[0,16]})").find("16 bytes for 3 elements") != std::string::npos);
}

TEST_CASE("safetensors: overlapping tensors are refused") {
    const auto img = image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", bytes(16));
    auto f = kiln::SafetensorsFile::parse(img.data(), img.size(), "o.safetensors");
    REQUIRE_FALSE(f.is_ok());
    CHECK(f.message().find("'a' and 'b' overlap") != std::string::npos);
}

TEST_CASE("safetensors: truncation at every byte is an error, never a crash") {
    const auto img = image(kValid, bytes(24));
    for (size_t n = 0; n < img.size(); ++n) {
        CAPTURE(n);
        const std::vector<uint8_t> cut(img.begin(), img.begin() + std::ptrdiff_t(n));  // its own allocation: ASan sees overreads
        auto f = kiln::SafetensorsFile::parse(cut.data(), cut.size(), "cut.safetensors");
        CHECK_FALSE(f.is_ok());
        CHECK_FALSE(f.message().empty());
    }
}

TEST_CASE("safetensors: checkpoint directories, single and sharded") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("kiln_st_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    CHECK(kiln::SafetensorsCheckpoint::open(dir.string()).message().find("neither model.safetensors") != std::string::npos);

    write(dir / "model.safetensors", image(kValid, bytes(24)));
    auto single = kiln::SafetensorsCheckpoint::open(dir.string());
    REQUIRE(single.is_ok());
    CHECK(single->n_tensors() == 3);
    REQUIRE(single->find_tensor("b"));
    CHECK(single->find_tensor("b")->nbytes == 12);

    // Two shards and an index; the index is preferred over model.safetensors.
    write(dir / "s1.safetensors", image(R"({"x":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", bytes(8)));
    write(dir / "s2.safetensors", image(R"({"y":{"dtype":"I8","shape":[5],"data_offsets":[0,5]}})", bytes(5)));
    write(dir / "model.safetensors.index.json", std::string(R"({"metadata":{},"weight_map":{"x":"s1.safetensors","y":"s2.safetensors"}})"));
    auto sharded = kiln::SafetensorsCheckpoint::open(dir.string());
    REQUIRE(sharded.is_ok());
    CHECK(sharded->shards().size() == 2);
    CHECK(sharded->n_tensors() == 2);
    REQUIRE(sharded->find_tensor("y"));
    CHECK(sharded->find_tensor("y")->dtype == "I8");

    write(dir / "model.safetensors.index.json", std::string(R"({"weight_map":{"x":"s2.safetensors","y":"s2.safetensors"}})"));
    CHECK(kiln::SafetensorsCheckpoint::open(dir.string()).message().find("tensor 'x' is not in s2.safetensors") != std::string::npos);
    write(dir / "model.safetensors.index.json", std::string(R"({"weight_map":{"x":"../s1.safetensors"}})"));
    CHECK(kiln::SafetensorsCheckpoint::open(dir.string()).message().find("not a file in the checkpoint directory") != std::string::npos);
    write(dir / "model.safetensors.index.json", std::string(R"({"weight_map":{"x":"missing.safetensors"}})"));
    CHECK_FALSE(kiln::SafetensorsCheckpoint::open(dir.string()).is_ok());
    write(dir / "model.safetensors.index.json", std::string(R"({"weights":{}})"));
    CHECK(kiln::SafetensorsCheckpoint::open(dir.string()).message().find("weight_map") != std::string::npos);
    fs::remove_all(dir);
}
