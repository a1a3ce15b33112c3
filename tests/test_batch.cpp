// Batches of many sequences (Session::decode): the paged KV cache's bookkeeping, and on
// real models each sequence's greedy tokens and logits in a mixed batch against the same
// sequence run alone.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "kiln/session.h"
#include "kiln/tokenizer.h"
#include "cpu/kv_cache.h"
#include "test_util.h"

namespace {

int argmax(const float* x, int n) { return int(std::max_element(x, x + n) - x); }

// Greedy tokens of a prompt run alone in a fresh session (fed in the given pieces), and
// each step's logits.
struct Alone {
    std::vector<int32_t> tokens;
    std::vector<std::vector<float>> logits;  // (steps, n_vocab)
};
Alone run_alone(const std::shared_ptr<const kiln::Model>& m, const char* isa, const std::vector<std::vector<int32_t>>& pieces, int steps) {
    kiln::SessionOptions so;
    so.n_threads = 2;
    so.n_ctx = 512;
    so.isa = isa;
    auto s = kiln::Session::create(m, so);
    REQUIRE(s.is_ok());
    const int V = m->config().n_vocab;
    Alone a;
    for (const auto& piece : pieces) REQUIRE(s.value()->forward(piece).is_ok());
    for (int i = 0; i < steps; ++i) {
        const float* l = s.value()->logits();
        a.logits.emplace_back(l, l + V);
        a.tokens.push_back(argmax(l, V));
        if (i + 1 < steps) REQUIRE(s.value()->forward(std::span<const int32_t>(&a.tokens.back(), 1)).is_ok());
    }
    return a;
}

}  // namespace

TEST_CASE("batch: KV pages are shared on fork, copied on the first write, returned on truncate and remove") {
    kiln::KvPages p;
    p.reset(6, 3);
    const auto no_copy = [](int, int) { FAIL("unexpected page copy"); };
    p.append(0, 100, no_copy);  // 2 pages, the second partly filled
    CHECK(p.length(0) == 100);
    CHECK(p.free_pages() == 4);
    p.fork(0, 1, 70);  // shares both pages (70 is in the second)
    CHECK(p.free_pages() == 4);
    CHECK(p.pages(1)[0] == p.pages(0)[0]);
    CHECK(p.pages(1)[1] == p.pages(0)[1]);
    CHECK(p.pages_needed(1, 1) == 1);  // the shared partly filled page is copied before it is written
    std::vector<std::pair<int, int>> copies;
    p.append(1, 1, [&](int from, int to) { copies.push_back({from, to}); });
    REQUIRE(copies.size() == 1);
    CHECK(copies[0].first == p.pages(0)[1]);
    CHECK(copies[0].second == p.pages(1)[1]);
    CHECK(p.pages(1)[0] == p.pages(0)[0]);  // the full first page stays shared
    CHECK(p.free_pages() == 3);
    p.append(0, 28, no_copy);  // seq 0's second page is its own again: no copy, and a page boundary at 128
    CHECK(p.free_pages() == 3);
    CHECK(p.pages_needed(0, 1) == 1);
    p.truncate(1, 10);  // seq 1 drops its copy
    CHECK(p.free_pages() == 4);
    p.fork(1, 2, 5);  // a partly filled shared first page
    p.truncate(0, 0);  // seq 0 lets go of everything; page 0 is still held by 1 and 2
    CHECK(p.free_pages() == 5);
    CHECK(p.pages_needed(2, 1) == 1);
    p.truncate(1, 0);
    CHECK(p.pages_needed(2, 1) == 0);  // sole holder now: writes in place
    p.truncate(2, 0);
    CHECK(p.free_pages() == 6);
}

