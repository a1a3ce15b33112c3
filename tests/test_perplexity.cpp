// kiln-perplexity's library half (kiln/perplexity.h): llama.cpp's chunking and scoring, its
// base-logits file (round trip, bad files), and KL divergence.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kiln/perplexity.h"
#include "kiln/tokenizer.h"
#include "test_util.h"

TEST_CASE("perplexity: chunks, quantized log-probabilities, the base file and its errors") {
    kiln::PerplexityOptions o;
    o.n_ctx = 64;
    CHECK(kiln::perplexity_chunks(63, o).message().find("less than one chunk") != std::string::npos);
    CHECK(kiln::perplexity_chunks(200, o).value() == 3);
    o.max_chunks = 2;
    CHECK(kiln::perplexity_chunks(200, o).value() == 2);
    o.n_ctx = 2;
    CHECK_FALSE(kiln::perplexity_chunks(200, o).is_ok());

    // Quantized rows give back each log-probability within half a step (the top 16 nats).
    const int n_vocab = 1001;  // odd: the row pads to an even count
    const auto logits = kiln::test::gaussian(size_t(n_vocab), 7, 3.0f);
    std::vector<uint16_t> row(size_t(kiln::logits_row_words(n_vocab)));
    CHECK(row.size() == 1002 + 4);
    kiln::quantize_log_probs(logits.data(), n_vocab, row.data());
    const float mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (float l : logits) sum += std::exp(double(l - mx));
    for (int i = 0; i < n_vocab; ++i) {
        const double exact = double(logits[size_t(i)] - mx) - std::log(sum);
        if (exact > std::log(1.0 / sum) - 15.9) CHECK(std::fabs(kiln::row_log_prob(row.data(), i) - exact) <= 16.0 / 65535 / 2 + 1e-5);
    }

    // Round trip through a file; a truncated copy and a foreign file are clear errors.
    const std::string path = (std::filesystem::temp_directory_path() / "kiln-logits-test.bin").string();
    std::vector<int32_t> tokens(2 * 8);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i * 37 % n_vocab);
    auto w = kiln::LogitsFile::create(path, 8, n_vocab, 2, tokens);
    REQUIRE(w.is_ok());
    const int rows = w->rows_per_chunk();
    CHECK(rows == 3);
    std::vector<float> chunk_logits(size_t(rows) * n_vocab);
    for (size_t i = 0; i < chunk_logits.size(); ++i) chunk_logits[i] = logits[i % size_t(n_vocab)] + float(i / size_t(n_vocab));
    const std::vector<int32_t> targets = {1, 2, 3};
    for (int c = 0; c < 2; ++c) REQUIRE(w->add_chunk({c, chunk_logits.data(), targets, n_vocab}).is_ok());
    CHECK_FALSE(w->add_chunk({0, chunk_logits.data(), std::span<const int32_t>(targets).first(2), n_vocab}).is_ok());
    w = kiln::Status::error("closed");  // flushes and closes the file
    auto r = kiln::LogitsFile::open(path);
    REQUIRE_MESSAGE(r.is_ok(), r.message());
    CHECK(r->n_ctx() == 8);
    CHECK(r->n_vocab() == n_vocab);
    CHECK(r->tokens() == tokens);
    std::vector<uint16_t> back;
    REQUIRE(r->read_chunk(&back).is_ok());
    std::vector<uint16_t> want(row.size());
    kiln::quantize_log_probs(chunk_logits.data() + n_vocab, n_vocab, want.data());
    CHECK(std::equal(want.begin(), want.end(), back.begin() + long(row.size())));
    {
        std::ifstream in(path, std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(path + ".cut", std::ios::binary).write(bytes.data(), long(bytes.size() - 10));
        std::ofstream(path + ".bad", std::ios::binary) << "GGUF and more";
    }
    CHECK(kiln::LogitsFile::open(path + ".cut").message().find("truncated") != std::string::npos);
    CHECK(kiln::LogitsFile::open(path + ".bad").message().find("not a llama.cpp logits file") != std::string::npos);
    CHECK(kiln::LogitsFile::open(path + ".none").message().find("cannot be read") != std::string::npos);
    for (const char* suffix : {"", ".cut", ".bad"}) std::remove((path + suffix).c_str());
}

