// The speculative driver: draft, verify in one target forward, keep the accepted prefix.
// Drafters live in speculative_drafters.cpp; no kernels here.
#include "kiln/speculative.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <cmath>

#include "speculative/draft_length.h"
#include "speculative/verification.h"

namespace kiln {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

float prob_of(const std::vector<std::pair<int32_t, float>>& dist, int32_t token) {
    for (const auto& [t, p] : dist)
        if (t == token) return p;
    return 0.0f;
}

bool accept_draft(const std::vector<std::pair<int32_t, float>>& p, const DraftToken& d, double u) {
    const double pt = prob_of(p, d.token);
    const double qt = d.q.empty() ? 1.0 : prob_of(d.q, d.token);
    if (pt <= 0) return false;
    if (qt <= 0 || pt >= qt) return true;  // (q(x) = 0 cannot happen for a token drawn from q; keep it safe)
    return u * qt < pt;
}

int32_t sample_residual(const std::vector<std::pair<int32_t, float>>& p, const DraftToken& d, double u) {
    // r(x) = max(0, p(x) - q(x)); only tokens in p's support can be positive.
    std::vector<double> r(p.size());  // (|support of p|)
    double sum = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        const double q = d.q.empty() ? (p[i].first == d.token ? 1.0 : 0.0) : prob_of(d.q, p[i].first);
        sum += (r[i] = std::max(0.0, double(p[i].second) - q));
    }
    if (!(sum > 0)) {
        // p <= q everywhere means p == q (a rejection then has probability 0); rounding can
        // still land here, so draw from p itself.
        double cum = 0;
        for (const auto& [t, pt] : p)
            if (u < (cum += pt)) return t;
        return p.back().first;
    }
    double cum = 0;
    const double x = u * sum;
    for (size_t i = 0; i < p.size(); ++i)
        if (r[i] > 0 && x < (cum += r[i])) return p[i].first;
    for (size_t i = p.size(); i-- > 0;)
        if (r[i] > 0) return p[i].first;
    return p.back().first;
}

void verify_sampled_rows(const SampledVerification& v, std::span<const int32_t> batch, const float* logits, int n_vocab, int* accepted, int32_t* next) {
    const int nd = int(batch.size()) - 1;
    for (int m = 0; m < nd; ++m) {
        const auto p = sampling_distribution(v.params, logits + size_t(m) * size_t(n_vocab), n_vocab, v.penalized[size_t(m)]);
        const DraftToken d{batch[size_t(m) + 1], v.q[size_t(m)]};
        if (!accept_draft(p, d, v.u[size_t(2 * m)])) {
            *accepted = m;
            *next = sample_residual(p, d, v.u[size_t(2 * m + 1)]);
            return;
        }
    }
    *accepted = nd;
    *next = draw(sampling_distribution(v.params, logits + size_t(nd) * size_t(n_vocab), n_vocab, v.penalized[size_t(nd)]), v.u[size_t(2 * nd + 1)]);
}

namespace {

// Seconds of a verification of 1 and of n tokens on the empty target (the faster of two
// each; truncated after, so the prefill that follows overwrites their KV entries): the
// adaptive draft length's starting point. The first prompt token repeated: the cost does
// not depend on which tokens they are.
Status measure_verify_seconds(Session& target, int32_t token, int n, double* t1, double* tn) {
    const std::vector<int32_t> tokens(size_t(n), token);  // (n)
    auto timed = [&](int len, double* out) -> Status {
        *out = 1e30;
        for (int rep = 0; rep < 2; ++rep) {
            auto t = Clock::now();
            KILN_TRY(target.forward(std::span<const int32_t>(tokens).first(size_t(len))));
            *out = std::min(*out, seconds_since(t));
            KILN_TRY(target.truncate(0));
        }
        return Status::ok();
    };
    KILN_TRY(timed(1, t1));
    return timed(n, tn);
}

}  // namespace