TEST_CASE("batch: bad batches are clear errors and change nothing") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    kiln::SessionOptions so;
    so.n_threads = 2;
    so.n_ctx = 128;  // two pages
    so.n_seq_max = 3;
    auto session = kiln::Session::create(model.value(), so);
    REQUIRE(session.is_ok());
    kiln::Session& s = *session.value();
    auto message = [&](const kiln::Batch& b) { return s.decode(b).message(); };
    kiln::Batch b;
    b.add(1, 3, 0, true);
    CHECK(message(b).find("sequence id 3 is outside [0, 3)") != std::string::npos);
    b.clear();
    b.add(1, 0, 0, false), b.add(2, 0, 2, true);
    CHECK(message(b).find("position 2, but sequence 0 continues at 1") != std::string::npos);
    b.clear();
    for (int i = 0; i < 70; ++i) b.add(5, 0, i, false);
    for (int i = 0; i < 70; ++i) b.add(5, 1, i, i == 69);
    CHECK(message(b).find("KV cache full") != std::string::npos);  // 2 + 2 pages needed
    CHECK(s.seq_length(0) == 0);
    CHECK(s.seq_length(1) == 0);
    CHECK(s.free_positions() == 128);
    CHECK_FALSE(s.seq_fork(0, 0).is_ok());
    CHECK_FALSE(s.seq_fork(0, 1, 5).is_ok());  // seq 0 holds nothing
    CHECK_FALSE(s.seq_truncate(2, 1).is_ok());
    CHECK(s.batch_logits(0) == nullptr);
}

