// kiln-imatrix's library half (kiln/imatrix.h): the importance matrix kiln's CPU forward
// pass collects equals llama-imatrix's on the same model file, text and chunks
// (tests/data/*-imatrix.gguf, written by llama-imatrix -f imatrix_text.txt -c 128
// --chunks 2), and the file kiln writes loads back.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "kiln/format/gguf.h"
#include "kiln/format/imatrix.h"
#include "kiln/imatrix.h"
#include "kiln/perplexity.h"
#include "kiln/tokenizer.h"
#include "test_util.h"

namespace {

std::vector<float> f32_of(const kiln::GgufTensor& t) {  // (n_elements)
    std::vector<float> v(size_t(t.n_elements()));
    std::memcpy(v.data(), t.data, v.size() * sizeof(float));
    return v;
}

// Every column's sum over the experts (rows of `sums`, `cols` long each).
std::vector<double> over_experts(const std::vector<float>& sums, size_t cols) {
    std::vector<double> s(cols, 0.0);
    for (size_t i = 0; i < sums.size(); ++i) s[i % cols] += sums[i];
    return s;
}

// kiln's statistics of `model` (written to `out`) against llama-imatrix's file `ref`.
void check_against_llama(const std::string& model_file, const std::string& ref_file) {
    const std::string path = kiln::test::model_path(model_file);
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE_MESSAGE(model.is_ok(), model.message());
    const auto tokens = model.value()->tokenizer().encode(kiln::test::read_all(kiln::test::data_path("imatrix_text.txt")), true, false);
    kiln::PerplexityOptions po;
    po.n_ctx = 128, po.max_chunks = 2;
    kiln::SessionOptions so;
    so.n_ctx = so.n_batch = po.n_ctx;
    so.n_threads = 2;
    auto session = kiln::Session::create(model.value(), so);
    REQUIRE_MESSAGE(session.is_ok(), session.message());
    kiln::ImatrixCollector im;
    REQUIRE(session.value()->set_activation_observer(&im).is_ok());
    auto r = kiln::compute_perplexity(*session.value(), tokens, po, [&](const kiln::ScoredChunk&) { return im.status(); });
    REQUIRE_MESSAGE(r.is_ok(), r.message());
    const std::string out = (std::filesystem::temp_directory_path() / ("kiln-imatrix-" + std::filesystem::path(model_file).filename().string())).string();
    const kiln::Status saved = im.save(out, {"imatrix_text.txt"}, po.n_ctx);
    REQUIRE_MESSAGE(saved.is_ok(), saved.message());

    auto ours = kiln::GgufFile::open(out), theirs = kiln::GgufFile::open(kiln::test::data_path(ref_file));
    REQUIRE_MESSAGE(ours.is_ok(), ours.message());
    REQUIRE_MESSAGE(theirs.is_ok(), theirs.message());
    CHECK(ours->get_int("imatrix.chunk_count", -1).value() == theirs->get_int("imatrix.chunk_count", -2).value());
    CHECK(ours->get_int("imatrix.chunk_size", -1).value() == 128);
    std::set<std::string> names_ours, names_theirs;
    for (const auto& t : ours->tensors()) names_ours.insert(t.name);
    for (const auto& t : theirs->tensors()) names_theirs.insert(t.name);
    CHECK(names_ours == names_theirs);

    // Both runs compute the same activations up to rounding (kiln's kernels and ggml's
    // round differently: measured up to 0.35% of a column's sum on SmolLM2 F16 and the
    // shared-expert model after their 30 / 2 layers), so each column's sum of squares agrees
    // within 2% of itself plus the tensor's mean column (columns near zero carry no weight).
    // MoE: near-tied router scores send a few (token, expert) pairs elsewhere (measured
    // 1-2 of 128 per expert on the random-weight models), so the expert counts agree
    // within 2 + 2%, their total exactly, and the sums summed over the experts (for gate
    // and up the same tokens' inputs whatever the routing) as above; down's inputs depend
    // on the expert, and a moved token changes them: within 10%.
    for (const auto& t : theirs->tensors()) {
        if (!t.name.ends_with(".in_sum2")) continue;
        const std::string w = t.name.substr(0, t.name.size() - 8);
        const kiln::GgufTensor* mine = ours->find_tensor(t.name);
        const kiln::GgufTensor *c_mine = ours->find_tensor(w + ".counts"), *c_theirs = theirs->find_tensor(w + ".counts");
        REQUIRE_MESSAGE(mine, t.name);
        REQUIRE(c_mine);
        REQUIRE(c_theirs);
        REQUIRE(mine->ne[0] == t.ne[0]);
        REQUIRE(mine->ne[1] == t.ne[1]);
        const auto cm = f32_of(*c_mine), ct = f32_of(*c_theirs);
        REQUIRE(cm.size() == ct.size());
        double total_m = 0, total_t = 0;
        for (size_t e = 0; e < cm.size(); ++e) {
            total_m += cm[e], total_t += ct[e];
            if (cm.size() == 1) CHECK_MESSAGE(cm[e] == ct[e], w);
            else CHECK_MESSAGE(std::fabs(cm[e] - ct[e]) <= 2 + 0.02 * ct[e], w << " expert " << e << ": " << cm[e] << " vs " << ct[e]);
        }
        CHECK_MESSAGE(total_m == total_t, w);
        const size_t cols = size_t(t.ne[0]);
        const auto sm = over_experts(f32_of(*mine), cols), st = over_experts(f32_of(t), cols);
        double mean = 0;
        for (double v : st) mean += v / double(cols);
        const double tol = w.find("ffn_down_exps") != std::string::npos ? 0.10 : 0.02;
        double worst = 0;
        for (size_t j = 0; j < cols; ++j) worst = std::max(worst, std::fabs(sm[j] - st[j]) / (std::fabs(st[j]) + mean));
        CHECK_MESSAGE(worst <= tol, w << ": a column off by " << worst << " of its sum plus the mean");
    }

    // What kiln wrote loads as kiln-quantize reads it: sums over counts.
    auto loaded = kiln::load_imatrix(out);
    REQUIRE_MESSAGE(loaded.is_ok(), loaded.message());
    CHECK(loaded->datasets == std::vector<std::string>{"imatrix_text.txt"});
    CHECK(loaded->chunk_count == 2);
    const auto& [name, st] = *im.stats().begin();
    const std::vector<float>* v = loaded->find(name);
    REQUIRE(v);
    REQUIRE(v->size() == st.sums.size());
    const size_t cols = st.sums.size() / st.counts.size();
    for (size_t i = 0; i < v->size(); ++i)
        if (st.counts[i / cols] > 0) CHECK((*v)[i] == doctest::Approx(st.sums[i] / float(st.counts[i / cols])).epsilon(1e-6));
    std::filesystem::remove(out);
}

}  // namespace

