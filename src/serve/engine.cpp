// Engine: the continuous-batching scheduler and prefix cache (include/kiln/engine.h).
//
// Determinism: a request's reply must not depend on what else is running. Session::decode
// is batch invariant given each sequence's share of a chunk, and that share picks the
// kernels (a few tokens: the row kernels; more: the GEMM, whose rows do not depend on how
// many there are). So a prompt is cut the same way whatever the load: whole pages of
// kKvPagePositions in chunks of one or more pages (GEMM), then its last page's tokens in a
// chunk of their own; and a cached prefix is reused in whole pages only, ending before that
// last page. The same request alone, under load, or with a cache hit gives the same bits.
// Reused whole pages also need no copy.
#include "kiln/engine.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "kiln/speculative.h"
#include "kiln/tokenizer.h"
#include "runtime/stop_text.h"
#include "serve/draft_runner.h"

namespace kiln {

using Clock = std::chrono::steady_clock;
constexpr int kPage = kKvPagePositions;
constexpr int kMaxLogprobs = 20;

struct Engine::Running {
    std::shared_ptr<RequestHandle> handle;
    EngineRequest req;
    int seq = -1;
    int n_cached = 0;        // prompt tokens reused from the prefix cache
    int n_fed = 0;           // prompt tokens in the KV cache (cached ones included)
    int n_generated = 0;
    int32_t pending = -1;    // the sampled token the next step feeds (-1: still in the prompt)
    Sampler sampler;
    StopText text;
    std::optional<GrammarMatcher> grammar;  // constrained requests
    bool speculate = false;                 // drafts are verified for this request (greedy, when the engine drafts)
    std::unique_ptr<Drafter> drafter;       // prompt lookup
    std::vector<int32_t> history;           // with a drafter: the prompt and every token generated
    int n_drafts = 0;                       // drafts behind the pending token in this step's batch
    int spec_wait = 0, spec_backoff = 0;    // steps to go without drafts after a round that kept none; the next wait
    Running(std::shared_ptr<RequestHandle> h, EngineRequest r, const Tokenizer& tok, int n_vocab)
        : handle(std::move(h)), req(std::move(r)), sampler(req.sampling, n_vocab), text(tok, req.stop) {}
};

bool RequestHandle::next(EngineEvent* e, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!ready_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
    *e = std::move(events_.front());
    events_.pop_front();
    return true;
}

void RequestHandle::push(EngineEvent e) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        events_.push_back(std::move(e));
    }
    ready_.notify_all();
}

Expected<std::unique_ptr<Engine>> Engine::create(std::shared_ptr<const Model> model, const EngineOptions& o) {
    if (!model) return Status::error("Engine::create: no model");
    if (o.n_parallel < 1 || o.n_parallel > 256) return Status::error("EngineOptions::n_parallel %d must be in [1, 256]", o.n_parallel);
    if (o.step_tokens < kPage + o.n_parallel)
        return Status::error("EngineOptions::step_tokens %d must be at least %d (a prompt chunk of %d beside one token per slot)", o.step_tokens,
                             kPage + o.n_parallel, kPage);
    if (o.max_queue < 0) return Status::error("EngineOptions::max_queue %d must be >= 0", o.max_queue);
    if (o.draft_max < 1 || o.draft_max > kMaxDraft) return Status::error("EngineOptions::draft_max %d must be in [1, %d]", o.draft_max, kMaxDraft);
    if (o.cache_entries < 0) return Status::error("EngineOptions::cache_entries %d must be >= 0", o.cache_entries);
    if (o.n_ctx_per_seq < 0) return Status::error("EngineOptions::n_ctx_per_seq %d must be >= 0", o.n_ctx_per_seq);
    std::unique_ptr<Engine> e(new Engine());
    e->model_ = model;
    e->options_ = o;
    const int trained = model->config().n_ctx_train > 0 ? model->config().n_ctx_train : 4096;
    const int per_seq = o.n_ctx_per_seq > 0 ? o.n_ctx_per_seq : std::min(trained, 4096);
    e->n_ctx_per_seq_ = std::max(kPage, per_seq / kPage * kPage);
    const int slots = o.n_parallel * e->n_ctx_per_seq_;
    const int cache = o.cache_positions < 0 ? slots : (o.cache_positions + kPage - 1) / kPage * kPage;
    const int entries = o.cache_entries > 0 ? o.cache_entries : 2 * o.n_parallel;
    SessionOptions so = o.session;
    so.n_ctx = slots + cache;
    so.n_seq_max = o.n_parallel + entries;
    so.n_batch = o.step_tokens;
    auto session = Session::create(model, so);
    if (!session) return session.status();
    e->session_ = std::move(session.value());
    e->seqs_.resize(size_t(so.n_seq_max));
    if (o.draft_model) {
        auto d = DraftRunner::create(o.draft_model, *model, *e->session_);
        if (!d) return d.status();
        e->draft_ = std::move(d.value());
    }
    e->metrics_.kv_total = e->session_->n_ctx();
    e->thread_ = std::thread([p = e.get()] { p->loop(); });
    return e;
}