namespace {

// Eight sequences of different lengths through one session: prefill and decode mixed in
// one batch, sequence 5 forked from sequence 0's prompt prefix (a shared, partly filled
// page that both then write), sequence 7 removed mid-way and its id reused by a new
// prompt. Each sequence's greedy tokens and logits (every bit) must be those it gets
// alone: a token's matmuls run through the kernel its own sequence's chunk picks (the row
// kernels up to 8 tokens, else the GEMM), and attention reads only its own sequence.
void check_eight_sequences(const std::string& file, const char* isa, bool repack = false) {
    const std::string path = kiln::test::model_path(file);
    if (!kiln::test::require_file(path)) return;
    kiln::LoadOptions lo;
    lo.repack = repack;  // the row-interleaved copies and their kernels
    auto loaded = kiln::Model::load(path, lo);
    REQUIRE(loaded.is_ok());
    std::shared_ptr<const kiln::Model> m = loaded.value();
    const int V = m->config().n_vocab;
    auto encode = [&](const std::string& text, bool add_special = true) { return m->tokenizer().encode(text, add_special, false); };
    const char* texts[] = {
        "The quick brown fox jumps over the lazy dog. Then the dog",
        "def fibonacci(n):",
        "In 1969, the first humans landed on the Moon. The mission was called",
        "Water boils at",
        "Once upon a time, in a small village at the edge of a great forest, there lived an old woodcutter and his",
        "",  // sequence 5: sequence 0's prompt prefix plus the suffix below
        "1, 2, 3, 4, 5,",
        "The capital of France is",
    };
    constexpr int kSeqs = 8, kSteps = 10;
    std::vector<std::vector<int32_t>> prompts;
    for (const char* t : texts) prompts.push_back(encode(t));
    const int fork_at = int(prompts[0].size()) - 3;  // inside sequence 0's first page
    prompts[5].assign(prompts[0].begin(), prompts[0].begin() + fork_at);
    for (int32_t t : encode(" a cat, who", false)) prompts[5].push_back(t);
    const std::vector<int32_t> reused_prompt = encode("Photosynthesis turns sunlight into");

    // When each sequence starts (step), and seq 7's removal and the reuse of its id.
    const int start[kSeqs] = {0, 0, 0, 0, 2, 3, 2, 0};
    constexpr int kRemove7 = 4, kReuse7 = 5;

    std::vector<Alone> alone;
    for (int i = 0; i < kSeqs; ++i) {
        std::vector<std::vector<int32_t>> pieces = {prompts[size_t(i)]};
        if (i == 5)  // alone, the shared prefix and the suffix are two forwards, as in the batch
            pieces = {std::vector<int32_t>(prompts[5].begin(), prompts[5].begin() + fork_at), std::vector<int32_t>(prompts[5].begin() + fork_at, prompts[5].end())};
        alone.push_back(run_alone(m, isa, pieces, kSteps));
    }
    const Alone alone_reused = run_alone(m, isa, {reused_prompt}, kSteps);

    kiln::SessionOptions so;
    so.n_threads = 2;
    so.n_ctx = 1024;
    so.n_seq_max = kSeqs;
    so.isa = isa;
    auto session = kiln::Session::create(m, so);
    REQUIRE(session.is_ok());
    kiln::Session& s = *session.value();

    struct State {
        std::vector<int32_t> pending;  // tokens to feed next step
        std::vector<int32_t> got;      // greedy tokens so far
        const Alone* want = nullptr;
        bool active = false;
    };
    std::vector<State> st(kSeqs);
    int rows = 0, mixed_steps = 0, differ = 0;
    for (int step = 0; step < kReuse7 + kSteps; ++step) {
        for (int i = 0; i < kSeqs; ++i) {
            if (step != start[i] || i == 5) continue;
            st[size_t(i)] = {prompts[size_t(i)], {}, &alone[size_t(i)], true};
        }
        if (step == start[5]) {  // fork from sequence 0's prefix; only the suffix is fed
            REQUIRE(s.seq_fork(0, 5, fork_at).is_ok());
            CHECK(s.seq_length(5) == fork_at);
            st[5] = {std::vector<int32_t>(prompts[5].begin() + fork_at, prompts[5].end()), {}, &alone[5], true};
        }
        if (step == kRemove7) {
            const int free_before = s.free_positions();
            REQUIRE(s.seq_remove(7).is_ok());
            CHECK(s.seq_length(7) == 0);
            CHECK(s.free_positions() > free_before);  // its page went back to the pool
            st[7].active = false;
        }
        if (step == kReuse7) st[7] = {reused_prompt, {}, &alone_reused, true};

        kiln::Batch b;
        std::vector<int> last_of(kSeqs, -1);  // (kSeqs) batch index of each sequence's last token
        for (int i = 0; i < kSeqs; ++i) {
            State& x = st[size_t(i)];
            if (!x.active || int(x.got.size()) == kSteps) continue;
            for (size_t t = 0; t < x.pending.size(); ++t) b.add(x.pending[t], i, s.seq_length(i) + int(t), t + 1 == x.pending.size());
            last_of[size_t(i)] = b.size() - 1;
        }
        if (b.size() == 0) break;
        REQUIRE(s.decode(b).is_ok());
        const bool mixed = std::any_of(st.begin(), st.end(), [&](const State& x) { return x.active && x.pending.size() > 1; }) && b.size() > 8;
        mixed_steps += mixed;
        for (int i = 0; i < kSeqs; ++i) {
            if (last_of[size_t(i)] < 0) continue;
            State& x = st[size_t(i)];
            const float* l = s.batch_logits(last_of[size_t(i)]);
            REQUIRE(l != nullptr);
            const std::vector<float>& want = x.want->logits[x.got.size()];
            differ += std::memcmp(l, want.data(), sizeof(float) * size_t(V)) != 0;
            ++rows;
            x.got.push_back(argmax(l, V));
            x.pending = {x.got.back()};
            if (i == 7 && step < kRemove7) CHECK(x.got.back() == x.want->tokens[x.got.size() - 1]);
        }
    }
    for (int i = 0; i < kSeqs; ++i) {
        CAPTURE(i);
        CHECK(st[size_t(i)].got == st[size_t(i)].want->tokens);
    }
    CHECK(mixed_steps >= 3);  // prefill and decode did share batches
    CHECK(differ == 0);
    MESSAGE(file << " [" << std::string(isa ? isa : "best ISA") << std::string(repack ? ", repack" : "") << "]: " << rows - differ << " of " << rows << " logits rows bit-identical to the sequence's alone");
}

}  // namespace

TEST_CASE("batch: eight sequences in one session (mixed prefill and decode, a fork, a removal) each get their tokens alone (SmolLM2)") {
    for (kiln::cpu::Isa isa : kiln::cpu::available_isas()) check_eight_sequences("SmolLM2-135M-Instruct.Q4_1.gguf", kiln::cpu::isa_name(isa));
}

TEST_CASE("batch: eight sequences in one session each get their tokens alone (Gemma 3: sliding-window layers and a local RoPE base)") {
    check_eight_sequences("gemma-3-270m-q4_k_m.gguf", nullptr);
}

TEST_CASE("batch: eight sequences in one session each get their tokens alone (Qwen2.5-Coder-0.5B, repacked weights)") {
    check_eight_sequences("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", nullptr, true);
}
