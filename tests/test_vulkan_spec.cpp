// Stochastic speculative verification on the Vulkan device (spec_dist.comp +
// spec_sample.comp) against the host rule it replaces (kiln::sampling_distribution,
// kiln::verify_sampled_rows): the same distributions and the same verdict for the same
// uniforms, over random sampling chains, drafts and draft distributions; then through a
// real model, Session::verify_sampled on Vulkan against the host rule on the same logits.
#ifdef KILN_HAVE_VULKAN
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "kiln/kiln.h"
#include "kiln/speculative.h"
#include "vulkan_test_util.h"
#include "speculative/verification.h"

using kiln::test::VulkanFixture;
using kiln::vulkan::Buffer;
using kiln::vulkan::Ops;
using kiln::vulkan::whole;

namespace {

using Dist = std::vector<std::pair<int32_t, float>>;

// A random round: n rows of logits over V tokens (rounded to 1/4 so some tie), a
// sampling chain, drafts (half drawn from a random sparse q, half deterministic with an
// empty q), penalized tokens and uniforms exactly representable in f32.
struct Round {
    int n = 0, V = 0;
    std::vector<float> logits;  // (n, V)
    std::vector<int32_t> batch;  // (n) pending token, drafts
    kiln::SampledVerification v;
};

Round random_round(std::mt19937& rng, int V) {
    Round r;
    r.V = V;
    r.n = 1 + int(rng() % 5);
    std::normal_distribution<float> g(0.0f, 2.5f);
    std::uniform_real_distribution<float> uni(0.0f, 1.0f);
    r.logits.resize(size_t(r.n) * size_t(V));
    for (float& l : r.logits) l = std::round(g(rng) * 4) / 4;
    kiln::SamplerParams& p = r.v.params;
    const int top_ks[] = {1, 3, 40, 64};
    p.top_k = top_ks[rng() % 4];
    p.top_p = rng() % 2 ? 0.9f : 1.0f;
    p.min_p = rng() % 2 ? 0.05f : 0.0f;
    const float temps[] = {0.3f, 0.8f, 1.0f, 1.7f};
    p.temperature = temps[rng() % 4];
    p.repeat_penalty = rng() % 2 ? 1.3f : 1.0f;
    r.batch.push_back(int32_t(rng() % uint32_t(V)));
    for (int m = 0; m < r.n; ++m) {
        std::vector<int32_t> pen;
        for (int i = 0; p.repeat_penalty != 1.0f && i < 12; ++i) pen.push_back(int32_t(rng() % uint32_t(V)));
        std::sort(pen.begin(), pen.end());
        pen.erase(std::unique(pen.begin(), pen.end()), pen.end());
        r.v.penalized.push_back(pen);
    }
    for (int m = 0; m + 1 < r.n; ++m) {
        // Drafts mostly among the row's likely tokens, so both verdicts happen.
        const float* row = r.logits.data() + size_t(m) * size_t(V);
        std::vector<int32_t> order(static_cast<size_t>(V));
        for (int i = 0; i < V; ++i) order[size_t(i)] = i;
        std::partial_sort(order.begin(), order.begin() + 8, order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
        const int32_t draft = rng() % 4 ? order[rng() % 8] : int32_t(rng() % uint32_t(V));
        Dist q;
        if (rng() % 2) {
            float sum = 0;
            for (int i = 0; i < 6; ++i) q.push_back({order[size_t(i)], uni(rng) + 0.05f});
            if (std::none_of(q.begin(), q.end(), [&](const auto& e) { return e.first == draft; })) q.push_back({draft, 0.3f});
            for (const auto& e : q) sum += e.second;
            for (auto& e : q) e.second /= sum;
        }
        r.batch.push_back(draft);
        r.v.q.push_back(q);
    }
    for (int i = 0; i < 2 * r.n; ++i) r.v.u.push_back(double(uni(rng)));  // f32 values: both paths see the same number
    return r;
}

}  // namespace

TEST_CASE("vulkan: stochastic speculative verification on the device gives the host rule's distributions and verdicts") {
    VulkanFixture f;
    std::mt19937 rng(20261204);
    const int V = 3001;
    int accepted_all = 0, rejected = 0, bad_dist = 0, bad_verdict = 0;
    constexpr int kRounds = 300;
    for (int round = 0; round < kRounds; ++round) {
        const Round r = random_round(rng, V);
        CAPTURE(round);
        // Inputs in the layouts spec_dist / spec_sample read.
        std::vector<uint32_t> pen(size_t(r.n) * (1 + Ops::kMaxPenalized), 0), q(size_t(std::max(1, r.n - 1)) * (1 + 2 * Ops::kMaxDraftQ), 0);
        std::vector<float> u(size_t(2 * r.n));
        for (int m = 0; m < r.n; ++m) {
            pen[size_t(m) * (1 + Ops::kMaxPenalized)] = uint32_t(r.v.penalized[size_t(m)].size());
            for (size_t i = 0; i < r.v.penalized[size_t(m)].size(); ++i) pen[size_t(m) * (1 + Ops::kMaxPenalized) + 1 + i] = uint32_t(r.v.penalized[size_t(m)][i]);
            u[size_t(2 * m)] = float(r.v.u[size_t(2 * m)]), u[size_t(2 * m + 1)] = float(r.v.u[size_t(2 * m + 1)]);
        }
        for (int m = 0; m + 1 < r.n; ++m) {
            uint32_t* row = q.data() + size_t(m) * (1 + 2 * Ops::kMaxDraftQ);
            row[0] = uint32_t(r.v.q[size_t(m)].size());
            for (size_t i = 0; i < r.v.q[size_t(m)].size(); ++i) row[1 + 2 * i] = uint32_t(r.v.q[size_t(m)][i].first), std::memcpy(&row[2 + 2 * i], &r.v.q[size_t(m)][i].second, 4);
        }
        std::vector<int32_t> drafts(r.batch.begin() + 1, r.batch.end());
        drafts.push_back(0);  // never empty
        Buffer lb = f.buffer(r.logits), pb = f.buffer(pen), qb = f.buffer(q), ub = f.buffer(u), db = f.buffer(drafts);
        Buffer dist = f.buffer(std::vector<uint32_t>(size_t(r.n) * (1 + 2 * Ops::kMaxTopK), 0xffffffffu)), result = f.buffer(std::vector<uint32_t>(2, 0xffffffffu));
        const kiln::SamplerParams& sp = r.v.params;
        f.run([&](auto& rec) {
            REQUIRE(f.ops->spec_dist(rec, whole(lb), whole(pb), whole(dist), uint32_t(r.n), {uint32_t(V), uint32_t(sp.top_k), sp.temperature, sp.top_p, sp.min_p, sp.repeat_penalty}).is_ok());
            rec.barrier();
            REQUIRE(f.ops->spec_sample(rec, whole(dist), whole(db), whole(qb), whole(ub), whole(result), uint32_t(r.n - 1)).is_ok());
        });
        // Each row's distribution: the host's tokens in the host's order, probabilities
        // within f32 rounding of the host's (which sums in double).
        const auto got = f.read<uint32_t>(dist, size_t(r.n) * (1 + 2 * Ops::kMaxTopK));
        for (int m = 0; m < r.n; ++m) {
            const Dist want = kiln::sampling_distribution(sp, r.logits.data() + size_t(m) * size_t(V), V, r.v.penalized[size_t(m)]);
            const uint32_t* row = got.data() + size_t(m) * (1 + 2 * Ops::kMaxTopK);
            bool same = row[0] == want.size();
            for (size_t i = 0; same && i < want.size(); ++i) {
                float pr;
                std::memcpy(&pr, &row[2 + 2 * i], 4);
                same = row[1 + 2 * i] == uint32_t(want[i].first) && std::fabs(pr - want[i].second) <= 1e-5f * std::max(want[i].second, 1e-3f);
            }
            bad_dist += !same;
        }
        int want_m = -1;
        int32_t want_next = -1;
        kiln::verify_sampled_rows(r.v, r.batch, r.logits.data(), V, &want_m, &want_next);
        const auto verdict = f.read<uint32_t>(result, 2);
        const bool same = verdict[0] == uint32_t(want_m) && verdict[1] == uint32_t(want_next);
        if (!same) MESSAGE("round " << round << ": device " << verdict[0] << "/" << verdict[1] << ", host " << want_m << "/" << want_next);
        bad_verdict += !same;
        accepted_all += want_m == r.n - 1;
        rejected += want_m < r.n - 1;
    }
    CHECK(bad_dist == 0);
    CHECK(bad_verdict == 0);
    // Both outcomes were exercised.
    CHECK(accepted_all > kRounds / 10);
    CHECK(rejected > kRounds / 10);
    MESSAGE(kRounds << " rounds: " << accepted_all << " kept every draft, " << rejected << " rejected one");
}

TEST_CASE("model: vulkan: stochastic verification on the device equals the host rule on the same logits (SmolLM2), and sampled speculative decoding runs") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    kiln::SessionOptions so;
    so.n_ctx = 128;
    so.n_threads = 2;
    so.backend = kiln::Backend::Vulkan;
    auto s = kiln::Session::create(model.value(), so);
    REQUIRE_MESSAGE(s.is_ok(), s.message());
    kiln::Session& vk = *s.value();
    const int nv = model.value()->config().n_vocab;
    const auto prompt = model.value()->tokenizer().encode("The three primary colors are red,", true, false);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uni(0.0f, 1.0f);
    int device_rounds = 0;
    for (int trial = 0; trial < 6; ++trial) {
        CAPTURE(trial);
        REQUIRE(vk.truncate(0).is_ok());
        REQUIRE(vk.forward(std::span<const int32_t>(prompt.data(), prompt.size() - 1)).is_ok());
        // Drafts: a likely continuation, then (trials 3-5) one with an unlikely first token.
        std::vector<int32_t> batch = {prompt.back()};
        for (int32_t t : model.value()->tokenizer().encode(" blue, yellow and green", false, false)) batch.push_back(t);
        batch.resize(std::min<size_t>(batch.size(), 5));
        if (trial >= 3) batch[1] = 42;  // an unlikely first draft: rejected
        kiln::SampledVerification v;
        v.params.temperature = trial % 2 ? 0.7f : 1.2f;
        v.params.top_k = 40;
        v.params.repeat_penalty = trial == 5 ? 1.2f : 1.0f;
        for (size_t m = 0; m < batch.size(); ++m) v.penalized.push_back(trial == 5 ? std::vector<int32_t>(prompt.begin(), prompt.end()) : std::vector<int32_t>{});
        for (size_t m = 0; m + 1 < batch.size(); ++m) v.q.push_back({});
        for (size_t i = 0; i < 2 * batch.size(); ++i) v.u.push_back(double(uni(rng)));
        // Host: the logits of the batch, the rule on them.
        const int kv = vk.n_past();
        REQUIRE(vk.forward(batch, true).is_ok());
        int want_m = -1;
        int32_t want_next = -1;
        kiln::verify_sampled_rows(v, batch, vk.logits(0), nv, &want_m, &want_next);
        REQUIRE(vk.truncate(kv).is_ok());
        // Device: the same forward, the test in the shaders, only the verdict back.
        int m = -1;
        int32_t next = -1;
        REQUIRE(vk.verify_sampled(batch, v, &m, &next).is_ok());
        CHECK(vk.n_logits() == 0);  // nothing came back but the verdict
        CHECK(m == want_m);
        CHECK(next == want_next);
        device_rounds += vk.n_logits() == 0;
    }
    CHECK(device_rounds == 6);

    // Sampled speculative decoding with the target on Vulkan and prompt lookup drafting.
    kiln::SamplerParams sp;
    sp.temperature = 0.8f;
    sp.seed = 3;
    kiln::Sampler sampler(sp, nv);
    auto drafter = kiln::make_lookup_drafter(2);
    kiln::SpecOptions o;
    o.n_predict = 24;
    o.ignore_eos = true;
    REQUIRE(vk.truncate(0).is_ok());
    const auto count = model.value()->tokenizer().encode("one two three four five six, one two three four five six, one two", true, false);
    std::vector<int32_t> out;
    kiln::SpecStats st;
    REQUIRE(kiln::speculative_generate(vk, sampler, *drafter, count, o, [&](int32_t t) { return out.push_back(t), true; }, &st).is_ok());
    CHECK(out.size() == 24);
    CHECK(st.n_drafted > 0);
    MESSAGE("sampled speculative decoding on Vulkan: " << st.n_accepted << "/" << st.n_drafted << " drafts accepted in " << st.n_rounds << " rounds");
}

#endif  // KILN_HAVE_VULKAN