Engine::~Engine() {
    shutdown();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        exit_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

Expected<std::shared_ptr<RequestHandle>> Engine::submit(EngineRequest r, Refusal* why) {
    auto refuse = [&](Refusal kind, Status s) -> Expected<std::shared_ptr<RequestHandle>> {
        if (why) *why = kind;
        if (kind != Refusal::Invalid) {
            std::lock_guard<std::mutex> lock(mutex_);
            ++metrics_.requests_refused;
        }
        return s;
    };
    if (why) *why = Refusal::None;
    const int n_vocab = model_->config().n_vocab;
    if (r.prompt.empty()) return refuse(Refusal::Invalid, Status::error("the prompt is empty"));
    for (int32_t t : r.prompt)
        if (t < 0 || t >= n_vocab) return refuse(Refusal::Invalid, Status::error("prompt token %d is outside the vocabulary (%d tokens)", t, n_vocab));
    const int n = int(r.prompt.size());
    if (n >= n_ctx_per_seq_)
        return refuse(Refusal::Invalid, Status::error("the prompt is %d tokens but a request may use %d (the context per sequence); shorten it", n, n_ctx_per_seq_));
    if (r.max_tokens >= 0 && n + r.max_tokens > n_ctx_per_seq_)
        return refuse(Refusal::Invalid, Status::error("the prompt (%d tokens) plus max_tokens (%d) is past the context per sequence (%d)", n,
                                                      r.max_tokens, n_ctx_per_seq_));
    if (r.n_logprobs > kMaxLogprobs) return refuse(Refusal::Invalid, Status::error("top_logprobs %d is more than %d", r.n_logprobs, kMaxLogprobs));
    for (const std::string& s : r.stop)
        if (s.empty()) return refuse(Refusal::Invalid, Status::error("an empty stop string"));
    if (Status s = validate(r.sampling); !s) return refuse(Refusal::Invalid, s);
    if (!r.grammar.empty())
        if (auto g = Grammar::parse(r.grammar); !g) return refuse(Refusal::Invalid, g.status());
    auto handle = std::make_shared<RequestHandle>();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) {
            ++metrics_.requests_refused;
            if (why) *why = Refusal::Stopping;
            return Status::error("the server is shutting down");
        }
        if (int(queue_.size()) >= options_.max_queue && metrics_.running + int(queue_.size()) >= options_.n_parallel) {
            ++metrics_.requests_refused;
            if (why) *why = Refusal::QueueFull;
            return Status::error("the queue is full (%zu requests waiting for %d slots)", queue_.size(), options_.n_parallel);
        }
        ++metrics_.requests;
        metrics_.prompt_tokens += uint64_t(n);
        queue_.emplace_back(handle, std::move(r));
        metrics_.queued = int(queue_.size());
    }
    wake_.notify_all();
    return handle;
}

void Engine::shutdown() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
        for (auto& [h, r] : queue_) h->cancel();
    }
    wake_.notify_all();
    std::unique_lock<std::mutex> lock(mutex_);
    // Running requests are cancelled by the engine thread at its next step (it sees stopping_).
    wake_.wait(lock, [&] { return queue_.empty() && metrics_.running == 0; });
}

EngineMetrics Engine::metrics() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return metrics_;
}

