// kiln::Engine: continuous batching and the prefix cache (the library under kiln-server).
// A request's reply is the same alone or beside others, with or without a cache hit; bad
// requests and a full queue are refused; cancelling frees the sequence.
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "kiln/engine.h"
#include "kiln/tokenizer.h"
#include "test_util.h"

namespace {

std::shared_ptr<const kiln::Model> smollm2() {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return nullptr;
    auto m = kiln::Model::load(path);
    REQUIRE(m.is_ok());
    return m.value();
}

kiln::EngineOptions small_engine(int n_parallel) {
    kiln::EngineOptions o;
    o.n_parallel = n_parallel;
    o.n_ctx_per_seq = 512;
    o.step_tokens = 96;  // prompts of 100+ tokens take several steps beside the decoding ones
    o.session.n_threads = 2;
    return o;
}

struct Reply {
    std::vector<int32_t> tokens;
    std::string text;
    kiln::EngineEvent last;
};

Reply collect(kiln::RequestHandle& h) {
    Reply r;
    for (kiln::EngineEvent e; h.next(&e);) {
        r.text += e.text;
        if (e.done) {
            r.last = e;
            break;
        }
        r.tokens.push_back(e.token);
    }
    return r;
}

// Requests of mixed lengths: some share a 170-token system text (prefix cache hits), some
// have stop strings; greedy, so the replies are decided.
std::vector<kiln::EngineRequest> mixed_requests(const kiln::Tokenizer& tok) {
    std::string system;
    for (int i = 0; i < 10; ++i) system += "The museum opens at nine, closes at six, and is free on Sundays for every visitor. ";
    const char* questions[] = {"When does it open?", "Is it free?", "Write a poem about the sea.", "List three colours:", "Once upon a time",
                               "The capital of France is", "def fibonacci(n):", "Translate 'cat' to French:"};
    std::vector<kiln::EngineRequest> out;
    for (int i = 0; i < 8; ++i) {
        kiln::EngineRequest r;
        const std::string text = (i % 2 == 0 ? system : std::string()) + questions[i];
        r.prompt = tok.encode(text, true, false);
        r.sampling.temperature = 0;
        r.max_tokens = 6 + 5 * i;
        r.ignore_eos = i % 3 == 0;
        if (i == 3) r.stop = {","};
        out.push_back(r);
    }
    return out;
}

}  // namespace

TEST_CASE("engine: eight concurrent requests give each one's reply alone; cache hits change nothing") {
    auto model = smollm2();
    if (!model) return;
    const auto requests = mixed_requests(model->tokenizer());
    // Alone: one engine, one request at a time, no prefix cache.
    std::vector<Reply> alone;
    {
        auto e = kiln::Engine::create(model, small_engine(1));
        REQUIRE(e.is_ok());
        for (auto r : requests) {
            r.cache_prompt = false;
            auto h = e.value()->submit(r);
            REQUIRE(h.is_ok());
            alone.push_back(collect(*h.value()));
            CHECK(alone.back().last.n_cached == 0);
        }
    }
    // Together: four slots, all eight submitted at once (four wait), twice over so the
    // second round reuses the cached prefixes of the first.
    auto e = kiln::Engine::create(model, small_engine(4));
    REQUIRE(e.is_ok());
    for (int round = 0; round < 2; ++round) {
        std::vector<std::shared_ptr<kiln::RequestHandle>> handles;
        for (const auto& r : requests) {
            auto h = e.value()->submit(r);
            REQUIRE(h.is_ok());
            handles.push_back(h.value());
        }
        for (size_t i = 0; i < handles.size(); ++i) {
            const Reply got = collect(*handles[i]);
            CAPTURE(i);
            CAPTURE(round);
            CHECK(got.tokens == alone[i].tokens);
            CHECK(got.text == alone[i].text);
            CHECK(got.last.stop == alone[i].last.stop);
            CHECK(got.last.n_generated == int(got.tokens.size()));
            CHECK(got.last.n_prompt == int(requests[i].prompt.size()));
            CHECK(got.last.n_cached % kiln::kKvPagePositions == 0);
            // Round 0: the system text's pages from whichever request computed them first;
            // round 1: each prompt's own whole pages from round 0.
            if (round == 1) CHECK(got.last.n_cached == (got.last.n_prompt - 1) / kiln::kKvPagePositions * kiln::kKvPagePositions);
        }
    }
    CHECK(alone[3].last.stop == kiln::StopReason::StopString);
    CHECK(alone[3].text.find(',') == std::string::npos);
    const kiln::EngineMetrics m = e.value()->metrics();
    CHECK(m.requests == 16);
    CHECK(m.requests_finished == 16);
    CHECK(m.prefix_cache_hits >= 4);
    CHECK(m.running == 0);
    CHECK(m.queued == 0);
    CHECK(m.cached_prefixes > 0);
}

