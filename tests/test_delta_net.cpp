// Hybrid linear-attention models (Qwen3.5): the delta-rule kernel on every ISA against the
// scalar reference, and the recurrent state's bookkeeping on a synthetic model: rolling
// back to a kept length gives the bits a fresh run gives, forks continue as their source,
// batches of sequences do not mix, out-of-range truncation fails cleanly, and speculative
// decoding with rejections equals plain greedy decoding.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/kernels.h"
#include "kiln/kiln.h"
#include "kiln/speculative.h"
#include "ref/delta_net.h"
#include "test_drafters.h"
#include "test_util.h"

using kiln::test::gaussian;

namespace {

// x / |x|, as the model feeds q and k to the rule.
std::vector<float> unit(size_t n, uint32_t seed) {
    auto x = gaussian(n, seed);
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    for (float& v : x) v = float(v / std::sqrt(ss));
    return x;
}

}  // namespace

TEST_CASE("delta_net: the delta-rule kernel matches the scalar reference on every ISA, token after token, in place or not") {
    for (kiln::cpu::Isa isa : kiln::cpu::available_isas()) {
        CAPTURE(std::string(kiln::cpu::isa_name(isa)));
        const kiln::cpu::KernelTable& kt = *kiln::cpu::table_for(isa);
        for (int64_t S : {16, 33, 128}) {  // 33: an odd row count and a vector tail
            CAPTURE(S);
            const size_t SS = size_t(S * S);
            const auto s0 = gaussian(SS, 7, 0.3f);
            std::vector<float> ref = s0, out_of_place(SS, NAN), in_place = s0, prev = s0;
            for (int t = 0; t < 6; ++t) {
                CAPTURE(t);
                const auto q = unit(size_t(S), 100 + t), k = unit(size_t(S), 200 + t), v = gaussian(size_t(S), 300 + t);
                const float decay = 0.5f + 0.08f * float(t), beta = 0.2f + 0.1f * float(t), scale = 1.0f / std::sqrt(float(S));
                std::vector<float> o_ref(size_t(S), NAN), o1(size_t(S), NAN), o2(size_t(S), NAN);
                kiln::ref::delta_rule(ref.data(), ref.data(), q.data(), k.data(), v.data(), decay, beta, scale, o_ref.data(), S);
                std::fill(out_of_place.begin(), out_of_place.end(), NAN);
                kt.delta_rule(prev.data(), out_of_place.data(), q.data(), k.data(), v.data(), decay, beta, scale, o1.data(), S);
                kt.delta_rule(in_place.data(), in_place.data(), q.data(), k.data(), v.data(), decay, beta, scale, o2.data(), S);
                // Tolerance from the data: each value is a short sum of products (the state's
                // magnitude times a few float roundings per token, compounding over t).
                double mag = 0;
                for (float x : ref) mag = std::max(mag, double(std::fabs(x)));
                const double tol_s = 8.0 * (t + 1) * 1.2e-7 * (mag + 1) * std::sqrt(double(S));
                int bad_s = 0, bad_o = 0;
                for (size_t i = 0; i < SS; ++i) {
                    bad_s += !(std::fabs(out_of_place[i] - ref[i]) <= tol_s);
                    bad_s += in_place[i] != out_of_place[i];  // aliasing changes nothing
                }
                for (int64_t j = 0; j < S; ++j) {
                    bad_o += !(std::fabs(o1[size_t(j)] - o_ref[size_t(j)]) <= tol_s * std::sqrt(double(S)) * scale + 1e-7);
                    bad_o += o1[size_t(j)] != o2[size_t(j)];
                }
                CHECK(bad_s == 0);
                CHECK(bad_o == 0);
                prev = out_of_place;
            }
        }
    }
}

TEST_CASE("delta_net: the scalar conv1d reference is the causal convolution it says (the test can fail)") {
    const int64_t n = 5, C = 3, K = 4;
    const auto window = gaussian(size_t((K - 1) * C), 1), x = gaussian(size_t(n * C), 2), w = gaussian(size_t(C * K), 3);
    std::vector<float> y(size_t(n * C));
    kiln::ref::conv1d_silu(window.data(), x.data(), w.data(), y.data(), n, C, K, 0, C);
    // token 0, channel 1: the window's three rows, then x's first
    const float sum = w[4] * window[1] + w[5] * window[4] + w[6] * window[7] + w[7] * x[1];
    CHECK(std::fabs(y[1] - sum / (1 + std::exp(-sum))) < 1e-6);
    // token 4, channel 2: x's rows 1..4 only
    const float s4 = w[8] * x[5] + w[9] * x[8] + w[10] * x[11] + w[11] * x[14];
    CHECK(std::fabs(y[14] - s4 / (1 + std::exp(-s4))) < 1e-6);
}