void Engine::loop() {
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return exit_ || !queue_.empty() || !running_.empty(); });
            if (exit_ && queue_.empty() && running_.empty()) return;
        }
        step();
        wake_.notify_all();  // shutdown() waits for the running count to reach 0
    }
}

// A sequence id with nothing in it; evicts the least recently used cached prefix (never
// `keep_from`) when none is free. -1 when every id is busy (cannot happen: there are more
// ids than slots).
int Engine::take_sequence(int keep_from) {
    int lru = -1;
    for (int s = 0; s < int(seqs_.size()); ++s) {
        if (seqs_[size_t(s)].busy || s == keep_from) continue;
        if (seqs_[size_t(s)].tokens.empty()) return s;
        if (lru < 0 || seqs_[size_t(s)].last_used < seqs_[size_t(lru)].last_used) lru = s;
    }
    if (lru >= 0) release(lru, /*keep=*/false);
    return lru;
}

void Engine::release(int seq, bool keep) {
    SeqInfo& s = seqs_[size_t(seq)];
    s.busy = false;
    s.last_used = ++clock_;
    if (!keep) {
        (void)session_->seq_remove(seq);  // cannot fail: a valid id
        if (draft_) draft_->remove(seq);
        s.tokens.clear();
    }
}

// Evicts cached prefixes, least recently used first, until `pages` free pages exist.
void Engine::make_room(int pages) {
    while (session_->free_positions() < pages * kPage) {
        int lru = -1;
        for (int s = 0; s < int(seqs_.size()); ++s)
            if (!seqs_[size_t(s)].busy && !seqs_[size_t(s)].tokens.empty() && (lru < 0 || seqs_[size_t(s)].last_used < seqs_[size_t(lru)].last_used)) lru = s;
        if (lru < 0) return;
        release(lru, /*keep=*/false);
    }
}

void Engine::admit(std::shared_ptr<RequestHandle> handle, EngineRequest req) {
    const std::vector<int32_t>& prompt = req.prompt;
    // The sequence sharing the longest prefix with the prompt, in whole pages, leaving at
    // least one prompt token to compute (its logits give the first reply token).
    int src = -1, reuse = 0;
    const bool hybrid = model_->config().is_hybrid();
    if (req.cache_prompt)
        for (int s = 0; s < int(seqs_.size()); ++s) {
            const std::vector<int32_t>& t = seqs_[size_t(s)].tokens;
            const size_t lcp = size_t(std::mismatch(t.begin(), t.end(), prompt.begin(), prompt.end()).first - t.begin());
            int usable = int(std::min(lcp, prompt.size() - 1));
            if (!hybrid) usable = usable / kPage * kPage;
            else  // a hybrid model's recurrent state exists at a sequence's last few lengths only
                while (usable > 0 && !session_->seq_can_keep(s, usable)) --usable;
            if (usable > reuse) src = s, reuse = usable;
        }
    int seq;
    if (src >= 0 && !seqs_[size_t(src)].busy) {
        seq = src;  // take over the cached prefix itself
        (void)session_->seq_truncate(seq, reuse);
        if (draft_) draft_->truncate(seq, reuse);
    } else {
        seq = take_sequence(src);
        if (src >= 0) (void)session_->seq_fork(src, seq, reuse);  // shares whole pages
        if (src >= 0 && draft_) draft_->fork(src, seq, reuse);
    }
    seqs_[size_t(seq)].busy = true;
    seqs_[size_t(seq)].last_used = ++clock_;
    seqs_[size_t(seq)].tokens.assign(prompt.begin(), prompt.begin() + reuse);
    auto r = std::make_unique<Running>(std::move(handle), std::move(req), model_->tokenizer(), model_->config().n_vocab);
    r->seq = seq;
    r->n_cached = r->n_fed = reuse;
    const SamplerParams& sp = r->req.sampling;
    const bool greedy = sp.temperature <= 0 && sp.repeat_penalty == 1.0f && sp.frequency_penalty == 0 && sp.presence_penalty == 0;
    r->speculate = (options_.lookup_ngram > 0 || draft_) && r->req.speculative && greedy && r->req.grammar.empty();
    if (r->speculate && options_.lookup_ngram > 0) {
        r->drafter = make_lookup_drafter(options_.lookup_ngram);
        r->history = r->req.prompt;
    }
    if (!r->req.grammar.empty()) {
        r->grammar.emplace(Grammar::parse(r->req.grammar).value());  // parsed once in submit() already
        if (!pieces_) pieces_ = std::make_unique<TokenPieces>(TokenPieces::of(model_->tokenizer()));
    }
    for (int32_t t : r->req.prompt) r->sampler.accept(t);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.prompt_tokens_cached += uint64_t(reuse);
        metrics_.prefix_cache_hits += reuse > 0;
        ++metrics_.running;
    }
    running_.push_back(std::move(r));
}