TEST_CASE("perplexity: SmolLM2 against its own base file (KLD ~ 0) and against another ISA") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    std::string text;
    for (int i = 0; i < 12; ++i) text += "The museum opens at nine and closes at six. Children under twelve enter free, and on Sundays everyone does. ";
    const auto tokens = model.value()->tokenizer().encode(text, true, false);
    kiln::PerplexityOptions o;
    o.n_ctx = 64;
    const int n_vocab = model.value()->config().n_vocab;
    auto run = [&](const char* isa, const std::function<kiln::Status(const kiln::ScoredChunk&)>& on_chunk) {
        kiln::SessionOptions so;
        so.n_ctx = 64, so.n_threads = 2, so.isa = isa;
        auto s = kiln::Session::create(model.value(), so);
        REQUIRE(s.is_ok());
        auto r = kiln::compute_perplexity(*s.value(), tokens, o, on_chunk);
        REQUIRE_MESSAGE(r.is_ok(), r.message());
        return r.value();
    };
    const std::string file = (std::filesystem::temp_directory_path() / "kiln-logits-smollm2.bin").string();
    auto chunks = kiln::perplexity_chunks(tokens.size(), o);
    REQUIRE(chunks.is_ok());
    auto w = kiln::LogitsFile::create(file, o.n_ctx, n_vocab, chunks.value(), tokens);
    REQUIRE(w.is_ok());
    const auto base = run(nullptr, [&](const kiln::ScoredChunk& c) { return w->add_chunk(c); });
    w = kiln::Status::error("closed");
    CHECK(base.n_chunks == chunks.value());
    CHECK(base.n_scored == uint64_t(chunks.value()) * 31);
    CHECK(base.ppl > 1.0);
    CHECK(base.ppl < 20.0);  // repetitive text: the model predicts it well
    CHECK(base.ppl_err > 0);
    for (const char* isa : {(const char*)nullptr, "generic"}) {
        auto f = kiln::LogitsFile::open(file);
        REQUIRE(f.is_ok());
        kiln::KldAccumulator kld;
        std::vector<uint16_t> rows;
        const auto r = run(isa, [&](const kiln::ScoredChunk& c) -> kiln::Status {
            KILN_TRY(f->read_chunk(&rows));
            for (size_t i = 0; i < c.targets.size(); ++i)
                kld.add(rows.data() + i * size_t(kiln::logits_row_words(n_vocab)), c.logits + i * size_t(n_vocab), n_vocab, c.targets[i]);
            return kiln::Status::ok();
        });
        const kiln::KldResult k = kld.result();
        CAPTURE(isa ? isa : "best");
        CHECK(k.n == base.n_scored);
        CHECK(k.ppl == doctest::Approx(r.ppl).epsilon(1e-9));
        CHECK(k.ppl_base == doctest::Approx(base.ppl).epsilon(1e-4));  // the base file's 16-bit rows
        CHECK(k.kld_mean < (isa ? 0.01 : 1e-5));
        CHECK(k.same_top >= (isa ? 0.95 : 0.999));
        CHECK(k.kld_max >= k.kld_p99);
        CHECK(k.kld_p99 >= k.kld_median);
    }
    std::remove(file.c_str());
}

TEST_CASE("perplexity: a base file llama-perplexity wrote reads back, and kiln's logits stay close to llama.cpp's") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    auto base = kiln::LogitsFile::open(kiln::test::data_path("llama_logits_smollm2_c8.bin"));
    REQUIRE_MESSAGE(base.is_ok(), base.message());
    CHECK(base->n_ctx() == 8);
    CHECK(base->n_chunk() == 1);
    const int n_vocab = model.value()->config().n_vocab;
    REQUIRE(base->n_vocab() == n_vocab);
    // The tokens are llama.cpp's tokenization of tests/data/README.md's small.txt: kiln's is the same.
    const auto ours = model.value()->tokenizer().encode(
        "The museum opens at nine and closes at six. Children under twelve enter free, and on Sundays everyone does. Tickets are sold at the door.", true, false);
    REQUIRE(ours.size() >= 8);
    CHECK(std::vector<int32_t>(ours.begin(), ours.begin() + 8) == base->tokens());
    kiln::SessionOptions so;
    so.n_ctx = 8, so.n_threads = 2;
    auto s = kiln::Session::create(model.value(), so);
    REQUIRE(s.is_ok());
    kiln::KldAccumulator kld;
    std::vector<uint16_t> rows;
    kiln::PerplexityOptions o;
    o.n_ctx = 8;
    auto r = kiln::compute_perplexity(*s.value(), base->tokens(), o, [&](const kiln::ScoredChunk& c) -> kiln::Status {
        KILN_TRY(base->read_chunk(&rows));
        for (size_t i = 0; i < c.targets.size(); ++i)
            kld.add(rows.data() + i * size_t(kiln::logits_row_words(n_vocab)), c.logits + i * size_t(n_vocab), n_vocab, c.targets[i]);
        return kiln::Status::ok();
    });
    REQUIRE(r.is_ok());
    const kiln::KldResult k = kld.result();
    CHECK(k.n == 3);
    CHECK(k.kld_mean < 0.02);  // Q4_1 kernels of two engines: 0.002 here
    CHECK(k.same_top >= 0.66);
    CHECK(k.ppl == doctest::Approx(k.ppl_base).epsilon(0.05));
}
