// Speculative decoding: batch invariance of the target forward (what makes greedy
// verification exact), greedy equality with plain decoding for every drafting source,
// the statistics of rejection sampling, and the errors for bad combinations. The long
// real-model runs are named "model: speculative: ..." so the sanitizer pass skips them.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "cpu/kernels.h"
#include "speculative/draft_length.h"
#include "kiln/kiln.h"
#include "test_util.h"
#include "kiln/speculative.h"
#include "speculative/verification.h"
#include "test_drafters.h"

namespace {

const char* kSmol = "SmolLM2-135M-Instruct.Q4_1.gguf";
const char* kGemma = "gemma-3-270m-q4_k_m.gguf";

std::shared_ptr<const kiln::Model> load(const char* file, bool repack = false) {
    const std::string path = kiln::test::model_path(file);
    if (!kiln::test::require_file(path)) return nullptr;
    kiln::LoadOptions lo;
    lo.repack = repack;
    auto m = kiln::Model::load(path, lo);
    REQUIRE_MESSAGE(m.is_ok(), m.message());
    return m.value();
}

std::unique_ptr<kiln::Session> session(std::shared_ptr<const kiln::Model> m, int n_ctx, const char* isa = nullptr) {
    kiln::SessionOptions so;
    so.n_ctx = n_ctx;
    so.n_threads = 2;
    so.isa = isa;
    auto s = kiln::Session::create(std::move(m), so);
    REQUIRE_MESSAGE(s.is_ok(), s.message());
    return std::move(s.value());
}

kiln::SamplerParams greedy() {
    kiln::SamplerParams p;
    p.temperature = 0;
    return p;
}

// Plain decoding with the same stopping rules as speculative_generate (and kiln-generate).
int g_plain_kv = 0;  // KV entries plain() left, compared with what speculative() leaves

std::vector<int32_t> plain(std::shared_ptr<const kiln::Model> m, const std::vector<int32_t>& prompt, int n_predict, int n_ctx,
                           bool ignore_eos = false) {
    auto s = session(m, n_ctx);
    kiln::Sampler sampler(greedy(), m->config().n_vocab);
    REQUIRE(s->forward(prompt).is_ok());
    std::vector<int32_t> out;
    for (int i = 0; n_predict < 0 || i < n_predict; ++i) {
        const int32_t t = sampler.sample(s->logits());
        if (!ignore_eos && m->tokenizer().is_eog(t)) break;
        out.push_back(t);
        if (int(out.size()) == n_predict || s->n_past() >= s->n_ctx()) break;
        REQUIRE(s->forward(std::span<const int32_t>(&t, 1)).is_ok());
    }
    g_plain_kv = s->n_past();
    return out;
}

int g_spec_kv = 0;

std::vector<int32_t> speculative(std::shared_ptr<const kiln::Model> m, kiln::Drafter& d, const std::vector<int32_t>& prompt, int n_predict, int n_ctx,
                                 kiln::SpecStats* st, int draft_max = 5, bool ignore_eos = false) {
    auto s = session(m, n_ctx);
    kiln::Sampler sampler(greedy(), m->config().n_vocab);
    kiln::SpecOptions o;
    o.n_predict = n_predict;
    o.draft_max = draft_max;
    o.ignore_eos = ignore_eos;
    std::vector<int32_t> out;
    kiln::Status r = kiln::speculative_generate(*s, sampler, d, prompt, o, [&](int32_t t) { return out.push_back(t), true; }, st);
    REQUIRE_MESSAGE(r.is_ok(), r.message());
    g_spec_kv = s->n_past();
    return out;
}

std::vector<int32_t> encode(const kiln::Model& m, const std::string& text) { return m.tokenizer().encode(text, true, true); }

const char* kPrompts[] = {
    "<|im_start|>user\nWhat is the capital of France? Answer in one sentence.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nRepeat this list exactly: apple, banana, cherry, date, elderberry, fig, grape.<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "The cat sat on the mat. The dog sat on the log. The bird sat on the",  // repeats that part ways: lookup rejections
};

}  // namespace