void Engine::finish(Running& r, StopReason why, std::string error) {
    EngineEvent e;
    e.text = error.empty() ? r.text.take(/*final=*/true) : std::string();
    e.done = true;
    e.stop = why;
    e.error = std::move(error);
    e.n_prompt = int(r.req.prompt.size());
    e.n_cached = r.n_cached;
    e.n_generated = r.n_generated;
    // The sequence stays as a cached prefix (what its KV cache holds) unless asked not to,
    // or when it failed.
    release(r.seq, r.req.cache_prompt && e.error.empty() && !seqs_[size_t(r.seq)].tokens.empty());
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++metrics_.requests_finished;
        --metrics_.running;
        metrics_.requests_cancelled += why == StopReason::Cancelled;
    }
    r.handle->push(std::move(e));
    r.seq = -1;
}

// Samples from one row of logits and streams the token; finishes the request when it stops.
void Engine::emit_token(Running& r, int32_t token, const float* logits) {
    const Tokenizer& tok = model_->tokenizer();
    const int n_vocab = model_->config().n_vocab;
    EngineEvent e;
    if (r.req.n_logprobs >= 0) {
        const float log_z = float(log_sum_exp(logits, n_vocab));  // log softmax: logit - log_z
        e.chosen = {token, logits[token] - log_z};
        if (r.req.n_logprobs > 0) {
            std::vector<int32_t> ids(static_cast<size_t>(n_vocab));  // token ids, best k first
            for (int i = 0; i < n_vocab; ++i) ids[size_t(i)] = i;
            const size_t k = size_t(std::min(r.req.n_logprobs, n_vocab));
            std::partial_sort(ids.begin(), ids.begin() + long(k), ids.end(),
                              [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
            for (size_t i = 0; i < k; ++i) e.top.push_back({ids[i], logits[ids[i]] - log_z});
        }
    }
    r.sampler.accept(token);
    if (r.drafter) r.history.push_back(token);
    if (!r.req.ignore_eos && tok.is_eog(token)) return finish(r, StopReason::EndOfGeneration);
    ++r.n_generated;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++metrics_.generated_tokens;
    }
    e.token = token;
    if (r.grammar) r.grammar->accept(pieces_->piece[size_t(token)]);  // sample_constrained picked an allowed token
    const bool stopped = r.text.push(token);
    if (!stopped) e.text = r.text.take(/*final=*/false);
    r.handle->push(std::move(e));
    if (stopped) return finish(r, StopReason::StopString);
    if (r.grammar && !r.grammar->can_continue()) return finish(r, StopReason::EndOfGeneration);  // the grammar is done
    if (r.req.max_tokens >= 0 && r.n_generated >= r.req.max_tokens) return finish(r, StopReason::Length);
    if (session_->seq_length(r.seq) + 1 > n_ctx_per_seq_) return finish(r, StopReason::ContextFull);
    r.pending = token;
}

// Rows i .. i + k of the batch: a request's pending token and its k drafts. Keeps the drafts
// while each equals the greedy pick after the row before, drops the rest from the KV cache,
// and emits the picks (the accepted drafts and the token after them). Returns k.
int Engine::verify_drafts(Running& r, const Batch& batch, int i) {
    const int k = r.n_drafts;
    r.n_drafts = 0;
    std::vector<int32_t> picks;  // the greedy token after rows i, i + 1, ... while the drafts match
    int m = 0;
    for (;;) {
        picks.push_back(r.sampler.sample(session_->batch_logits(i + m)));  // greedy: no state changes
        if (m < k && picks.back() == batch.token[size_t(i + 1 + m)]) ++m;
        else break;
    }
    (void)session_->seq_truncate(r.seq, batch.pos[size_t(i)] + 1 + m);  // the pending token and m drafts stay
    if (draft_) draft_->truncate(r.seq, batch.pos[size_t(i)] + 1 + m);
    // A round that kept nothing: wait 1, 2, 4, ... 16 steps before drafting again (text that
    // does not repeat itself should not pay for verification rows).
    r.spec_backoff = m > 0 ? 0 : std::min(16, std::max(1, 2 * r.spec_backoff));
    r.spec_wait = r.spec_backoff;
    SeqInfo& info = seqs_[size_t(r.seq)];
    info.tokens.insert(info.tokens.end(), batch.token.begin() + i, batch.token.begin() + i + 1 + m);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.spec_drafted += uint64_t(k);
        metrics_.spec_accepted += uint64_t(m);
    }
    r.pending = -2;
    for (int j = 0; j <= m && r.seq >= 0; ++j) emit_token(r, picks[size_t(j)], session_->batch_logits(i + j));
    return k;
}