TEST_CASE("engine: the engine's first reply equals generate() on a one-chunk prompt") {
    auto model = smollm2();
    if (!model) return;
    kiln::EngineRequest r;
    r.prompt = model->tokenizer().encode("The capital of France is Paris. The capital of Germany is", true, false);
    r.sampling.temperature = 0;
    r.max_tokens = 16;
    r.ignore_eos = true;
    kiln::SessionOptions so;
    so.n_threads = 2;
    so.n_ctx = 256;
    auto s = kiln::Session::create(model, so);
    REQUIRE(s.is_ok());
    kiln::Sampler greedy({.temperature = 0}, model->config().n_vocab);
    kiln::GenerateOptions g;
    g.n_predict = 16;
    g.ignore_eos = true;
    auto want = kiln::generate(*s.value(), greedy, r.prompt, g);
    REQUIRE(want.is_ok());
    auto e = kiln::Engine::create(model, small_engine(2));
    REQUIRE(e.is_ok());
    auto h = e.value()->submit(r);
    REQUIRE(h.is_ok());
    const Reply got = collect(*h.value());
    CHECK(got.tokens == want->tokens);
    CHECK(got.text == want->text);
}

TEST_CASE("engine: bad requests, a full queue and cancellation") {
    auto model = smollm2();
    if (!model) return;
    kiln::EngineOptions o = small_engine(1);
    o.max_queue = 1;
    auto e = kiln::Engine::create(model, o);
    REQUIRE(e.is_ok());
    kiln::Engine& engine = *e.value();
    kiln::Refusal why;
    kiln::EngineRequest bad;
    CHECK(engine.submit(bad, &why).message().find("empty") != std::string::npos);
    CHECK(why == kiln::Refusal::Invalid);
    bad.prompt.assign(600, 1);
    CHECK(engine.submit(bad, &why).message().find("context per sequence") != std::string::npos);
    bad.prompt = {1, 2, 999999};
    CHECK(engine.submit(bad, &why).message().find("outside the vocabulary") != std::string::npos);
    bad.prompt = {1, 2, 3};
    bad.max_tokens = 510;
    CHECK(engine.submit(bad, &why).message().find("max_tokens") != std::string::npos);
    bad.max_tokens = 4;
    bad.sampling.top_p = 2;
    CHECK(engine.submit(bad, &why).message().find("SamplerParams::top_p") != std::string::npos);
    CHECK(why == kiln::Refusal::Invalid);
    bad.sampling = {};
    bad.sampling.top_k = 5;
    bad.n_logprobs = 21;
    CHECK_FALSE(engine.submit(bad, &why).is_ok());

    // One running (it never ends by itself), one queued, the third refused.
    kiln::EngineRequest endless;
    endless.prompt = model->tokenizer().encode("Count: one, two, three,", true, false);
    endless.sampling.temperature = 0;
    endless.ignore_eos = true;
    auto running = engine.submit(endless);
    REQUIRE(running.is_ok());
    kiln::EngineEvent first;
    REQUIRE(running.value()->next(&first, std::chrono::seconds(60)));  // it holds the slot now
    auto queued = engine.submit(endless);
    REQUIRE(queued.is_ok());
    CHECK_FALSE(engine.submit(endless, &why).is_ok());
    CHECK(why == kiln::Refusal::QueueFull);
    queued.value()->cancel();
    running.value()->cancel();
    const Reply a = collect(*running.value()), b = collect(*queued.value());
    CHECK(a.last.stop == kiln::StopReason::Cancelled);
    CHECK(b.last.stop == kiln::StopReason::Cancelled);
    CHECK(b.tokens.empty());
    const kiln::EngineMetrics m = engine.metrics();
    CHECK(m.requests_cancelled == 2);
    CHECK(m.requests_refused == 1);
    CHECK(m.running == 0);
    // The sequence came back: a new request runs, and after shutdown none is taken.
    endless.max_tokens = 3;
    auto again = engine.submit(endless);
    REQUIRE(again.is_ok());
    CHECK(collect(*again.value()).tokens.size() == 3);
    engine.shutdown();
    CHECK(engine.submit(endless, &why).message().find("shutting down") != std::string::npos);
    CHECK(why == kiln::Refusal::Stopping);
}