namespace {

std::shared_ptr<const kiln::Model> load_hybrid(const char* name) {
    const std::string path = kiln::test::model_path(std::string("synth/") + name);
    if (!kiln::test::require_file(path)) return nullptr;
    auto m = kiln::Model::load(path);
    REQUIRE_MESSAGE(m.is_ok(), m.message());
    return m.value();
}

std::unique_ptr<kiln::Session> hybrid_session(std::shared_ptr<const kiln::Model> m, int n_seq = 1, int rollback = 16) {
    kiln::SessionOptions so;
    so.n_ctx = 256;
    so.n_threads = 2;
    so.n_seq_max = n_seq;
    so.recurrent_rollback = rollback;
    auto s = kiln::Session::create(std::move(m), so);
    REQUIRE_MESSAGE(s.is_ok(), s.message());
    return std::move(s.value());
}

std::vector<float> row(const float* l, int n) { return std::vector<float>(l, l + n); }

}  // namespace

TEST_CASE("delta_net: truncating back to a kept length, or forking there, continues with a fresh run's bits") {
    for (const char* file : {"synth-qwen35.gguf", "synth-qwen35moe.gguf"}) {
        CAPTURE(file);
        auto m = load_hybrid(file);
        if (!m) continue;
        const int nv = m->config().n_vocab;
        std::vector<int32_t> prompt, tail;
        for (int i = 0; i < 20; ++i) prompt.push_back(int32_t(100 + 37 * i));
        for (int i = 0; i < 6; ++i) tail.push_back(int32_t(900 + 11 * i));
        // Fresh: the prompt, then tail[0], tail[1] one at a time, then tail[5] as the third.
        auto fresh = hybrid_session(m);
        REQUIRE(fresh->forward(prompt).is_ok());
        REQUIRE(fresh->forward(std::span<const int32_t>(&tail[0], 2)).is_ok());
        REQUIRE(fresh->forward(std::span<const int32_t>(&tail[5], 1)).is_ok());
        const auto want = row(fresh->logits(), nv);
        // Drafted: the prompt, the six tail tokens in one verification, back to prompt + 2.
        auto s = hybrid_session(m, 2);
        REQUIRE(s->forward(prompt).is_ok());
        REQUIRE(s->forward(tail, true).is_ok());
        REQUIRE(s->truncate(int(prompt.size()) + 2).is_ok());
        REQUIRE(s->seq_fork(0, 1).is_ok());
        REQUIRE(s->forward(std::span<const int32_t>(&tail[5], 1)).is_ok());
        CHECK(row(s->logits(), nv) == want);
        // The fork (sequence 1, taken at prompt + 2) continues the same way.
        kiln::Batch b;
        b.add(tail[5], 1, int(prompt.size()) + 2, true);
        REQUIRE(s->decode(b).is_ok());
        CHECK(row(s->batch_logits(0), nv) == want);
        // Back to the end of the prompt: kept too (the verification wrote its states).
        REQUIRE(s->truncate(int(prompt.size())).is_ok());
        REQUIRE(s->forward(std::span<const int32_t>(&tail[0], 2)).is_ok());
        REQUIRE(s->forward(std::span<const int32_t>(&tail[5], 1)).is_ok());
        CHECK(row(s->logits(), nv) == want);
        // Truncating to 0 starts over.
        REQUIRE(s->truncate(0).is_ok());
        REQUIRE(s->forward(prompt).is_ok());
        REQUIRE(s->forward(std::span<const int32_t>(&tail[0], 2)).is_ok());
        REQUIRE(s->forward(std::span<const int32_t>(&tail[5], 1)).is_ok());
        CHECK(row(s->logits(), nv) == want);
    }
}

TEST_CASE("delta_net: a truncation past the kept states fails naming why, and changes nothing") {
    auto m = load_hybrid("synth-qwen35.gguf");
    if (!m) return;
    const int nv = m->config().n_vocab;
    auto s = hybrid_session(m, 2, 4);
    std::vector<int32_t> prompt;
    for (int i = 0; i < 30; ++i) prompt.push_back(int32_t(50 + 13 * i));
    REQUIRE(s->forward(prompt).is_ok());
    const auto before = row(s->logits(), nv);
    CHECK(s->seq_can_keep(0, 30));
    CHECK(s->seq_can_keep(0, 26));   // the prompt's last 4 states are kept
    CHECK(!s->seq_can_keep(0, 20));
    const kiln::Status st = s->truncate(20);
    REQUIRE(!st.is_ok());
    CHECK(kiln::test::message_lacks(st, "recurrent state goes back at most 4 tokens") == "");
    CHECK(!s->seq_fork(0, 1, 10).is_ok());
    CHECK(s->n_past() == 30);
    // Still where it was: the next token's logits are those of an untouched session.
    const int32_t next = 77;
    REQUIRE(s->forward(std::span<const int32_t>(&next, 1)).is_ok());
    auto t = hybrid_session(m, 1, 4);
    REQUIRE(t->forward(prompt).is_ok());
    CHECK(row(t->logits(), nv) == before);
    REQUIRE(t->forward(std::span<const int32_t>(&next, 1)).is_ok());
    CHECK(row(t->logits(), nv) == row(s->logits(), nv));
}