Status speculative_generate(Session& target, Sampler& sampler, Drafter& drafter, std::span<const int32_t> prompt,
                            const SpecOptions& o, const TokenCallback& on_token, SpecStats* stats) {
    SpecStats local;
    SpecStats& st = stats ? *stats : local;
    if (o.draft_max < 1 || o.draft_max > kMaxDraft)
        return Status::error("--draft-max %d must be in [1, %d] (verification batches stay within the batch-invariant kernels)", o.draft_max, kMaxDraft);
    if (o.draft_min < 0 || o.draft_min > o.draft_max) return Status::error("--draft-min %d must be in [0, --draft-max %d]", o.draft_min, o.draft_max);
    if (target.n_past() != 0) return Status::error("speculative_generate: the target session must be empty (it holds %d tokens)", target.n_past());
    if (prompt.empty()) return Status::error("speculative_generate: empty prompt");
    if (int(prompt.size()) >= target.n_ctx())
        return Status::error("prompt is %zu tokens but the context holds %d; raise --ctx or shorten the prompt", prompt.size(), target.n_ctx());
    if (drafter.max_context() > 0 && drafter.max_context() < target.n_ctx())
        return Status::error("the draft's context (%d tokens) is smaller than the target's (%d); raise the draft context or lower --ctx",
                             drafter.max_context(), target.n_ctx());
    const Tokenizer& tok = target.model().tokenizer();
    const int n_vocab = target.model().config().n_vocab;
    // Greedy without a repetition penalty: a draft is kept iff it is the target's argmax.
    const SamplerParams& sp = sampler.params();
    const bool greedy = sp.temperature <= 0 && sp.repeat_penalty == 1.0f && sp.frequency_penalty == 0 && sp.presence_penalty == 0;

    // The adaptive draft length starts from verifications of 1 and 1 + draft_max tokens.
    std::optional<DraftLengthModel> lengths;
    if (o.adaptive) {
        const int n_measure = std::min(1 + o.draft_max, target.n_ctx());
        double t1 = 0, tn = 0;
        KILN_TRY(measure_verify_seconds(target, prompt[0], n_measure, &t1, &tn));
        st.verify_token_cost = n_measure > 1 ? std::max(0.0, (tn / t1 - 1) / (n_measure - 1)) : 0;
        lengths.emplace(o.draft_min, n_measure - 1, t1, tn);
    }

    // Prefill exactly as plain decoding does, so the first token and the prompt's KV
    // entries are the same bits.
    for (int32_t t : prompt) sampler.accept(t);
    auto t0 = Clock::now();
    KILN_TRY(target.forward(prompt));
    KILN_TRY(drafter.prepare(prompt));  // a draft model's own prefill: prompt processing too
    st.prefill_s += seconds_since(t0);
    st.n_prompt += int(prompt.size());
    auto t1 = Clock::now();

    std::vector<int32_t> history(prompt.begin(), prompt.end());  // prompt + generated; the last one is not in the target's KV yet
    // Emits one token; false when generation ends (the token is then not kept).
    bool done = false, eog = false;
    auto emit = [&](int32_t t) {
        if (!o.ignore_eos && tok.is_eog(t)) return eog = done = true, false;
        history.push_back(t);
        ++st.n_generated;
        if (on_token && !on_token(t)) done = true;
        if (o.n_predict >= 0 && st.n_generated >= o.n_predict) done = true;
        return !done;
    };
    {
        const int32_t first = sampler.sample(target.logits());
        sampler.accept(first);
        emit(first);
    }

    std::vector<DraftToken> drafts;
    std::vector<int32_t> batch;  // (1 + k) the pending token, then the drafts
    bool drafted_before = true;  // the previous round drafted at a cost (else this round's draft time holds a catch-up)
    while (!done) {
        const int kv = target.n_past();  // == history.size() - 1
        if (kv >= target.n_ctx()) break;  // plain decoding stops here too: no room for the pending token
        // k_max: the most drafts the round can use; k: the adaptive length within it.
        int k_max = std::min(o.draft_max, target.n_ctx() - kv - 1);
        if (o.n_predict >= 0) k_max = std::min(k_max, o.n_predict - st.n_generated - 1);  // drafts beyond that would be thrown away
        const int k = std::min(lengths ? lengths->next() : o.draft_max, k_max);
        drafts.clear();
        const double draft_s_before = st.draft_s;
        if (k_max > 0) {  // k = 0 (plain decoding wins) still lets a drafter that costs nothing propose
            auto td = Clock::now();
            KILN_TRY(drafter.draft_round(history, k, k_max, &drafts));
            st.draft_s += seconds_since(td);
            if (int(drafts.size()) > k_max) drafts.resize(size_t(k_max));
            // A draft vocabulary may be larger: ids the target does not have end the draft.
            for (size_t i = 0; i < drafts.size(); ++i)
                if (drafts[i].token < 0 || drafts[i].token >= n_vocab) {
                    drafts.resize(i);
                    break;
                }
        }
        batch.assign(1, history.back());
        for (const DraftToken& d : drafts) batch.push_back(d.token);

        auto tv = Clock::now();
        // The target runs the test itself: greedy (its argmax against the drafts) or rejection
        // sampling; on a Vulkan device only the verdict comes back.
        const int nd = int(drafts.size());
        int accepted = 0;
        int32_t next = -1;
        if (greedy) {
            KILN_TRY(target.verify_greedy(batch, &accepted, &next));
        } else {
            SampledVerification v;
            v.params = sampler.params();
            std::vector<int32_t> kept;  // the drafts before row m, accepted if row m is reached
            for (int m = 0; m <= nd; ++m) {
                v.penalized.push_back(sampler.penalized(kept));
                if (m < nd) kept.push_back(drafts[size_t(m)].token), v.q.push_back(drafts[size_t(m)].q);
            }
            for (int i = 0; i < 2 * (nd + 1); ++i) v.u.push_back(sampler.uniform());
            KILN_TRY(target.verify_sampled(batch, v, &accepted, &next));
        }
        const double verify_s = seconds_since(tv);
        st.verify_s += verify_s;
        ++st.n_rounds;
        st.n_drafted += nd;
        for (int i = 0; i < nd; ++i) ++st.drafted_at[i];
        int m = 0;  // accepted drafts emitted
        for (; m < accepted; ++m) {
            ++st.accepted_at[m];
            ++st.n_accepted;
            sampler.accept(drafts[size_t(m)].token);
            if (!emit(drafts[size_t(m)].token)) {
                ++m;
                break;
            }
        }
        if (!done) {
            sampler.accept(next);
            emit(next);
        }
        // Keep the pending token and the accepted drafts; `next` is the new pending token.
        KILN_TRY(target.truncate(kv + 1 + m));

        if (lengths) {
            lengths->record_verify(nd + 1, verify_s);
            // A draft after rounds without one first caught up on their tokens: its time is
            // not what drafting costs round after round, so only its acceptance counts.
            const bool counts = drafter.last_draft_counts() && nd > 0;
            if (counts) lengths->record_draft(nd, accepted, drafted_before ? st.draft_s - draft_s_before : -1);
            drafted_before = counts;
        }
    }
    // Leave the cache as plain decoding would: every kept token fed but the last one (which
    // is fed too when an end-of-generation token followed it).
    KILN_TRY(target.truncate(std::min(target.n_past(), int(history.size()) - (eog ? 0 : 1))));
    st.decode_s += seconds_since(t1);
    st.eog = eog;
    return Status::ok();
}

}  // namespace kiln