TEST_CASE("engine: prompt lookup and draft-model drafts leave every greedy reply unchanged") {
    auto model = smollm2();
    if (!model) return;
    // Prompts that repeat themselves, so that lookup finds drafts.
    std::vector<kiln::EngineRequest> requests;
    const char* texts[] = {"Repeat after me: the quick brown fox jumps over the lazy dog. The quick brown fox",
                           "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3, 4, 5,", "def add(a, b):\n    return a + b\n\ndef add(a, b):\n",
                           "Roses are red, violets are blue. Roses are red,"};
    for (const char* t : texts) {
        kiln::EngineRequest r;
        r.prompt = model->tokenizer().encode(t, true, false);
        r.sampling.temperature = 0;
        r.max_tokens = 40;
        r.n_logprobs = 2;
        requests.push_back(r);
    }
    auto run_all = [&](int lookup, kiln::EngineMetrics* m, std::shared_ptr<const kiln::Model> draft = nullptr) {
        kiln::EngineOptions o = small_engine(4);
        o.lookup_ngram = lookup;
        o.draft_model = draft;
        auto e = kiln::Engine::create(model, o);
        REQUIRE(e.is_ok());
        std::vector<std::shared_ptr<kiln::RequestHandle>> handles;
        for (const auto& r : requests) handles.push_back(e.value()->submit(r).value());
        std::vector<Reply> out;
        for (auto& h : handles) out.push_back(collect(*h));
        *m = e.value()->metrics();
        return out;
    };
    kiln::EngineMetrics plain_m, spec_m;
    const auto plain = run_all(0, &plain_m), spec = run_all(3, &spec_m);
    for (size_t i = 0; i < requests.size(); ++i) {
        CAPTURE(i);
        CHECK(spec[i].tokens == plain[i].tokens);
        CHECK(spec[i].text == plain[i].text);
        CHECK(spec[i].last.n_generated == plain[i].last.n_generated);
    }
    CHECK(plain_m.spec_drafted == 0);
    CHECK(spec_m.spec_drafted > 0);
    CHECK(spec_m.spec_accepted > 0);
    CHECK(spec_m.steps < plain_m.steps);  // accepted drafts save steps
    MESSAGE("lookup drafts: ", spec_m.spec_accepted, " of ", spec_m.spec_drafted, " accepted; steps ", spec_m.steps, " vs ", plain_m.steps);
    // A draft model (the same model here: its drafts are nearly always right) where lookup
    // has nothing; the draft sequences follow the target's through verification and the
    // prefix cache (a second round reuses the first's pages).
    kiln::EngineMetrics model_m;
    const auto drafted = run_all(0, &model_m, model);
    for (size_t i = 0; i < requests.size(); ++i) {
        CAPTURE(i);
        CHECK(drafted[i].tokens == plain[i].tokens);
    }
    CHECK(model_m.spec_drafted > 0);
    CHECK(model_m.spec_accepted >= model_m.spec_drafted * 8 / 10);
    CHECK(model_m.steps < plain_m.steps / 2);
    MESSAGE("draft model: ", model_m.spec_accepted, " of ", model_m.spec_drafted, " accepted; steps ", model_m.steps, " vs ", plain_m.steps);
    kiln::EngineOptions bad = small_engine(1);
    bad.draft_model = model;
    bad.draft_max = 9;
    CHECK(kiln::Engine::create(model, bad).message().find("EngineOptions::draft_max") != std::string::npos);
}

TEST_CASE("engine: a hybrid model (recurrent DeltaNet state) reuses a conversation's prefix where its state was kept, with unchanged replies") {
    const std::string path = kiln::test::model_path("synth/synth-qwen35.gguf");
    if (!kiln::test::require_file(path)) return;
    auto loaded = kiln::Model::load(path);
    REQUIRE(loaded.is_ok());
    std::shared_ptr<const kiln::Model> model = loaded.value();
    std::vector<int32_t> first;
    for (int i = 0; i < 40; ++i) first.push_back(int32_t(1000 + 7 * i));
    auto request = [](std::vector<int32_t> prompt, bool cache) {
        kiln::EngineRequest r;
        r.prompt = std::move(prompt);
        r.sampling.temperature = 0;
        r.max_tokens = 8;
        r.ignore_eos = true;
        r.cache_prompt = cache;
        return r;
    };
    auto e = kiln::Engine::create(model, small_engine(2));
    REQUIRE(e.is_ok());
    auto h1 = e.value()->submit(request(first, true));
    REQUIRE(h1.is_ok());
    const Reply r1 = collect(*h1.value());
    REQUIRE(r1.tokens.size() == 8);
    // The next turn: the whole first exchange, then more; and a prompt sharing only the
    // first 10 tokens (the state there is long gone: nothing reused).
    std::vector<int32_t> second = first;
    second.insert(second.end(), r1.tokens.begin(), r1.tokens.end());
    for (int i = 0; i < 5; ++i) second.push_back(int32_t(3000 + i));
    std::vector<int32_t> third(first.begin(), first.begin() + 10);
    for (int i = 0; i < 20; ++i) third.push_back(int32_t(5000 + i));
    for (const auto& [prompt, reused] : {std::pair{second, true}, std::pair{third, false}}) {
        auto fresh = kiln::Engine::create(model, small_engine(1));
        REQUIRE(fresh.is_ok());
        auto ha = fresh.value()->submit(request(prompt, false));
        REQUIRE(ha.is_ok());
        const Reply alone = collect(*ha.value());
        auto hb = e.value()->submit(request(prompt, true));
        REQUIRE(hb.is_ok());
        const Reply got = collect(*hb.value());
        CAPTURE(reused);
        CHECK(got.tokens == alone.tokens);
        if (reused) CHECK(got.last.n_cached >= int(first.size()));
        else CHECK(got.last.n_cached == 0);
    }
}