TEST_CASE("model: speculative: forward of n <= 8 tokens gives the same bits as n one-token forwards, on every ISA and with --repack") {
    // With --repack, one token and several go through the same r16 kernels, templated on
    // the token count; without it, through the original-layout kernels: either way a
    // token's sums may not depend on its neighbours.
    for (auto [file, repack] : {std::pair{kSmol, false}, std::pair{kGemma, false}, std::pair{kSmol, true}, std::pair{kGemma, true}}) {
        CAPTURE(repack);
        auto m = load(file, repack);
        if (!m) continue;
        const int nv = m->config().n_vocab;
        const std::vector<int32_t> prompt = encode(*m, "Speculative decoding checks several drafted tokens in one pass.");
        const std::vector<int32_t> next = encode(*m, " The target model verifies them all at once, bit for bit");
        REQUIRE(next.size() >= 9);
        for (kiln::cpu::Isa isa : kiln::cpu::available_isas()) {
            CAPTURE(file);
            CAPTURE(std::string(kiln::cpu::isa_name(isa)));
            auto s = session(m, 128, kiln::cpu::isa_name(isa));
            REQUIRE(s->forward(prompt).is_ok());
            const int base = s->n_past();
            // The reference: one token at a time.
            std::vector<float> one(size_t(8) * size_t(nv));  // (8, n_vocab)
            for (int i = 0; i < 8; ++i) {
                REQUIRE(s->forward(std::span<const int32_t>(&next[size_t(i)], 1)).is_ok());
                std::memcpy(one.data() + size_t(i) * size_t(nv), s->logits(), sizeof(float) * size_t(nv));
            }
            const bool best = isa == kiln::cpu::available_isas().back();
            for (int n = 2; n <= 8; ++n) {
                if (!best && n != 8 && n != 3) continue;  // the slower ISAs: two batch sizes
                CAPTURE(n);
                REQUIRE(s->truncate(base).is_ok());
                REQUIRE(s->forward(std::span<const int32_t>(next.data(), size_t(n)), true).is_ok());
                int differ = 0;
                for (int i = 0; i < n; ++i) differ += std::memcmp(s->logits(i), one.data() + size_t(i) * size_t(nv), sizeof(float) * size_t(nv)) != 0;
                CHECK(differ == 0);
            }
        }
    }
}

TEST_CASE("model: speculative: greedy prompt lookup equals plain greedy decoding") {
    for (const char* file : {kSmol, kGemma}) {
        auto m = load(file);
        if (!m) continue;
        auto drafter = kiln::make_lookup_drafter(3);
        int rejected = 0, accepted = 0;
        for (const char* text : kPrompts) {
            if (file == kGemma && (text == kPrompts[0] || text == kPrompts[1])) continue;  // chat markup is SmolLM2's
            const auto prompt = encode(*m, text);
            kiln::SpecStats st;
            CHECK(speculative(m, *drafter, prompt, 48, 256, &st) == plain(m, prompt, 48, 256));
            CHECK(g_spec_kv == g_plain_kv);  // the target's cache holds exactly the kept tokens
            rejected += st.n_drafted - st.n_accepted;
            accepted += st.n_accepted;
        }
        MESSAGE(std::string(file) << ": lookup accepted " << accepted << ", rejected " << rejected);
        CHECK(accepted > 0);
        CHECK(rejected > 0);
    }
}

