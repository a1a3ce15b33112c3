// Split GGUF files (kiln/format/gguf_split.h): written in llama.cpp's gguf-split layout,
// loaded back as one model with the single file's logits, and the errors for a part that is
// missing, foreign, misnamed or given first.
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/format/gguf_split.h"
#include "kiln/format/gguf_writer.h"
#include "kiln/model.h"
#include "kiln/session.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using kiln::test::message_lacks;

// Logits of every position of a short prompt.
std::vector<float> prompt_logits(const std::string& path) {
    auto model = kiln::Model::load(path);
    REQUIRE_MESSAGE(model.is_ok(), model.message());
    kiln::SessionOptions so;
    so.n_ctx = 64, so.n_threads = 2;
    auto s = kiln::Session::create(model.value(), so);
    REQUIRE(s.is_ok());
    const auto tokens = model.value()->tokenizer().encode("Split files load as one model: the same weights, the same logits.", true, false);
    REQUIRE(s.value()->forward(tokens, /*all_logits=*/true).is_ok());
    const size_t n = tokens.size() * size_t(model.value()->config().n_vocab);
    return std::vector<float>(s.value()->logits(0), s.value()->logits(0) + n);
}

}  // namespace

TEST_CASE("gguf split: three parts in llama.cpp's layout load as the single file, with its logits") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto single = kiln::GgufFile::open(path);
    REQUIRE(single.is_ok());
    const fs::path dir = fs::temp_directory_path() / "kiln-split-test";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string prefix = (dir / "smol").string();
    const size_t n_tensors = single->tensors().size();

    kiln::SplitOptions o;
    o.max_tensors = int((n_tensors + 2) / 3);
    auto parts = kiln::write_gguf_split(single.value(), prefix, o);
    REQUIRE_MESSAGE(parts.is_ok(), parts.message());
    REQUIRE(parts->size() == 3);
    CHECK(parts->at(0) == prefix + "-00001-of-00003.gguf");
    CHECK(parts->at(2) == prefix + "-00003-of-00003.gguf");
    // As gguf-split: the first part has the metadata, every part the three split keys.
    for (int p = 0; p < 3; ++p) {
        auto part = kiln::GgufFile::open(parts->at(size_t(p)));
        REQUIRE(part.is_ok());
        CHECK(part->get_int("split.no", -1).value() == p);
        CHECK(part->get_int("split.count", -1).value() == 3);
        CHECK(part->get_int("split.tensors.count", -1).value() == int64_t(n_tensors));
        CHECK(part->find("split.count")->type == kiln::GgufType::U16);
        CHECK(part->metadata().size() == (p == 0 ? single->metadata().size() + 3 : 3));
        CHECK(part->tensors().size() == (p < 2 ? size_t(o.max_tensors) : n_tensors - 2 * size_t(o.max_tensors)));
    }

    // Opened from the first part: every tensor, same type, shape and bytes.
    auto joined = kiln::open_model_file(parts->at(0));
    REQUIRE_MESSAGE(joined.is_ok(), joined.message());
    REQUIRE(joined->tensors().size() == n_tensors);
    for (const kiln::GgufTensor& t : single->tensors()) {
        const kiln::GgufTensor* u = joined->find_tensor(t.name);
        REQUIRE(u != nullptr);
        CHECK(u->dtype == t.dtype);
        CHECK(std::equal(t.ne, t.ne + 4, u->ne));
        REQUIRE(u->nbytes == t.nbytes);
        CHECK(std::memcmp(u->data, t.data, t.nbytes) == 0);
    }
    CHECK(prompt_logits(parts->at(0)) == prompt_logits(path));  // bit for bit

    // Written back as one file (kiln-quantize COPY of a split model): no split keys.
    kiln::GgufWriter w(uint32_t(joined->alignment()));
    w.add_file(joined.value());
    REQUIRE(w.write((dir / "one.gguf").string()).is_ok());
    auto one = kiln::GgufFile::open((dir / "one.gguf").string());
    REQUIRE(one.is_ok());
    CHECK_FALSE(one->has("split.count"));
    CHECK(one->tensors().size() == n_tensors);

    // By size: parts of at most 40 MB of tensors (each padded to the alignment).
    auto by_size = kiln::write_gguf_split(single.value(), (dir / "sized").string(), {40000000, 0});
    REQUIRE(by_size.is_ok());
    CHECK(by_size->size() == 3);
    for (const std::string& p : by_size.value()) {
        auto part = kiln::GgufFile::open(p);
        REQUIRE(part.is_ok());
        uint64_t bytes = 0;
        for (const auto& t : part->tensors()) bytes += (t.nbytes + 31) / 32 * 32;
        CHECK(bytes <= 40000000);
    }
    // No limit reached: one file, no split keys.
    auto whole = kiln::write_gguf_split(single.value(), (dir / "whole").string(), {});
    REQUIRE(whole.is_ok());
    CHECK(whole.value() == std::vector<std::string>{(dir / "whole.gguf").string()});
    CHECK_FALSE(kiln::GgufFile::open(whole->at(0))->has("split.no"));

    CHECK(kiln::parse_split_size("40M").value() == 40000000);
    CHECK(kiln::parse_split_size("2G").value() == 2000000000);
    for (const char* bad : {"40", "0M", "-1G", "M", "4K", "1.5G", ""}) CHECK_FALSE(kiln::parse_split_size(bad).is_ok());

    // The errors.
    CHECK(message_lacks(kiln::open_model_file(parts->at(1)).status(), "is part 2 of 3 of a split model: load the first part, " + parts->at(0)) == "");
    fs::rename(parts->at(2), dir / "aside.gguf");
    CHECK(message_lacks(kiln::open_model_file(parts->at(0)).status(), "part 3 of 3 of " + parts->at(0)) == "");
    fs::copy_file(by_size->at(2), parts->at(2));  // a part of another split (3 parts too, split differently)
    CHECK(message_lacks(kiln::open_model_file(parts->at(0)).status(), "hold 253 tensors, split.tensors.count says 272") == "");
    fs::remove(parts->at(2));
    fs::copy_file(by_size->at(1), parts->at(2));  // another split's part 2 where part 3 belongs
    CHECK(message_lacks(kiln::open_model_file(parts->at(0)).status(), "expected part 3 of 3, the file says part 2 of 3") == "");
    fs::remove(parts->at(2));
    fs::rename(dir / "aside.gguf", parts->at(2));
    fs::copy_file(parts->at(0), dir / "renamed.gguf");
    CHECK(message_lacks(kiln::open_model_file((dir / "renamed.gguf").string()).status(), "not named PREFIX-00001-of-00003.gguf") == "");
    CHECK(kiln::open_model_file(parts->at(0)).is_ok());  // whole again
    fs::remove_all(dir);
}
