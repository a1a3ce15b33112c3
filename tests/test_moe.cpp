// Mixture of experts: the expert-grouped forward against a dense reference (every expert
// on every token, outputs masked by the routing weights; KILN_MOE_DENSE_REFERENCE=1), on
// the synthetic MoE files of the three layouts, for prefill, verification and decode, on
// every ISA and with the row-interleaved copy; plus the errors of the active-expert knob.
#include <cmath>
#include <cstdlib>

#include "cpu/kernels.h"
#include "kiln/kiln.h"
#include "test_util.h"
#include "kiln/format/gguf.h"
#include "kiln/format/gguf_writer.h"
#include "switches.h"

namespace {

std::unique_ptr<kiln::Session> make_session(const std::shared_ptr<kiln::Model>& m, const char* isa, bool dense, int k = 0) {
    kiln::SessionOptions so;
    so.n_ctx = 128;
    so.n_threads = 2;
    so.n_batch = 16;  // two chunks for the 24-token prompt
    so.isa = isa;
    so.n_expert_used = k;
    if (dense) setenv("KILN_MOE_DENSE_REFERENCE", "1", 1), kiln::reload_switches();
    auto s = kiln::Session::create(m, so);
    unsetenv("KILN_MOE_DENSE_REFERENCE"), kiln::reload_switches();
    REQUIRE_MESSAGE(s.is_ok(), s.message());
    return std::move(s.value());
}

// Largest |a - b| over n logits, and the largest |b| (the scale the difference is read at).
std::pair<float, float> diff(const float* a, const float* b, int n) {
    float d = 0, scale = 0;
    for (int i = 0; i < n; ++i) d = std::max(d, std::fabs(a[i] - b[i])), scale = std::max(scale, std::fabs(b[i]));
    return {d, scale};
}

// Prefill (two chunks, every row's logits), a 5-token verification batch and 6 decode
// steps: grouped and dense logits agree to within what 8-bit activations allow. Both run
// the same quantized kernels on the same rows, so the difference is only float summation
// order (GEMM vs row kernels, expert order); 1e-3 of the logit range is ~100x above it and
// ~100x below a changed expert choice.
void check_against_dense(const std::string& file, const char* isa, bool repack, int k = 0) {
    const std::string path = kiln::test::model_path(file);
    if (!kiln::test::require_file(path)) return;
    kiln::LoadOptions lo;
    lo.repack = repack;
    auto model = kiln::Model::load(path, lo);
    REQUIRE_MESSAGE(model.is_ok(), model.message());
    REQUIRE(model.value()->config().is_moe());
    const int n_vocab = model.value()->config().n_vocab;
    auto grouped = make_session(model.value(), isa, false, k);
    auto dense = make_session(model.value(), isa, true, k);
    std::vector<int32_t> prompt;
    for (int i = 0; i < 24; ++i) prompt.push_back(int32_t((i * 7919 + 13) % n_vocab));
    float worst = 0;
    auto compare = [&](int rows) {
        for (int r = 0; r < rows; ++r) {
            auto [d, scale] = diff(grouped->logits(r), dense->logits(r), n_vocab);
            CHECK(d <= 1e-3f * scale);
            worst = std::max(worst, d / scale);
        }
    };
    REQUIRE(grouped->forward(prompt, true).is_ok());
    REQUIRE(dense->forward(prompt, true).is_ok());
    compare(int(prompt.size()));
    const std::vector<int32_t> verify = {5, 17, 99, 1000 % n_vocab, 3};
    REQUIRE(grouped->forward(verify, true).is_ok());
    REQUIRE(dense->forward(verify, true).is_ok());
    compare(int(verify.size()));
    int32_t t = 42;
    for (int i = 0; i < 6; ++i) {
        REQUIRE(grouped->forward(std::span<const int32_t>(&t, 1)).is_ok());
        REQUIRE(dense->forward(std::span<const int32_t>(&t, 1)).is_ok());
        compare(1);
        t = int32_t(std::max_element(dense->logits(), dense->logits() + n_vocab) - dense->logits());
    }
    MESSAGE(file << " [" << std::string(isa) << std::string(repack ? ", repack" : "") << ", k=" << k << "]: worst |grouped - dense| = " << worst << " of the logit range");
}

const char* kFiles[] = {"synth/synth-mixtral.gguf", "synth/synth-qwen3moe.gguf", "synth/synth-qwen2moe.gguf"};

}  // namespace