TEST_CASE("model: speculative: greedy self-speculation (layers skipped) equals plain greedy decoding") {
    for (const char* file : {kSmol, kGemma}) {
        auto m = load(file);
        if (!m) continue;
        const int L = m->config().n_layer;
        kiln::DraftModelOptions o;
        o.n_threads = 2;
        o.sampling = greedy();
        for (int il = L / 3; il < L / 3 + L / 4; ++il) o.skip_layers.push_back(il);
        int rejected = 0, accepted = 0;
        for (const char* text : kPrompts) {
            if (file == kGemma && text == kPrompts[1]) continue;
            const auto prompt = encode(*m, text);
            // Layers skipped; then also the output head trimmed to 4096 tokens.
            for (bool trim : {false, true}) {
                CAPTURE(trim);
                kiln::DraftModelOptions ot = o;
                if (trim) ot.head_tokens = kiln::draft_head_tokens(*m, prompt, 4096);
                auto d = kiln::make_model_drafter(m, *m, 256, ot);
                REQUIRE_MESSAGE(d.is_ok(), d.message());
                kiln::SpecStats st;
                CHECK(speculative(m, *d.value(), prompt, 40, 256, &st) == plain(m, prompt, 40, 256));
                CHECK(g_spec_kv == g_plain_kv);
                rejected += st.n_drafted - st.n_accepted;
                accepted += st.n_accepted;
            }
        }
        MESSAGE(std::string(file) << ": self-speculation accepted " << accepted << ", rejected " << rejected);
        CHECK(accepted > 0);
        CHECK(rejected > 0);
    }
}