bool Engine::step() {
    // Cancelled requests leave (all of them when stopping); queued ones take free slots.
    bool stopping;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping = stopping_;
    }
    for (auto& r : running_)
        if (stopping || r->handle->cancelled()) finish(*r, StopReason::Cancelled);
    std::erase_if(running_, [](const auto& r) { return r->seq < 0; });
    std::vector<std::pair<std::shared_ptr<RequestHandle>, int>> dropped;  // cancelled while waiting: (handle, prompt length)
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = queue_.begin(); it != queue_.end();)
            if (it->first->cancelled()) {
                dropped.emplace_back(it->first, int(it->second.prompt.size()));
                it = queue_.erase(it);
                ++metrics_.requests_finished, ++metrics_.requests_cancelled;
            } else {
                ++it;
            }
        metrics_.queued = int(queue_.size());
    }
    for (auto& [handle, n_prompt] : dropped) {
        EngineEvent e;
        e.done = true, e.stop = StopReason::Cancelled, e.n_prompt = n_prompt;
        handle->push(std::move(e));
    }
    for (;;) {
        std::pair<std::shared_ptr<RequestHandle>, EngineRequest> next;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (queue_.empty() || int(running_.size()) >= options_.n_parallel) break;
            next = std::move(queue_.front());
            queue_.pop_front();
            metrics_.queued = int(queue_.size());
        }
        admit(std::move(next.first), std::move(next.second));
    }
    if (running_.empty()) return false;

    // The batch: each decoding request's pending token, then prompt chunks in arrival order
    // under the step's token budget, each ending at a page boundary or the prompt's end.
    Batch batch;
    std::vector<Running*> owner;  // (batch) the request of each token
    int budget = options_.step_tokens, pages = 0;
    bool has_prompt = false;
    auto need_pages = [&](int from, int n) { return (from + n + kPage - 1) / kPage - from / kPage + (from % kPage != 0); };
    // Decoding requests first: the pending token, and drafts while the step stays small
    // (memory-bound: they cost little): prompt lookup's, or else the draft model's (all of
    // this step's draft-model jobs in one batched pass).
    int n_decoding = int(std::count_if(running_.begin(), running_.end(), [](const auto& r) { return r->pending >= 0; }));
    struct Plan {
        Running* r;
        int pos;
        std::vector<int32_t> drafts;
        int job = -1;  // index into jobs: drafts come from the draft model
    };
    std::vector<Plan> plans;
    std::vector<DraftJob> jobs;
    for (auto& r : running_) {
        if (r->pending < 0) continue;
        Plan p{r.get(), session_->seq_length(r->seq), {}, -1};
        int room = std::min({kMaxDraft, options_.spec_step_tokens - n_decoding, n_ctx_per_seq_ - p.pos - 2});
        if (r->req.max_tokens >= 0) room = std::min(room, r->req.max_tokens - r->n_generated - 1);
        if (r->speculate && room > 0 && r->spec_wait-- <= 0) {
            std::vector<DraftToken> lookup;
            if (r->drafter) (void)r->drafter->draft(r->history, room, &lookup);  // lookup cannot fail
            for (size_t j = 0; j < lookup.size() && int(j) < room; ++j) p.drafts.push_back(lookup[j].token);
            if (p.drafts.empty() && draft_) {
                jobs.push_back({r->seq, &seqs_[size_t(r->seq)].tokens, r->pending, std::min(room, options_.draft_max), {}});
                p.job = int(jobs.size()) - 1;
            }
            n_decoding += p.job >= 0 ? jobs.back().n_max : int(p.drafts.size());  // (room reserved for model drafts)
        }
        plans.push_back(std::move(p));
    }
    if (!jobs.empty() && !draft_->draft(jobs))
        for (DraftJob& j : jobs) j.out.clear();  // (a draft that fails drafts nothing: the step goes on)
    n_decoding = 0;
    for (Plan& p : plans) {
        Running& r = *p.r;
        if (p.job >= 0) p.drafts = jobs[size_t(p.job)].out;
        batch.add(r.pending, r.seq, p.pos, true);
        owner.push_back(&r);
        r.n_drafts = int(p.drafts.size());
        for (int j = 0; j < r.n_drafts; ++j) {
            batch.add(p.drafts[size_t(j)], r.seq, p.pos + 1 + j, true);
            owner.push_back(&r);
        }
        n_decoding += 1 + r.n_drafts;
        pages += need_pages(p.pos, 1 + r.n_drafts);
        budget -= 1 + r.n_drafts;
    }
    for (auto& r : running_) {
        if (r->pending >= 0) continue;
        const int n_prompt = int(r->req.prompt.size());
        const int tail = (n_prompt - 1) / kPage * kPage;  // start of the last page: a chunk of its own
        const int end = r->n_fed < tail ? std::min(tail, (r->n_fed + budget) / kPage * kPage) : n_prompt;
        if (end <= r->n_fed || end - r->n_fed > budget) continue;  // no room this step
        for (int i = r->n_fed; i < end; ++i) {
            batch.add(r->req.prompt[size_t(i)], r->seq, i, i + 1 == n_prompt);
            owner.push_back(r.get());
        }
        pages += need_pages(r->n_fed, end - r->n_fed);
        budget -= end - r->n_fed;
        has_prompt = true;
    }
    make_room(pages);
    const auto t0 = Clock::now();
    const Status st = session_->decode(batch);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++metrics_.steps;
        (has_prompt ? metrics_.prompt_seconds : metrics_.decode_seconds) += dt;
        if (st) metrics_.prompt_tokens_computed += uint64_t(batch.size() - n_decoding);
        metrics_.kv_used = session_->n_ctx() - session_->free_positions();
    }
    if (!st) {  // cannot happen while the pool holds every slot's context; fail the batch's requests
        for (auto& r : running_)
            if (std::find(owner.begin(), owner.end(), r.get()) != owner.end()) finish(*r, StopReason::ContextFull, st.message());
    } else {
        for (int i = 0; i < batch.size(); ++i) {
            Running& r = *owner[size_t(i)];
            SeqInfo& info = seqs_[size_t(r.seq)];
            if (r.pending >= 0 && r.n_drafts > 0) {
                i += verify_drafts(r, batch, i);
                continue;
            }
            info.tokens.push_back(batch.token[size_t(i)]);
            if (r.pending < 0) ++r.n_fed;
            if (!batch.logits[size_t(i)]) continue;
            const float* logits = session_->batch_logits(i);
            r.pending = -2;  // fed; emit_token sets the next one or finishes
            const int32_t token = r.grammar ? sample_constrained(r.sampler, logits, *r.grammar, *pieces_) : r.sampler.sample(logits);
            if (token < 0) finish(r, StopReason::EndOfGeneration, "the grammar allows no token here");
            else emit_token(r, token, logits);
        }
    }
    std::erase_if(running_, [](const auto& r) { return r->seq < 0; });
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_.cached_prefixes = int(std::count_if(seqs_.begin(), seqs_.end(), [](const SeqInfo& s) { return !s.busy && !s.tokens.empty(); }));
    metrics_.kv_used = session_->n_ctx() - session_->free_positions();
    return true;
}

}  // namespace kiln
