// Drafting sources for the speculative driver: prompt lookup (n-gram), a draft model (also
// used for self-speculation, with layers skipped, and PARD, with mask tokens), and the
// calibration that picks the layers self-speculation skips.
#include <algorithm>
#include <cmath>

#include "kiln/speculative.h"
#include "kiln/format/weights.h"
#include "kiln/format/gguf.h"

namespace kiln {

namespace {

// ---- prompt lookup ----------------------------------------------------------------------

class LookupDrafter final : public Drafter {
public:
    LookupDrafter(int ngram_max, int ngram_min) : max_(ngram_max), min_(ngram_min) {}
    std::string name() const override { return strfmt("lookup (n-gram %d..%d)", min_, max_); }

    Status draft(std::span<const int32_t> h, int n_max, std::vector<DraftToken>* out) override {
        const int n = int(h.size());
        // Longest n-gram first; the latest earlier match wins (recent text repeats best).
        for (int g = std::min(max_, n - 1); g >= min_; --g) {
            const int32_t* tail = h.data() + n - g;
            for (int start = n - g - 1; start >= 0; --start) {
                if (!std::equal(tail, tail + g, h.data() + start)) continue;
                const int from = start + g;  // first token after the match (< n)
                const int len = std::min(n_max, lookup_draft_length(g));
                for (int i = from; i < n && int(out->size()) < len; ++i) out->push_back({h[size_t(i)], {}});
                return Status::ok();
            }
        }
        return Status::ok();
    }

    Status draft_round(std::span<const int32_t> h, int, int n_max, std::vector<DraftToken>* out) override { return draft(h, n_max, out); }

private:
    int max_, min_;
};

// Drafts with `first`; where it proposes nothing, with `then`.
class HybridDrafter final : public Drafter {
public:
    HybridDrafter(std::unique_ptr<Drafter> first, std::unique_ptr<Drafter> then) : first_(std::move(first)), then_(std::move(then)) {}
    std::string name() const override { return then_->name() + ", " + first_->name() + " first"; }
    int max_context() const override {
        const int a = first_->max_context(), b = then_->max_context();
        return a == 0 ? b : b == 0 ? a : std::min(a, b);
    }
    bool last_draft_counts() const override { return used_then_ && then_->last_draft_counts(); }
    Status prepare(std::span<const int32_t> prompt) override {
        KILN_TRY(first_->prepare(prompt));
        return then_->prepare(prompt);
    }

    Status draft(std::span<const int32_t> history, int n_max, std::vector<DraftToken>* out) override { return draft_round(history, n_max, n_max, out); }
    Status draft_round(std::span<const int32_t> history, int n_suggested, int n_max, std::vector<DraftToken>* out) override {
        const size_t before = out->size();
        KILN_TRY(first_->draft_round(history, n_suggested, n_max, out));
        used_then_ = out->size() == before;
        return used_then_ ? then_->draft_round(history, n_suggested, n_max, out) : Status::ok();
    }

private:
    std::unique_ptr<Drafter> first_, then_;
    bool used_then_ = true;
};

// Bytes a one-token forward reads, per layer (MoE: the experts a token uses) and for the
// output head: what a draft that skips layers or trims the head saves.
struct ForwardBytes {
    std::vector<double> layer;  // (n_layer)
    double head = 0, total = 0;
};
ForwardBytes forward_bytes(const Model& model) {
    const ModelConfig& c = model.config();
    ForwardBytes b;
    const double expert_share = c.n_expert > 0 ? double(c.n_expert_used) / c.n_expert : 1.0;
    for (const LayerWeights& L : model.weights().layers) {
        double bytes = 0;
        for (const TensorView* t : L.matrices())  // 3-D expert tensors: the chosen experts' share
            if (!t->empty()) bytes += double(t->nbytes()) * (t->ne[2] > 1 ? expert_share : 1.0);
        b.layer.push_back(bytes);
        b.total += bytes;
    }
    b.head = double(model.weights().output.nbytes());
    b.total += b.head;
    return b;
}

// ---- draft model (plain, self-speculative with skipped layers, or PARD) ------------------

class ModelDrafter final : public Drafter {
public:
    ModelDrafter(std::unique_ptr<Session> s, const DraftModelOptions& o, size_t head_tokens)
        : s_(std::move(s)), o_(o), sampler_(draft_params(o.sampling), s_->model().config().n_vocab), head_tokens_(head_tokens) {}