TEST_CASE("imatrix: SmolLM2's importance matrix is llama-imatrix's") { check_against_llama("synth/smollm2-f16.gguf", "smollm2-imatrix.gguf"); }

TEST_CASE("imatrix: MoE experts (qwen3moe; qwen2moe's shared expert and its gate) as llama-imatrix counts them") {
    check_against_llama("synth/synth-qwen3moe.gguf", "synth-qwen3moe-imatrix.gguf");
    check_against_llama("synth/synth-qwen2moe.gguf", "synth-qwen2moe-imatrix.gguf");
}

TEST_CASE("imatrix: what the collector refuses") {
    // Dense products of fewer than 16 tokens are left out, as llama-imatrix's scheduler does.
    kiln::ImatrixCollector im;
    const std::vector<float> x(size_t(8) * 4, 1.0f);  // (8, 4)
    kiln::TensorView w;
    w.ne[0] = 4, w.ne[1] = 3, w.name = "blk.0.attn_q.weight";
    im.matmul_input(w, -1, x.data(), 8);
    CHECK(im.stats().empty());
    const std::vector<float> x16(size_t(16) * 4, 0.5f);  // (16, 4)
    im.matmul_input(w, -1, x16.data(), 16);
    REQUIRE(im.stats().count("blk.0.attn_q.weight") == 1);
    CHECK(im.stats().at("blk.0.attn_q.weight").sums == std::vector<float>(4, 4.0f));
    // The output matrix only with process_output; a weight whose shape changes, or a
    // non-finite activation, is an error naming it; saving then fails.
    kiln::TensorView out = w;
    out.name = "output.weight";
    im.matmul_input(out, -1, x16.data(), 16);
    CHECK(im.stats().size() == 1);
    kiln::TensorView wide = w;
    wide.ne[0] = 2;
    im.matmul_input(wide, -1, x16.data(), 16);
    CHECK(kiln::test::message_lacks(im.status(), "blk.0.attn_q.weight changed shape") == "");
    CHECK_FALSE(im.save((std::filesystem::temp_directory_path() / "kiln-imatrix-bad.gguf").string(), {}, 128).is_ok());
    kiln::ImatrixCollector nan_im;
    std::vector<float> bad = x16;
    bad[5] = NAN;
    nan_im.matmul_input(w, -1, bad.data(), 16);
    CHECK(kiln::test::message_lacks(nan_im.status(), "non-finite activations into blk.0.attn_q.weight") == "");
    kiln::ImatrixCollector empty;
    CHECK(kiln::test::message_lacks(empty.save("/nonexistent/x.gguf", {}, 128), "nothing collected") == "");
}