TEST_CASE("moe: grouped experts equal the dense masked reference, on every ISA") {
    for (const char* f : kFiles)
        for (kiln::cpu::Isa isa : kiln::cpu::available_isas()) check_against_dense(f, kiln::cpu::isa_name(isa), false);
}

TEST_CASE("moe: row-interleaved expert slices (--repack) and other expert counts equal the dense reference") {
    const char* best = kiln::cpu::isa_name(kiln::cpu::available_isas().back());
    for (const char* f : kFiles) check_against_dense(f, best, true);
    check_against_dense("synth/synth-qwen3moe.gguf", best, false, 1);
    check_against_dense("synth/synth-qwen3moe.gguf", best, true, 16);  // every expert
}

TEST_CASE("moe: the active-expert knob and bad files name the problem") {
    const std::string path = kiln::test::model_path("synth/synth-qwen3moe.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    CHECK(model.value()->config().n_expert == 16);
    CHECK(model.value()->config().n_expert_used == 4);
    // Decode bytes with k experts: the expert tensors' k / 16, everything else once.
    uint64_t expert_bytes = 0;
    for (const kiln::GgufTensor& t : model.value()->gguf().tensors())
        if (t.name.find("_exps.") != std::string::npos) expert_bytes += t.nbytes;
    CHECK(model.value()->bytes_per_token(4) == model.value()->bytes_per_token());
    CHECK(model.value()->bytes_per_token() - model.value()->bytes_per_token(2) == expert_bytes / 16 * 2);
    kiln::SessionOptions so;
    so.n_ctx = 16;
    so.n_expert_used = 17;
    auto s = kiln::Session::create(model.value(), so);
    REQUIRE_FALSE(s.is_ok());
    CHECK(s.message().find("expert_count") != std::string::npos);

    // expert_used_count above expert_count, through --override-kv.
    kiln::LoadOptions lo;
    lo.override_kv = {"qwen3moe.expert_used_count=int:20"};
    auto bad = kiln::Model::load(path, lo);
    REQUIRE_FALSE(bad.is_ok());
    CHECK(bad.message().find("expert_used_count 20 is larger than expert_count 16") != std::string::npos);
    lo.override_kv = {"qwen3moe.expert_used_count=int:2"};
    auto two = kiln::Model::load(path, lo);
    REQUIRE(two.is_ok());
    CHECK(two.value()->config().n_expert_used == 2);

    // A dense model refuses the knob.
    const std::string dense = kiln::test::model_path("synth/synth-qwen3.gguf");
    if (kiln::test::require_file(dense)) {
        auto dm = kiln::Model::load(dense);
        REQUIRE(dm.is_ok());
        so.n_expert_used = 2;
        auto ds = kiln::Session::create(dm.value(), so);
        REQUIRE_FALSE(ds.is_ok());
        CHECK(ds.message().find("no experts") != std::string::npos);
    }

    // A file without one of the expert tensors.
    kiln::GgufWriter w;
    const kiln::GgufFile& f = model.value()->gguf();
    for (const auto& [key, v] : f.metadata()) w.set_value(key, v);
    for (const kiln::GgufTensor& t : f.tensors()) {
        if (t.name == "blk.1.ffn_up_exps.weight") continue;
        std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        w.add_tensor(t.name, t.dtype, ne, t.data, t.nbytes);
    }
    const std::string out = (std::filesystem::temp_directory_path() / "kiln-moe-missing.gguf").string();
    REQUIRE(w.write(out).is_ok());
    auto missing = kiln::Model::load(out);
    std::filesystem::remove(out);
    REQUIRE_FALSE(missing.is_ok());
    CHECK(missing.message().find("missing tensor 'blk.1.ffn_up_exps.weight'") != std::string::npos);
}