    std::string name() const override {
        if (o_.pard_mask_id >= 0) return strfmt("PARD draft model (mask id %d)", o_.pard_mask_id);
        if (!o_.skip_layers.empty() || !o_.head_tokens.empty())
            return strfmt("self-speculation (%zu of %d layers skipped, output head of %zu tokens)", o_.skip_layers.size(), s_->model().config().n_layer,
                          o_.head_tokens.empty() ? size_t(s_->model().config().n_vocab) : o_.head_tokens.size());
        return head_tokens_ ? strfmt("draft model (output head of %zu tokens)", head_tokens_) : "draft model";
    }
    int max_context() const override { return s_->n_ctx(); }
    Status prepare(std::span<const int32_t> prompt) override { return in_vocab(prompt) ? sync(prompt) : Status::ok(); }

    Status draft(std::span<const int32_t> h, int n_max, std::vector<DraftToken>* out) override {
        if (!in_vocab(h)) return Status::ok();
        KILN_TRY(sync(h));
        if (o_.pard_mask_id >= 0) return draft_pard(h, n_max, out);
        for (int i = 0; i < n_max; ++i) {
            DraftToken d;
            if (!pick(s_->logits(), &d)) break;
            out->push_back(std::move(d));
            if (i + 1 == n_max || s_->n_past() >= s_->n_ctx()) break;
            const int32_t t = out->back().token;
            KILN_TRY(s_->forward(std::span<const int32_t>(&t, 1)));
            cached_.push_back(t);
        }
        return Status::ok();
    }

private:
    // False where a target token is one the (slightly smaller) draft vocabulary lacks: no drafts then.
    bool in_vocab(std::span<const int32_t> h) const {
        const int n_vocab = s_->model().config().n_vocab;
        return std::all_of(h.begin(), h.end(), [&](int32_t t) { return t >= 0 && t < n_vocab; });
    }

    // The draft samples without a repetition penalty (any q is exact; this one is simplest).
    static SamplerParams draft_params(SamplerParams p) {
        p.repeat_penalty = 1.0f;
        p.seed ^= 0x5DEECE66DULL;
        return p;
    }

    // Brings the draft KV cache to history[0 .. n - 2] + history[n - 1] fed, so logits()
    // is the distribution after the whole history. Reuses the longest common prefix.
    Status sync(std::span<const int32_t> h) {
        size_t c = 0;
        while (c < cached_.size() && c < h.size() && cached_[c] == h[c]) ++c;
        c = std::min(c, h.size() - 1);  // at least the last token is fed, for its logits
        while (c > 0 && !s_->seq_can_keep(0, int(c))) --c;  // a hybrid draft's recurrent state exists at its last few lengths only
        KILN_TRY(s_->truncate(int(c)));
        cached_.resize(c);
        s_->add_logit_tokens(h.subspan(c));  // a trimmed head learns what the target says
        const size_t stop = o_.pard_mask_id >= 0 ? h.size() - 1 : h.size();  // PARD feeds the last one with the masks
        if (stop > c) {
            if (int(stop) > s_->n_ctx()) return Status::error("draft context full (%d tokens)", s_->n_ctx());
            KILN_TRY(s_->forward(h.subspan(c, stop - c)));
            cached_.insert(cached_.end(), h.begin() + long(c), h.begin() + long(stop));
        }
        return Status::ok();
    }

    // Draws one draft token from a row of draft logits; false if below p_min.
    bool pick(const float* logits, DraftToken* d) {
        const int n_vocab = s_->model().config().n_vocab;
        if (o_.p_min > 0) {
            // The draft's own (temperature 1) probability of its best token.
            const float mx = *std::max_element(logits, logits + n_vocab);
            double sum = 0;
            for (int i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - mx));
            if (1.0 / sum < o_.p_min) return false;
        }
        auto q = sampler_.distribution(logits);
        double r = sampler_.uniform(), cum = 0;
        d->token = q.back().first;
        for (const auto& [t, p] : q)
            if (r < (cum += p)) {
                d->token = t;
                break;
            }
        if (q.size() > 1) d->q = std::move(q);  // a single candidate is deterministic
        return true;
    }

