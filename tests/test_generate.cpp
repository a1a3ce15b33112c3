// kiln::generate(): the one decode loop (tools/generate, tests/consumer): stop conditions,
// streaming, stop strings held back until they are decided, cancellation of a prefill.
#include <atomic>
#include <string>
#include <vector>

#include "kiln/generate.h"
#include "kiln/tokenizer.h"
#include "test_util.h"

namespace {

struct Fixture {
    std::shared_ptr<const kiln::Model> model;
    std::unique_ptr<kiln::Session> session;
    std::vector<int32_t> prompt;
    bool ok = false;
    explicit Fixture(int n_batch = 512) {
        const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
        if (!kiln::test::require_file(path)) return;
        auto m = kiln::Model::load(path);
        REQUIRE(m.is_ok());
        model = m.value();
        kiln::SessionOptions so;
        so.n_threads = 2;
        so.n_ctx = 256;
        so.n_batch = n_batch;
        auto s = kiln::Session::create(model, so);
        REQUIRE(s.is_ok());
        session = std::move(s.value());
        prompt = model->tokenizer().encode("The capital of France is Paris. The capital of Germany is", true, false);
        ok = true;
    }
    kiln::Sampler greedy() const { return kiln::Sampler({.temperature = 0}, model->config().n_vocab); }
};

}  // namespace

TEST_CASE("generate: greedy tokens equal a hand-written loop; streaming gives the same text") {
    Fixture f;
    if (!f.ok) return;
    std::vector<int32_t> want;  // the loop generate() replaces
    REQUIRE(f.session->forward(f.prompt).is_ok());
    for (int i = 0; i < 12; ++i) {
        const float* l = f.session->logits();
        want.push_back(int32_t(std::max_element(l, l + f.model->config().n_vocab) - l));
        REQUIRE(f.session->forward(std::span<const int32_t>(&want.back(), 1)).is_ok());
    }
    REQUIRE(f.session->truncate(0).is_ok());
    kiln::Sampler s = f.greedy();
    std::string streamed;
    std::vector<int32_t> seen;
    kiln::GenerateOptions g;
    g.n_predict = 12;
    g.ignore_eos = true;
    g.on_text = [&](std::string_view t) { return streamed += t, true; };
    g.on_token = [&](int32_t t) { return seen.push_back(t), true; };
    auto r = kiln::generate(*f.session, s, f.prompt, g);
    REQUIRE(r.is_ok());
    CHECK(r->tokens == want);
    CHECK(seen == want);
    CHECK(streamed == r->text);
    CHECK(r->stop == kiln::StopReason::Length);
    CHECK(r->n_prompt == int(f.prompt.size()));
    CHECK(f.session->n_past() == int(f.prompt.size()) + 11);  // the last token is sampled, not fed
}

TEST_CASE("generate: a stop string ends generation, is not kept, and is never streamed") {
    Fixture f;
    if (!f.ok) return;
    kiln::Sampler s0 = f.greedy();
    auto free_run = kiln::generate(*f.session, s0, f.prompt, {.n_predict = 24, .ignore_eos = true});
    REQUIRE(free_run.is_ok());
    const std::string& text = free_run->text;
    REQUIRE(text.size() > 12);
    // A stop string from the middle of the free-running text, spanning tokens' edges.
    const std::string stop = text.substr(text.size() / 2, 5);
    const std::string want = text.substr(0, text.find(stop));
    REQUIRE(f.session->truncate(0).is_ok());
    kiln::Sampler s1 = f.greedy();
    std::string streamed;
    kiln::GenerateOptions g{.n_predict = 24, .ignore_eos = true, .stop = {"never appears", stop}};
    g.on_text = [&](std::string_view t) { return streamed += t, true; };
    auto r = kiln::generate(*f.session, s1, f.prompt, g);
    REQUIRE(r.is_ok());
    CHECK(r->stop == kiln::StopReason::StopString);
    CHECK(r->text == want);
    CHECK(streamed == want);
    CHECK(r->tokens.size() < free_run->tokens.size());
    kiln::Sampler s2 = f.greedy();
    CHECK_FALSE(kiln::generate(*f.session, s2, f.prompt, {.stop = {""}}).is_ok());
}

TEST_CASE("generate: a callback stops it; cancel stops a long prefill between chunks and leaves the session as it was") {
    Fixture f(/*n_batch=*/4);
    if (!f.ok) return;
    kiln::Sampler s = f.greedy();
    int calls = 0;
    kiln::GenerateOptions g{.n_predict = 20, .ignore_eos = true};
    g.on_token = [&](int32_t) { return ++calls < 3; };
    auto r = kiln::generate(*f.session, s, f.prompt, g);
    REQUIRE(r.is_ok());
    CHECK(r->stop == kiln::StopReason::Callback);
    CHECK(r->tokens.size() == 3);

    REQUIRE(f.session->truncate(0).is_ok());
    std::atomic<bool> cancel{true};  // already set: the first chunk is not even run
    kiln::GenerateOptions c{.n_predict = 5};
    c.cancel = &cancel;
    auto rc = kiln::generate(*f.session, s, f.prompt, c);
    REQUIRE(rc.is_ok());
    CHECK(rc->stop == kiln::StopReason::Cancelled);
    CHECK(rc->tokens.empty());
    CHECK(f.session->n_past() == 0);
    // Set by the streaming callback of the first token: the decode stops there.
    cancel = false;
    kiln::GenerateOptions c2{.n_predict = 10, .ignore_eos = true};
    c2.cancel = &cancel;
    c2.on_token = [&](int32_t) { return cancel = true, true; };
    auto rc2 = kiln::generate(*f.session, s, f.prompt, c2);
    REQUIRE(rc2.is_ok());
    CHECK(rc2->stop == kiln::StopReason::Cancelled);
    CHECK(rc2->tokens.size() == 1);
    // The session's own flag: a prefill of many chunks stops and is undone.
    std::atomic<bool> stop_now{true};
    REQUIRE(f.session->truncate(0).is_ok());
    f.session->set_cancel(&stop_now);
    const kiln::Status st = f.session->forward(f.prompt);
    CHECK(st.message().find("cancelled") != std::string::npos);
    CHECK(f.session->n_past() == 0);
    f.session->set_cancel(nullptr);
    CHECK(f.session->forward(f.prompt).is_ok());
}