TEST_CASE("delta_net: sequences decoded in one batch get the logits each gets alone") {
    auto m = load_hybrid("synth-qwen35.gguf");
    if (!m) return;
    const int nv = m->config().n_vocab;
    std::vector<std::vector<int32_t>> prompts = {{11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22}, {500, 600}, {7000, 7001, 7002, 7003, 7004}};
    std::vector<std::vector<float>> alone;
    for (const auto& p : prompts) {
        auto s = hybrid_session(m);
        REQUIRE(s->forward(p).is_ok());
        alone.push_back(row(s->logits(), nv));
    }
    auto s = hybrid_session(m, 3);
    kiln::Batch b;
    std::vector<int> last(3);
    for (size_t i = 0; i < prompts[0].size(); ++i)  // interleaved, as a server's batch
        for (int q = 0; q < 3; ++q)
            if (i < prompts[size_t(q)].size()) {
                b.add(prompts[size_t(q)][i], q, int(i), i + 1 == prompts[size_t(q)].size());
                if (i + 1 == prompts[size_t(q)].size()) last[size_t(q)] = b.size() - 1;
            }
    REQUIRE(s->decode(b).is_ok());
    for (int q = 0; q < 3; ++q) CHECK(row(s->batch_logits(last[size_t(q)]), nv) == alone[size_t(q)]);
}

namespace {

std::vector<int32_t> greedy_plain(std::shared_ptr<const kiln::Model> m, const std::vector<int32_t>& prompt, int n) {
    auto s = hybrid_session(m);
    REQUIRE(s->forward(prompt).is_ok());
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
        const float* l = s->logits();
        out.push_back(int32_t(std::max_element(l, l + m->config().n_vocab) - l));
        if (i + 1 < n) REQUIRE(s->forward(std::span<const int32_t>(&out.back(), 1)).is_ok());
    }
    return out;
}

}  // namespace

TEST_CASE("delta_net: speculative decoding on a hybrid (lookup, a noisy oracle, self-speculation) gives plain greedy decoding's tokens") {
    auto m = load_hybrid("synth-qwen35.gguf");
    if (!m) return;
    std::vector<int32_t> prompt;
    for (int i = 0; i < 24; ++i) prompt.push_back(int32_t(300 + (i % 6) * 17));  // repeats: lookup drafts
    const int n = 40;
    const auto want = greedy_plain(m, prompt, n);
    kiln::SamplerParams greedy;
    greedy.temperature = 0;
    auto lookup = kiln::make_lookup_drafter(3);
    kiln::test::NoisyOracle oracle(want, prompt.size(), m->config().n_vocab);  // rejections (state rollbacks) at every position
    kiln::DraftModelOptions self;
    self.n_threads = 2;
    self.sampling = greedy;
    self.skip_layers = {1};  // a DeltaNet layer left out of the draft
    auto self_spec = kiln::make_model_drafter(m, *m, 256, self);
    REQUIRE_MESSAGE(self_spec.is_ok(), self_spec.message());
    for (kiln::Drafter* d : {lookup.get(), static_cast<kiln::Drafter*>(&oracle), self_spec.value().get()}) {
        CAPTURE(d->name());
        auto s = hybrid_session(m);
        kiln::Sampler sampler(greedy, m->config().n_vocab);
        kiln::SpecOptions o;
        o.n_predict = n;
        o.draft_max = 6;
        o.ignore_eos = true;
        kiln::SpecStats st;
        std::vector<int32_t> got;
        const kiln::Status r = kiln::speculative_generate(*s, sampler, *d, prompt, o, [&](int32_t t) { return got.push_back(t), true; }, &st);
        REQUIRE_MESSAGE(r.is_ok(), r.message());
        CHECK(got == want);
        MESSAGE(d->name() << ": drafted " << st.n_drafted << ", accepted " << st.n_accepted);
        if (d == &oracle) {
            CHECK(st.n_accepted > 0);
            CHECK(st.n_drafted > st.n_accepted);  // rejections rolled the state back
        }
    }
}

TEST_CASE("delta_net: inconsistent hybrid metadata is a load error naming the key") {
    const std::string path = kiln::test::model_path("synth/synth-qwen35.gguf");
    if (!kiln::test::require_file(path)) return;
    const std::pair<const char*, const char*> cases[] = {
        {"qwen35.ssm.inner_size=int:100", "ssm.inner_size 100 is not time_step_rank 4 x state_size 32"},
        {"qwen35.ssm.group_count=int:3", "ssm.time_step_rank 4 is not a multiple of ssm.group_count 3"},
        {"qwen35.ssm.conv_kernel=int:0", "ssm.conv_kernel"},
        {"qwen35.full_attention_interval=int:2", "layer 1 has gated DeltaNet tensors, but the metadata"},  // layer 1 made full attention
        {"qwen35.full_attention_interval=int:5", "missing tensor 'blk.3.attn_qkv.weight'"},               // layer 3 made recurrent
    };
    for (const auto& [override_kv, message] : cases) {
        CAPTURE(override_kv);
        kiln::LoadOptions lo;
        lo.override_kv = {override_kv};
        auto m = kiln::Model::load(path, lo);
        REQUIRE(!m.is_ok());
        CHECK(kiln::test::message_lacks(m.status(), message) == "");
    }
}