    // PARD: [last history token, mask x (K - 1)] in one forward; row i proposes draft i.
    Status draft_pard(std::span<const int32_t> h, int n_max, std::vector<DraftToken>* out) {
        const int room = s_->n_ctx() - s_->n_past();
        const int K = std::min(n_max, room);
        if (K < 1) return Status::ok();
        std::vector<int32_t> batch(size_t(K), o_.pard_mask_id);  // (K) last token + K - 1 masks
        batch[0] = h.back();
        const int keep = s_->n_past();
        KILN_TRY(s_->forward(batch, /*all_logits=*/true));
        for (int i = 0; i < K; ++i) {
            DraftToken d;
            if (!pick(s_->logits(i), &d)) break;
            out->push_back(std::move(d));
        }
        // Keep the real token's KV entry, drop the masks'.
        KILN_TRY(s_->truncate(keep + 1));
        cached_.push_back(h.back());
        return Status::ok();
    }

    std::unique_ptr<Session> s_;
    DraftModelOptions o_;
    Sampler sampler_;
    std::vector<int32_t> cached_;  // tokens in the draft KV cache, in order
    size_t head_tokens_ = 0;       // tokens of a trimmed output head at the start; 0: the whole head
};

}  // namespace


int lookup_draft_length(int match) { return match >= 4 ? kMaxDraft : match >= 2 ? 2 : 0; }

std::unique_ptr<Drafter> make_lookup_drafter(int ngram_max, int ngram_min) {
    ngram_max = std::max(1, ngram_max);
    return std::make_unique<LookupDrafter>(ngram_max, std::clamp(ngram_min, 1, ngram_max));
}

std::unique_ptr<Drafter> make_hybrid_drafter(std::unique_ptr<Drafter> first, std::unique_ptr<Drafter> then) {
    return std::make_unique<HybridDrafter>(std::move(first), std::move(then));
}

Status check_vocab_compatible(const Model& target, const Model& draft) {
    const Tokenizer& a = target.tokenizer();
    const Tokenizer& b = draft.tokenizer();
    const std::string tname = target.gguf().path(), dname = draft.gguf().path();
    if (a.model_name() != b.model_name())
        return Status::error("draft model %s has a '%.*s' tokenizer, the target %s a '%.*s' one: vocabularies are incompatible", dname.c_str(),
                             int(b.model_name().size()), b.model_name().data(), tname.c_str(), int(a.model_name().size()), a.model_name().data());
    const int na = a.n_vocab(), nb = b.n_vocab();
    if (std::abs(na - nb) > 128)
        return Status::error("draft model %s has %d tokens, the target %s %d: vocabularies are incompatible (more than 128 apart)", dname.c_str(), nb,
                             tname.c_str(), na);
    for (int i = 0; i < std::min(na, nb); ++i)
        if (a.token_text(i) != b.token_text(i))
            return Status::error("draft model %s and target %s differ at token %d ('%s' vs '%s'): vocabularies are incompatible", dname.c_str(),
                                 tname.c_str(), i, b.token_text(i).c_str(), a.token_text(i).c_str());
    if (a.add_bos() != b.add_bos() || (a.add_bos() && a.bos() != b.bos()))
        return Status::error("draft model %s and target %s use different beginning-of-text tokens", dname.c_str(), tname.c_str());
    return Status::ok();
}

Expected<int> pard_mask_id(const Model& draft) {
    auto v = draft.gguf().get_int("tokenizer.ggml.mask_token_id", -1);
    if (!v) return Status(v.status());
    if (v.value() < 0)
        return Status::error("%s has no tokenizer.ggml.mask_token_id: set the PARD mask token (DraftModelOptions::pard_mask_id)", draft.gguf().path().c_str());
    if (v.value() >= draft.config().n_vocab) return Status::error("%s: mask token id %lld is outside the vocabulary", draft.gguf().path().c_str(), (long long)v.value());
    return int(v.value());
}

