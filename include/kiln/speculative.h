// Speculative decoding: a drafter proposes k tokens, the target model checks them all in
// one forward(k + 1) and keeps the longest acceptable prefix plus one token of its own.
//
//   auto drafter = kiln::make_lookup_drafter(3);                 // or a draft model, self, PARD
//   kiln::SpecStats st;
//   kiln::speculative_generate(target, sampler, *drafter, prompt, {}, on_token, &st);
//
// Verification is exact: greedy output equals plain greedy decoding token for token, and
// sampled output follows the target's distribution (temperature, top-k, top-p, min-p and
// repetition penalty included) by rejection sampling: a draft token x drawn from q is kept
// with probability min(1, p(x) / q(x)); on rejection the token is drawn from
// norm(max(0, p - q)). Greedy equality also needs the target's logits of a token to be
// the same in a k+1-token forward as in a 1-token one; the matmul kernels guarantee that
// up to 8 tokens per forward, hence draft_max <= 7.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kiln/model.h"
#include "kiln/sampler.h"
#include "kiln/session.h"
#include "kiln/status.h"
#include "kiln/thread_pool.h"

namespace kiln {

// One round of stochastic speculative verification (rejection sampling, speculative.h)
// over a batch of n tokens: the pending token, then n - 1 drafts.
struct SampledVerification {
    SamplerParams params;  // the target's sampling chain (temperature > 0)
    std::vector<std::vector<int32_t>> penalized;            // (n) tokens the penalties hit at row m (drafts < m kept), as Sampler::penalized()
    std::vector<std::vector<std::pair<int32_t, float>>> q;  // (n - 1) the distribution draft m was drawn from; empty: drafted with certainty
    // (2n) uniforms in [0, 1): u[2m] tests draft m, u[2m + 1] draws row m's token after a
    // rejection there (or after the last draft). Drawn up front, so the device and the host
    // consume the same numbers; each is used at most once, so the rule stays exact.
    std::vector<double> u;
};


// Largest draft length: verification of 1 + 7 tokens stays in the batch-invariant kernels.
constexpr int kMaxDraft = 7;

// One drafted token and the distribution it was drawn from.
struct DraftToken {
    int32_t token = 0;
    // (token, probability) pairs `token` was sampled from; empty: chosen deterministically
    // (q = 1 on `token`), as prompt lookup and greedy drafting do.
    std::vector<std::pair<int32_t, float>> q;
};

// A source of draft tokens. Implement it to plug in your own (see make_lookup_drafter).
class Drafter {
public:
    virtual ~Drafter() = default;
    // Appends up to n_max (>= 1) tokens that may follow `history` (the prompt and every
    // token generated so far) to *out. Fewer, or none, is fine.
    virtual Status draft(std::span<const int32_t> history, int n_max, std::vector<DraftToken>* out) = 0;
    // What the speculative driver calls each round: n_suggested (<= n_max) is the adaptive
    // draft length, from the acceptance and costs of earlier rounds. A drafter that pays per
    // token (a draft model) drafts that many, the default; one that sizes its drafts itself
    // at no cost (prompt lookup) may go on to n_max.
    // n_suggested may be 0: plain decoding pays more than drafting at a cost this round.
    virtual Status draft_round(std::span<const int32_t> history, int n_suggested, int n_max, std::vector<DraftToken>* out) {
        (void)n_max;
        return n_suggested > 0 ? draft(history, n_suggested, out) : Status::ok();
    }
    // Called once with the prompt, after the target's prefill and before the first round: a
    // drafter with a model of its own processes the prompt here, so that no round's draft
    // time holds it (the adaptive length would take it for the cost of drafting).
    virtual Status prepare(std::span<const int32_t> prompt) {
        (void)prompt;
        return Status::ok();
    }
    // Largest history + draft length the drafter can hold; 0: unlimited.
    virtual int max_context() const { return 0; }
    virtual std::string name() const = 0;
    // False when the last draft came from a source that sizes its drafts itself and costs
    // next to nothing (prompt lookup inside a hybrid drafter): the adaptive draft length
    // leaves such rounds out of its statistics, which then describe the costly source.
    virtual bool last_draft_counts() const { return true; }
};

// Prompt lookup: finds the latest earlier occurrence of the history's last n tokens
// (n = ngram_max down to ngram_min) and proposes up to lookup_draft_length(n) of the tokens
// that followed it.
std::unique_ptr<Drafter> make_lookup_drafter(int ngram_max, int ngram_min = 1);
// How far a lookup match of n tokens is trusted: nothing after a 1-token match (a space, a
// bracket: it says little), 2 tokens after 2-3, kMaxDraft from 4 on (a copy is under way).
// On the code-editing prompts of bench/spec.sh, against always kMaxDraft: fewer wasted
// verification rows, the larger gain where verification is compute-bound.
int lookup_draft_length(int match);
// Drafts with `first` (cheap, e.g. prompt lookup with a long minimum match) and, where it
// proposes nothing, with `then` (a draft model, which catches up on the tokens it did not
// draft in one forward when next asked).
std::unique_ptr<Drafter> make_hybrid_drafter(std::unique_ptr<Drafter> first, std::unique_ptr<Drafter> then);
// The prompt lookup a draft model gets in front of it by default: n-grams of 8 down to 4.
constexpr int kHybridLookupMax = 8, kHybridLookupMin = 4;

struct DraftModelOptions {
    int n_ctx = 0;              // draft KV cache; 0: the target session's context
    int n_threads = 0;          // 0: one per core
    std::shared_ptr<ThreadPool> pool;  // the target session's (Session::shared_pool()); null: a pool of n_threads
    const char* isa = nullptr;  // as SessionOptions::isa
    float p_min = 0.0f;         // stop drafting when the draft's probability of its token falls below this
    SamplerParams sampling;     // the draft samples from this (temperature <= 0: greedy drafts)
    std::vector<int> skip_layers;  // self-speculation: layers the draft leaves out
    // Self-speculation: the draft's trimmed output head (SessionOptions::logit_tokens, e.g.
    // from draft_head_tokens); empty: the whole vocabulary.
    std::vector<int32_t> head_tokens;
    int pard_mask_id = -1;      // >= 0: PARD, K tokens per draft forward with K - 1 mask tokens
    // A separate draft model's output head trimmed to this many tokens (draft_head_tokens,
    // growing by the tokens of the history as they come): a draft token outside it is never
    // proposed, so this trades a little acceptance for a cheaper draft. -1: automatic,
    // kDraftHeadTokens where the head is over a quarter of the bytes a draft token reads
    // (Qwen2.5-Coder-0.5B: 145 of 397 MB) and the vocabulary over twice that; 0: the whole head.
    int head_size = -1;
};

// The automatic trimmed head of a draft model (DraftModelOptions::head_size).
constexpr int kDraftHeadTokens = 32768;

// Checks that `draft` can propose tokens for `target`: the same tokenizer type, the same
// token text for every id the two share, vocabularies within 128 ids of each other.
Status check_vocab_compatible(const Model& target, const Model& draft);

// A draft model (its own Session and KV cache, kept consistent with the history across
// rounds). `target` is the model it drafts for (vocabulary and context checks).
Expected<std::unique_ptr<Drafter>> make_model_drafter(std::shared_ptr<const Model> draft, const Model& target, int target_n_ctx,
                                                      const DraftModelOptions& o);

// The PARD mask token id from GGUF metadata (tokenizer.ggml.mask_token_id), or an error
// telling the user to pass one.
Expected<int> pard_mask_id(const Model& draft);

// Self-speculation calibration: adds layers to the skip set in order of how little each
// alone changes the full model's top-1 picks on `tokens` (teacher-forced), and returns the
// prefix of that order with the best estimated speedup (est_speedup < 1: self-speculation
// is not expected to pay on this model and machine; the set is still the best found).
struct SkipCalibration {
    std::vector<int> skip_layers;
    std::vector<int32_t> head_tokens;  // the draft's trimmed output head; empty: the whole one
    double agreement = 1;       // top-1 agreement of the chosen set
    double est_speedup = 0;     // from the agreement, the fraction of the bytes per token the draft reads and the verification cost
    std::vector<std::pair<int, double>> steps;  // (layer added, agreement after adding it)
};
// With trim_head, each skip set is also tried with output heads trimmed to 32768 and 8192
// tokens (draft_head_tokens of `tokens`), when the head is a large share of the model.
Expected<SkipCalibration> calibrate_skip_layers(std::shared_ptr<const Model> model, std::span<const int32_t> tokens,
                                                const SessionOptions& so, int max_skip = -1, bool trim_head = true);

// The n tokens a self-speculative draft's trimmed head keeps: every token of `context`
// and every end-of-generation token, then the most common tokens by the vocabulary's own
// order (SentencePiece scores, highest first; BPE ids, lowest first: earlier merges).
std::vector<int32_t> draft_head_tokens(const Model& model, std::span<const int32_t> context, int n);

struct SpecOptions {
    int draft_max = kMaxDraft;  // 1..kMaxDraft tokens per round
    int draft_min = 0;     // the adaptive length never goes below this (0: it may choose plain decoding)
    // Adaptive draft length: each round drafts the k with the most expected tokens per
    // second, from the running (decayed) per-token acceptance, the measured seconds per
    // drafted token and the measured seconds of a verification of each size (a few
    // forwards of 1 and 1 + draft_max tokens before the prefill start them off); k = 0,
    // plain decoding, where no draft pays (src/speculative/draft_length.h). Prompt lookup, which costs
    // nothing, sizes its own drafts up to draft_max. Timings steer it, so when sampling
    // (temperature > 0) the same seed repeats its tokens only with adaptive = false: other
    // draft lengths consume the random draws differently. Greedy output never depends on it.
    bool adaptive = true;
    int n_predict = 128;   // -1: until end of generation or a full context
    bool ignore_eos = false;
};

struct SpecStats {
    int n_prompt = 0, n_generated = 0;
    int n_rounds = 0;                 // target verification forwards
    int n_drafted = 0, n_accepted = 0;
    int drafted_at[kMaxDraft] = {};   // drafts proposed at position i of a round
    int accepted_at[kMaxDraft] = {};  // ... of which accepted
    double prefill_s = 0, draft_s = 0, verify_s = 0, decode_s = 0;  // decode_s: everything after prefill
    double verify_token_cost = 0;     // measured before the prefill: one more verified token's cost relative to one (adaptive only)
    bool eog = false;                 // generation ended at an end-of-generation token

    double acceptance_rate() const { return n_drafted ? double(n_accepted) / n_drafted : 0; }
    // Accepted drafts per verification round.
    double mean_accepted() const { return n_rounds ? double(n_accepted) / n_rounds : 0; }
    // Generated tokens per second after the first (as plain decoding reports it).
    double decode_tps() const { return decode_s > 0 && n_generated > 1 ? (n_generated - 1) / decode_s : 0; }
};

// Called with each generated token; return false to stop.
using TokenCallback = std::function<bool(int32_t)>;

// Generates from `prompt` on an empty target session. The first token comes from the
// prompt's logits as in plain decoding, then each round drafts, verifies and keeps the
// target's KV cache to exactly the accepted tokens. Stops at n_predict tokens, an
// end-of-generation token (not passed on, as in plain decoding), a full context, or when
// on_token returns false.
Status speculative_generate(Session& target, Sampler& sampler, Drafter& drafter, std::span<const int32_t> prompt,
                            const SpecOptions& o, const TokenCallback& on_token, SpecStats* stats);

}  // namespace kiln