TEST_CASE("model: speculative: the real Qwen2.5-Coder 0.5B drafts for the 1.5B: greedy equals plain decoding, trimmed draft head or whole") {
    auto target = load("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    auto draft = load("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    if (!target || !draft) return;
    const auto prompt = encode(*target, "<|im_start|>user\nWrite a Python function that returns the squares of a list of numbers.<|im_end|>\n"
                                        "<|im_start|>assistant\n");
    const auto ref = plain(target, prompt, 48, 512);
    // The 0.5B's 151936-row head is 36% of the bytes a draft token reads: by default it
    // drafts from kDraftHeadTokens of them (plus the history's); head_size 0 keeps them all.
    for (int head : {-1, 0}) {
        CAPTURE(head);
        kiln::DraftModelOptions o;
        o.n_threads = 2;
        o.sampling = greedy();
        o.head_size = head;
        auto d = kiln::make_model_drafter(draft, *target, 512, o);
        REQUIRE_MESSAGE(d.is_ok(), d.message());
        CHECK((d.value()->name().find("output head of 32768 tokens") != std::string::npos) == (head < 0));
        kiln::SpecStats st;
        CHECK(speculative(target, *d.value(), prompt, 48, 512, &st, 7) == ref);
        CHECK(g_spec_kv == g_plain_kv);
        MESSAGE("head " << head << ": " << st.n_accepted << "/" << st.n_drafted << " drafts accepted in " << st.n_rounds << " rounds");
        CHECK(st.acceptance_rate() > 0.5);  // the same family, on code: most drafts are the target's tokens
    }
    kiln::DraftModelOptions bad;
    bad.head_size = -2;
    CHECK(kiln::make_model_drafter(draft, *target, 512, bad).message().find("draft head size -2") != std::string::npos);
}

TEST_CASE("model: speculative: greedy draft model, PARD and a plug-in drafter equal plain greedy decoding, up to a full context") {
    auto m = load(kSmol);
    if (!m) return;
    // A second copy of the file is a (perfect) draft model: every draft accepted.
    auto draft = load(kSmol);
    kiln::DraftModelOptions o;
    o.n_threads = 2;
    o.sampling = greedy();
    const auto prompt = encode(*m, kPrompts[0]);
    const auto ref = plain(m, prompt, 40, 256);
    {
        auto d = kiln::make_model_drafter(draft, *m, 256, o);
        REQUIRE_MESSAGE(d.is_ok(), d.message());
        kiln::SpecStats st;
        CHECK(speculative(m, *d.value(), prompt, 40, 256, &st, 7) == ref);
        CHECK(st.n_accepted == st.n_drafted);
        // A same-size draft costs as much as the target, so no draft pays: the adaptive
        // length picks plain decoding but for its probe rounds, which draft.
        CHECK(st.n_drafted > 0);
        CHECK(st.mean_accepted() < 1);
    }
    // PARD mechanism (this model is not PARD-trained, so drafts after the first are poor).
    {
        kiln::DraftModelOptions p = o;
        p.pard_mask_id = int(m->tokenizer().eos());
        auto d = kiln::make_model_drafter(draft, *m, 256, p);
        REQUIRE_MESSAGE(d.is_ok(), d.message());
        CHECK(d.value()->name().find("PARD") != std::string::npos);
        kiln::SpecStats st;
        CHECK(speculative(m, *d.value(), prompt, 40, 256, &st) == ref);
        CHECK(st.accepted_at[0] > 0);
        CHECK(st.n_accepted < st.n_drafted);
    }
    // A plug-in drafter with random rejections, and generation into a full context.
    for (int n_ctx : {256, int(prompt.size()) + 37}) {
        CAPTURE(n_ctx);
        const auto ref_full = plain(m, prompt, -1, n_ctx, /*ignore_eos=*/true);
        if (n_ctx < 256) CHECK(int(prompt.size() + ref_full.size()) == n_ctx + 1);  // stopped by the context
        kiln::test::NoisyOracle oracle(ref_full, prompt.size(), m->config().n_vocab);
        kiln::SpecStats st;
        CHECK(speculative(m, oracle, prompt, n_ctx < 256 ? -1 : 60, n_ctx, &st, 7, true) ==
              std::vector<int32_t>(ref_full.begin(), ref_full.begin() + long(std::min<size_t>(ref_full.size(), n_ctx < 256 ? ref_full.size() : 60))));
        if (n_ctx < 256) CHECK(g_spec_kv == n_ctx);
        CHECK(st.n_accepted > 0);
        CHECK(st.n_accepted < st.n_drafted);
    }
}

TEST_CASE("model: speculative: calibration picks a skip set for self-speculation") {
    auto m = load(kSmol);
    if (!m) return;
    const auto tokens = encode(*m, "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
                                   "movable metal type, oil-based ink and a wooden press.");
    kiln::SessionOptions so;
    so.n_threads = 2;
    auto r = kiln::calibrate_skip_layers(m, tokens, so, 2, /*trim_head=*/false);
    REQUIRE_MESSAGE(r.is_ok(), r.message());
    CHECK(r->steps.size() == 2);
    CHECK(!r->skip_layers.empty());
    CHECK(r->est_speedup > 0);
    for (int il : r->skip_layers) CHECK((il > 0 && il < m->config().n_layer - 1));
    CHECK(r->agreement > 0.3);
    CHECK(r->agreement <= 1.0);
    // The least harmful single layer barely changes the picks.
    CHECK(r->steps[0].second > 0.7);
    CHECK(r->head_tokens.empty());
}

TEST_CASE("model: speculative: a trimmed output head (and the tokens added to it) gives the full head's logits for its tokens, and calibration picks one for Gemma 3") {
    for (bool repack : {false, true}) {
        CAPTURE(repack);
        kiln::LoadOptions lo;
        lo.repack = repack;
        if (!kiln::test::require_file(kiln::test::model_path(kGemma))) return;
        auto loaded = kiln::Model::load(kiln::test::model_path(kGemma), lo);
        REQUIRE(loaded.is_ok());
        std::shared_ptr<const kiln::Model> m = loaded.value();
        const int V = m->config().n_vocab;
        const auto prompt = encode(*m, kPrompts[0]);
        const auto head = kiln::draft_head_tokens(*m, prompt, 4096);
        REQUIRE(head.size() == 4096);
        for (int32_t t : prompt) CHECK(std::binary_search(head.begin(), head.end(), t));  // the context is always kept
        kiln::SessionOptions so;
        so.n_threads = 2;
        so.n_ctx = 64;
        auto full = kiln::Session::create(m, so);
        so.logit_tokens = head;
        auto trimmed = kiln::Session::create(m, so);
        REQUIRE(full.is_ok());
        REQUIRE(trimmed.is_ok());
        REQUIRE(full.value()->forward(prompt, true).is_ok());
        REQUIRE(trimmed.value()->forward(prompt, true).is_ok());
        int bad = 0;
        for (int i = 0; i < int(prompt.size()); ++i) {
            const float *lf = full.value()->logits(i), *lt = trimmed.value()->logits(i);
            for (int t = 0, j = 0; t < V; ++t) {
                const bool kept = j < int(head.size()) && head[size_t(j)] == t;
                j += kept;
                bad += kept ? lt[t] != lf[t] : lt[t] != -INFINITY;
            }
        }
        CHECK(bad == 0);  // bit for bit: each row's dot product does not depend on the others
        // The head grows by the tokens added to it (up to 1024 past its start), across 16-row
        // groups, and the new rows give the full head's logits too.
        std::vector<char> kept(size_t(V), 0);  // (V) tokens the trimmed session has logits for
        for (int32_t t : head) kept[size_t(t)] = 1;
        std::vector<int32_t> extra;  // tokens outside the head, spread over the vocabulary
        for (int32_t t = V - 1; t >= 0 && extra.size() < 1100; t -= 7)
            if (!kept[size_t(t)]) extra.push_back(t);
        const std::vector<int32_t> some = {extra[0], extra[1], extra[0], head[5], V, -1, extra[2], extra[3], extra[4]};  // 5 new, a repeat, a kept one, 2 bad ids
        CHECK(trimmed.value()->add_logit_tokens(some) == 5);
        CHECK(trimmed.value()->add_logit_tokens(extra) == 1024 - 5);
        CHECK(trimmed.value()->add_logit_tokens(extra) == 0);
        CHECK(full.value()->add_logit_tokens(extra) == 0);
        for (size_t i = 0; i < 1024; ++i) kept[size_t(extra[i])] = 1;
        const std::vector<int32_t> next = {extra[3], 1000};
        REQUIRE(full.value()->forward(next, true).is_ok());
        REQUIRE(trimmed.value()->forward(next, true).is_ok());
        int grown_bad = 0, grown_kept = 0;
        for (int i = 0; i < 2; ++i) {
            const float *lf = full.value()->logits(i), *lt = trimmed.value()->logits(i);
            for (int t = 0; t < V; ++t) grown_bad += kept[size_t(t)] ? lt[t] != lf[t] : lt[t] != -INFINITY, grown_kept += lt[t] != -INFINITY;
        }
        CHECK(grown_bad == 0);
        CHECK(grown_kept == 2 * (4096 + 1024));
        so.logit_tokens = {V};
        CHECK(!kiln::Session::create(m, so).is_ok());
    }
    // Gemma 3 270M's head is 72% of its bytes per token: the calibration trims it.
    auto m = load(kGemma);
    if (!m) return;
    kiln::SessionOptions so;
    so.n_threads = 2;
    const auto tokens = encode(*m, "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
                                   "movable metal type, oil-based ink and a wooden press.");
    auto with = kiln::calibrate_skip_layers(m, tokens, so, 3), without = kiln::calibrate_skip_layers(m, tokens, so, 3, false);
    REQUIRE(with.is_ok());
    REQUIRE(without.is_ok());
    CHECK(!with->head_tokens.empty());
    CHECK(with->est_speedup > without->est_speedup);
    MESSAGE("Gemma 3 calibration: head " << with->head_tokens.size() << " tokens, " << with->skip_layers.size() << " layers skipped, agreement " << with->agreement
            << ", estimated " << with->est_speedup << "x (without trimming: " << without->est_speedup << "x)");
}

// Rejection sampling reproduces the target distribution p for draft tokens drawn from
// another distribution q; the naive alternatives do not. Chi-square over p's support with
// 40,000 fixed-seed samples.
TEST_CASE("spec: stochastic verification reproduces the target's distribution; naive schemes do not") {
    auto m = load(kSmol);
    if (!m) return;
    const auto prompt = encode(*m, "My favourite fruit is");
    // p: the target at temperature 0.9 with top-k 20, top-p 0.95 (min-p off).
    kiln::SamplerParams sp;
    sp.temperature = 0.9f;
    sp.top_k = 20;
    sp.top_p = 0.95f;
    sp.min_p = 0;
    auto s = session(m, 64);
    REQUIRE(s->forward(prompt).is_ok());
    kiln::Sampler target(sp, m->config().n_vocab);
    const auto p = target.distribution(s->logits());
    // q: a self-speculative draft (2 layers skipped) at temperature 0.5, top-k 30: it
    // overlaps p but puts more mass on the top tokens.
    kiln::SessionOptions dso;
    dso.n_ctx = 64;
    dso.n_threads = 2;
    dso.skip_layers = {14, 15};
    auto ds = kiln::Session::create(m, dso);
    REQUIRE(ds.is_ok());
    REQUIRE(ds.value()->forward(prompt).is_ok());
    kiln::SamplerParams qp = sp;
    qp.temperature = 0.5f;
    qp.top_k = 30;
    const auto q = kiln::Sampler(qp, m->config().n_vocab).distribution(ds.value()->logits());
    REQUIRE(p.size() >= 4);
    REQUIRE(q.size() >= 4);
    MESSAGE("p: " << p.size() << " tokens, top " << p[0].second << "; q: " << q.size() << " tokens, q(p's top) " << kiln::prob_of(q, p[0].first));

    std::mt19937_64 rng(1234);
    std::uniform_real_distribution<double> uni(0.0, 1.0);
    auto draw = [&](const std::vector<std::pair<int32_t, float>>& d) {
        double r = uni(rng), c = 0;
        for (const auto& [t, pr] : d)
            if (r < (c += pr)) return t;
        return d.back().first;
    };
    // Chi-square of N samples against p (tokens outside p's support: one extra cell).
    const int N = 40000;
    auto chi2 = [&](auto&& sample_one) {
        std::map<int32_t, int> count;
        for (int i = 0; i < N; ++i) ++count[sample_one()];
        double x = 0;
        int outside = N;
        for (const auto& [t, pr] : p) {
            const double e = double(pr) * N, o = count.count(t) ? count[t] : 0;
            outside -= int(o);
            x += (o - e) * (o - e) / e;
        }
        return outside > 0 ? 1e9 : x;
    };
    // Critical value at significance 1e-4 for df = |p| - 1 (Wilson-Hilferty).
    const double df = double(p.size() - 1), z = 3.719;
    const double crit = df * std::pow(1 - 2 / (9 * df) + z * std::sqrt(2 / (9 * df)), 3);

    auto exact = [&] {
        kiln::DraftToken d{draw(q), q};
        if (kiln::accept_draft(p, d, uni(rng))) return d.token;
        return kiln::sample_residual(p, d, uni(rng));
    };
    // Deterministic drafts (prompt lookup): q is a point mass.
    auto exact_point = [&] {
        kiln::DraftToken d{q[0].first, {}};
        if (kiln::accept_draft(p, d, uni(rng))) return d.token;
        return kiln::sample_residual(p, d, uni(rng));
    };
    // Naive 1: keep the draft when it is the target's top token, else sample the target.
    auto naive_equal = [&] {
        const int32_t d = draw(q);
        return d == p[0].first ? d : draw(p);
    };
    // Naive 2: accept with min(1, p/q) but resample from p instead of the residual.
    auto naive_resample = [&] {
        kiln::DraftToken d{draw(q), q};
        if (kiln::accept_draft(p, d, uni(rng))) return d.token;
        return draw(p);
    };
    const double x_exact = chi2(exact), x_point = chi2(exact_point), x_equal = chi2(naive_equal), x_resample = chi2(naive_resample);
    MESSAGE("chi-square (df " << df << ", critical " << crit << "): rejection sampling " << x_exact << ", point-mass drafts " << x_point
                              << ", accept-if-top " << x_equal << ", resample-from-p " << x_resample);
    CHECK(x_exact < crit);
    CHECK(x_point < crit);
    CHECK(x_equal > 10 * crit);
    CHECK(x_resample > 10 * crit);
}

TEST_CASE("spec: stochastic speculative generation runs, and is reproducible with a seed") {
    auto m = load(kSmol);
    if (!m) return;
    const auto prompt = encode(*m, kPrompts[1]);
    kiln::SamplerParams sp;
    sp.temperature = 0.7f;
    auto run = [&] {
        auto s = session(m, 256);
        kiln::Sampler sampler(sp, m->config().n_vocab);
        auto d = kiln::make_lookup_drafter(2);
        kiln::SpecOptions o;
        o.n_predict = 32;
        o.adaptive = false;  // the adaptive length follows measured timings, so its rounds (and draws) can differ run to run
        std::vector<int32_t> out;
        kiln::SpecStats st;
        REQUIRE(kiln::speculative_generate(*s, sampler, *d, prompt, o, [&](int32_t t) { return out.push_back(t), true; }, &st).is_ok());
        CHECK(st.n_drafted > 0);
        return out;
    };
    const auto a = run();
    CHECK(a.size() > 0);
    CHECK(a == run());
}

TEST_CASE("spec: bad combinations are clear errors") {
    auto smol = load(kSmol);
    auto gemma = load(kGemma);
    if (!smol || !gemma) return;
    kiln::DraftModelOptions o;
    o.n_threads = 2;
    auto d = kiln::make_model_drafter(gemma, *smol, 256, o);
    REQUIRE(!d.is_ok());
    CHECK(d.message().find("incompatible") != std::string::npos);
    o.n_ctx = 64;
    d = kiln::make_model_drafter(smol, *smol, 256, o);
    REQUIRE(!d.is_ok());
    CHECK(d.message().find("smaller than the target context") != std::string::npos);
    o.n_ctx = 1 << 20;
    d = kiln::make_model_drafter(smol, *smol, 1 << 20, o);
    REQUIRE(!d.is_ok());
    CHECK(d.message().find("trained for") != std::string::npos);
    o.n_ctx = 0;
    o.pard_mask_id = 1 << 20;
    CHECK(!kiln::make_model_drafter(smol, *smol, 256, o).is_ok());
    auto mask = kiln::pard_mask_id(*smol);
    REQUIRE(!mask.is_ok());
    CHECK(mask.message().find("DraftModelOptions::pard_mask_id") != std::string::npos);
    {  // the mask id from metadata (here injected as an override)
        kiln::LoadOptions lo;
        lo.override_kv = {"tokenizer.ggml.mask_token_id=int:2"};
        auto pard = kiln::Model::load(kiln::test::model_path(kSmol), lo);
        REQUIRE(pard.is_ok());
        auto id = kiln::pard_mask_id(*pard.value());
        REQUIRE_MESSAGE(id.is_ok(), id.message());
        CHECK(id.value() == 2);
    }
    o.pard_mask_id = -1;
    for (int il = 0; il < smol->config().n_layer; ++il) o.skip_layers.push_back(il);
    CHECK(!kiln::make_model_drafter(smol, *smol, 256, o).is_ok());
    kiln::SessionOptions so;
    so.skip_layers = {smol->config().n_layer};
    CHECK(!kiln::Session::create(smol, so).is_ok());

    auto s = session(smol, 64);
    kiln::Sampler sampler(greedy(), smol->config().n_vocab);
    auto lookup = kiln::make_lookup_drafter(2);
    kiln::SpecOptions bad;
    bad.draft_max = kiln::kMaxDraft + 1;
    const std::vector<int32_t> prompt = {1, 2, 3};
    kiln::Status r = kiln::speculative_generate(*s, sampler, *lookup, prompt, bad, nullptr, nullptr);
    CHECK(!r.is_ok());
    CHECK(r.message().find("--draft-max") != std::string::npos);
    const std::vector<int32_t> long_prompt(64, 5);
    r = kiln::speculative_generate(*s, sampler, *lookup, long_prompt, {}, nullptr, nullptr);
    CHECK(!r.is_ok());
    // A draft whose context is smaller than the target session's.
    auto small = kiln::make_model_drafter(smol, *smol, 32, {});
    REQUIRE(small.is_ok());
    r = kiln::speculative_generate(*s, sampler, *small.value(), prompt, {}, nullptr, nullptr);
    CHECK(!r.is_ok());
    CHECK(r.message().find("draft's context") != std::string::npos);
}

TEST_CASE("spec: the adaptive draft length drafts where it pays, decodes plainly where it does not, and probes the other side") {
    using kiln::DraftLengthModel;
    constexpr int P = DraftLengthModel::kProbe;
    // Verification: 30 ms for one token, 52 ms for eight (measured sizes), nothing between yet.
    {  // a draft that costs a third of a target token and is rarely right: plain decoding
        DraftLengthModel m(0, 7, 0.030, 0.052);
        for (int i = 0; i < 20; ++i) m.record_draft(2, i % 4 == 0 ? 1 : 0, 0.020);
        int drafted_rounds = 0;
        for (int r = 1; r <= 4 * P; ++r) {
            const int k = m.next();
            CHECK((k > 0) == (r % P == 0));  // only the probes draft
            drafted_rounds += k > 0;
        }
        CHECK(drafted_rounds == 4);
    }
    {  // a cheap draft that is nearly always right: the longest drafts, plain every P-th round
        DraftLengthModel m(0, 7, 0.030, 0.052);
        for (int i = 0; i < 40; ++i) m.record_draft(7, 7, 0.007);
        CHECK(m.acceptance() > 0.95);
        for (int r = 1; r <= 2 * P; ++r) CHECK(m.next() == (r % P == 0 ? 0 : 7));
    }
    {  // draft_min 1 never chooses plain decoding, and never probes it
        DraftLengthModel m(1, 7, 0.030, 0.052);
        for (int i = 0; i < 20; ++i) m.record_draft(2, 0, 0.020);
        for (int r = 1; r <= 2 * P; ++r) CHECK(m.next() == 1);
    }
    {  // verification seconds: measured sizes as measured (a running mean), the others on the line between measured neighbours
        DraftLengthModel m(0, 7, 0.030, 0.052);
        CHECK(m.verify_seconds(1) == doctest::Approx(0.030));
        CHECK(m.verify_seconds(8) == doctest::Approx(0.052));
        CHECK(m.verify_seconds(4) == doctest::Approx(0.030 + 0.022 * 3 / 7));
        m.record_verify(2, 0.045);  // not on the line: one more token costs more than the line says
        CHECK(m.verify_seconds(2) == doctest::Approx(0.045));
        CHECK(m.verify_seconds(5) == doctest::Approx(0.045 + 0.007 * 3 / 6));
        m.record_verify(2, 0.035);
        CHECK(m.verify_seconds(2) == doctest::Approx(0.7 * 0.045 + 0.3 * 0.035));
        // A draft time marked unrepresentative (< 0: a catch-up) moves the acceptance only.
        DraftLengthModel a(0, 7, 0.030, 0.052), b(0, 7, 0.030, 0.052);
        a.record_draft(3, 3, 0.009);
        b.record_draft(3, 3, 0.009);
        b.record_draft(3, 1, -1);
        a.record_draft(3, 1, 0.009);
        CHECK(a.acceptance() == b.acceptance());
        CHECK(a.rate(3) == b.rate(3));
    }
}