Expected<std::unique_ptr<Drafter>> make_model_drafter(std::shared_ptr<const Model> draft, const Model& target, int target_n_ctx,
                                                      const DraftModelOptions& o) {
    if (!draft) return Status::error("make_model_drafter: no draft model");
    if (draft.get() != &target) KILN_TRY(check_vocab_compatible(target, *draft));
    if (o.p_min < 0 || o.p_min > 1) return Status::error("--draft-p-min %g must be in [0, 1]", double(o.p_min));
    if (o.pard_mask_id >= draft->config().n_vocab)
        return Status::error("PARD mask token id %d is outside the draft vocabulary [0, %d)", o.pard_mask_id, draft->config().n_vocab);
    const int n_ctx = o.n_ctx > 0 ? o.n_ctx : target_n_ctx;
    if (n_ctx < target_n_ctx)
        return Status::error("draft context %d is smaller than the target context %d: the draft must hold everything the target does", n_ctx,
                             target_n_ctx);
    if (draft->config().n_ctx_train > 0 && n_ctx > draft->config().n_ctx_train)
        return Status::error("the draft model %s was trained for %d tokens of context, fewer than the %d needed; lower --ctx", draft->gguf().path().c_str(),
                             draft->config().n_ctx_train, n_ctx);
    if (int(o.skip_layers.size()) >= draft->config().n_layer) return Status::error("self-speculation cannot skip every layer");
    if (o.head_size < -1) return Status::error("draft head size %d must be >= 0 (or -1: automatic)", o.head_size);
    SessionOptions so;
    so.n_ctx = n_ctx;
    so.n_threads = o.n_threads;
    so.pool = o.pool;
    so.isa = o.isa;
    so.skip_layers = o.skip_layers;
    so.logit_tokens = o.head_tokens;
    // A separate draft model drafts from a trimmed head where that pays (a PARD draft keeps
    // its own; self-speculation calibrates its head on the prompt).
    const int V = draft->config().n_vocab;
    int head = o.head_size;
    if (head < 0) {
        const ForwardBytes bytes = forward_bytes(*draft);
        head = bytes.head > 0.25 * bytes.total && V > 2 * kDraftHeadTokens ? kDraftHeadTokens : 0;
    }
    if (so.logit_tokens.empty() && draft.get() != &target && o.pard_mask_id < 0 && head > 0 && head < V)
        so.logit_tokens = draft_head_tokens(*draft, {}, head);
    auto s = Session::create(std::move(draft), so);
    if (!s) return Status(s.status());
    return std::unique_ptr<Drafter>(new ModelDrafter(std::move(s.value()), o, so.logit_tokens.size()));
}

std::vector<int32_t> draft_head_tokens(const Model& model, std::span<const int32_t> context, int n) {
    const Tokenizer& tok = model.tokenizer();
    const int V = model.config().n_vocab;
    std::vector<char> keep(static_cast<size_t>(V), 0);  // (V) chosen
    std::vector<int32_t> out;
    auto add = [&](int32_t t) {
        if (t >= 0 && t < V && !keep[size_t(t)] && int(out.size()) < n) keep[size_t(t)] = 1, out.push_back(t);
    };
    for (int32_t t = 0; t < V; ++t)
        if (tok.is_eog(t)) add(t);
    for (int32_t t : context) add(t);
    // Single ASCII characters (letters and digits of lists and code; Gemma ranks them last).
    for (int32_t t = 0; t < V; ++t) {
        const std::string& text = tok.token_text(t);
        if (text.size() == 1 && text[0] > ' ' && text[0] < 127 && tok.token_type(t) == TokenType::Normal) add(t);
    }
    // SentencePiece scores rank pieces by frequency; byte-level BPE vocabularies are in merge
    // order (frequent pairs merge first), so a lower id is the more common token.
    std::vector<int32_t> order(static_cast<size_t>(V));
    for (int32_t t = 0; t < V; ++t) order[size_t(t)] = t;
    if (tok.model_name() == "llama")
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return tok.token_score(a) > tok.token_score(b); });
    for (int32_t t : order) {
        if (int(out.size()) >= n) break;
        const TokenType type = tok.token_type(t);
        if (type == TokenType::Normal || type == TokenType::Byte || type == TokenType::UserDefined) add(t);
    }
    std::sort(out.begin(), out.end());
    return out;
}

Expected<SkipCalibration> calibrate_skip_layers(std::shared_ptr<const Model> model, std::span<const int32_t> tokens, const SessionOptions& so_in,
                                                int max_skip, bool trim_head) {
    if (!model) return Status::error("calibrate_skip_layers: no model");
    if (tokens.size() < 2) return Status::error("calibrate_skip_layers: need at least 2 calibration tokens");
    const int L = model->config().n_layer, V = model->config().n_vocab, T = int(tokens.size());
    if (max_skip < 0) max_skip = L / 2;
    max_skip = std::min(max_skip, L - 2);
    SessionOptions so = so_in;
    so.n_ctx = T;
    so.skip_layers.clear();
    so.logit_tokens.clear();
    // Top-1 picks of a skip set and head at every calibration position.
    auto picks = [&](const std::vector<int>& skip, const std::vector<int32_t>& head) -> Expected<std::vector<int32_t>> {
        SessionOptions o = so;
        o.skip_layers = skip;
        o.logit_tokens = head;
        auto s = Session::create(model, o);
        if (!s) return Status(s.status());
        KILN_TRY(s.value()->forward(tokens, /*all_logits=*/true));
        std::vector<int32_t> out(static_cast<size_t>(T));  // (T) argmax per position
        for (int i = 0; i < T; ++i) {
            const float* l = s.value()->logits(i);
            out[size_t(i)] = int32_t(std::max_element(l, l + V) - l);
        }
        return out;
    };
    auto full = picks({}, {});
    if (!full) return Status(full.status());
    auto agreement = [&](const std::vector<int>& skip, const std::vector<int32_t>& head) -> Expected<double> {
        auto p = picks(skip, head);
        if (!p) return Status(p.status());
        int same = 0;
        for (int i = 0; i < T; ++i) same += p.value()[size_t(i)] == full.value()[size_t(i)];
        return double(same) / T;
    };
    // Tokens per round over cost per round (in single-token decodes) for the best k:
    // per-token acceptance a, draft cost c per token, and each verified token adding
    // kVerifyTokenCost (measured: a forward of 8 tokens of SmolLM2 on one Zen 4 core costs
    // about 3.5 decodes, the small-batch matmuls being compute bound there).
    constexpr double kVerifyTokenCost = 0.35;
    auto speedup = [](double a, double c) {
        double best = 0;
        for (int k = 1; k <= kMaxDraft; ++k) {
            const double tokens = a >= 1 ? k + 1 : (1 - std::pow(a, k + 1)) / (1 - a);
            best = std::max(best, tokens / (1.0 + k * (c + kVerifyTokenCost)));
        }
        return best;
    };
    // The draft's cost per token: the share of the bytes per token it reads.
    const ForwardBytes bytes = forward_bytes(*model);
    auto draft_cost = [&](const std::vector<int>& skip, size_t head_rows) {
        double b = bytes.total - bytes.head + bytes.head * double(head_rows) / V;
        for (int il : skip) b -= bytes.layer[size_t(il)];
        return b / bytes.total;
    };
    // Heads to try: the whole one, and trimmed ones when the head is a large share of the
    // bytes (small models with big vocabularies: Gemma 3 270M's is 72%).
    std::vector<std::vector<int32_t>> heads = {{}};
    if (trim_head && bytes.head > 0.25 * bytes.total)
        for (int n : {32768, 8192})
            if (n < V / 2) heads.push_back(draft_head_tokens(*model, tokens, n));

    SkipCalibration r;
    r.est_speedup = 0;
    auto consider = [&](const std::vector<int>& skip, const std::vector<int32_t>& head, double agree) {
        const double est = speedup(agree, draft_cost(skip, head.empty() ? size_t(V) : head.size()));
        if (est > r.est_speedup) r.est_speedup = est, r.agreement = agree, r.skip_layers = skip, r.head_tokens = head;
    };
    // A trimmed head alone (every layer kept).
    for (size_t h = 1; h < heads.size(); ++h) {
        auto a = agreement({}, heads[h]);
        if (!a) return Status(a.status());
        consider({}, heads[h], a.value());
    }
    // Greedy by single-layer damage: each middle layer is skipped alone once (the first and
    // last layers matter most and are never skipped), then layers are added in order of
    // least damage, and the prefix with the best estimated speedup wins. About 1.5 x
    // n_layer forwards of the calibration text instead of n_layer^2 / 2 for a full greedy
    // search, which on SmolLM2 picked nearly the same sets. Each prefix is tried with
    // each head.
    std::vector<std::pair<double, int>> alone;  // (agreement with only this layer skipped, layer)
    for (int il = 1; il < L - 1; ++il) {
        auto a = agreement({il}, {});
        if (!a) return Status(a.status());
        alone.push_back({a.value(), il});
    }
    std::stable_sort(alone.begin(), alone.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    std::vector<int> skip;
    for (int step = 0; step < max_skip && step < int(alone.size()); ++step) {
        skip.push_back(alone[size_t(step)].second);
        double agree = alone[size_t(step)].first;
        if (step > 0) {
            auto a = agreement(skip, {});
            if (!a) return Status(a.status());
            agree = a.value();
        }
        r.steps.push_back({skip.back(), agree});
        consider(skip, {}, agree);
        for (size_t h = 1; h < heads.size() && agree >= 0.5; ++h) {
            auto a = agreement(skip, heads[h]);
            if (!a) return Status(a.status());
            consider(skip, heads[h], a.value());
        }
        if (agree < 0.2) break;  // nothing useful beyond this
    }
    std::sort(r.skip_layers.begin(), r.skip_layers.end());
    return r;
}

}  // namespace kiln
