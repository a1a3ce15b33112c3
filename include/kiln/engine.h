// Engine: continuous batching with a prefix cache over one Session, the library half of
// kiln-server (an app can embed it without HTTP). Requests queue up; every step one forward
// pass carries the next token of each running request plus chunks of waiting prompts
// (under a per-step token budget, so a long prompt does not stall the streams decoding);
// requests join at the next step and leave as soon as they finish. A finished request's
// sequence stays in the KV cache as a cached prefix: a later prompt that starts with the
// same tokens (a shared system prompt, the earlier turns of a chat) shares those pages
// (copy-on-write) instead of recomputing them; cached prefixes are evicted least recently
// used when a running request needs the room.
//
//   auto engine = kiln::Engine::create(model, {});
//   kiln::EngineRequest r;
//   r.prompt = model->tokenizer().encode("Hello", true, true);
//   auto h = engine.value()->submit(std::move(r));
//   for (kiln::EngineEvent e; h.value()->next(&e);) { fputs(e.text.c_str(), stdout); if (e.done) break; }
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kiln/generate.h"
#include "kiln/grammar.h"
#include "kiln/model.h"
#include "kiln/sampler.h"
#include "kiln/session.h"
#include "kiln/status.h"

namespace kiln {

struct EngineOptions {
    int n_parallel = 4;       // requests decoded together (slots)
    // KV positions one request may use, prompt and reply (a multiple of kKvPagePositions is
    // kept); 0: min(trained context, 4096).
    int n_ctx_per_seq = 0;
    // KV positions kept beyond the slots' for cached prefixes; < 0: as many as the slots have.
    int cache_positions = -1;
    int cache_entries = 0;    // cached prefixes kept at most; 0: 2 x n_parallel
    int step_tokens = 512;    // tokens per forward step (at least 64 + n_parallel)
    int max_queue = 64;       // requests waiting for a slot beyond which submit() refuses
    // Speculative decoding by prompt lookup for greedy requests (n-grams of lookup_ngram
    // tokens down to 1, as kiln-generate --lookup-ngram): drafts are verified in the same
    // step, and a request's tokens stay exactly its greedy ones. 0: off. Drafts are added
    // only while a step holds at most spec_step_tokens decoding tokens: past that the step
    // is compute-bound and drafts would slow the batch.
    int lookup_ngram = 0;
    int spec_step_tokens = 16;
    // A draft model (same vocabulary) drafting for greedy requests where lookup finds
    // nothing: up to draft_max tokens each, all requests in one batched draft forward per
    // token. Null: none.
    std::shared_ptr<const Model> draft_model;
    int draft_max = 5;
    // n_threads, isa, KV cache types, ... (n_ctx, n_seq_max and n_batch are the engine's).
    SessionOptions session;
};

struct TokenLogprob {
    int32_t token = -1;
    float logprob = 0;  // natural log of its probability under the model (softmax of the logits)
};

// What a request produces: one event per generated token, then a last one with done set.
struct EngineEvent {
    std::string text;                // new text (empty while it may be the start of a stop string)
    int32_t token = -1;              // the generated token (-1 in the last event)
    TokenLogprob chosen;             // when EngineRequest::n_logprobs >= 0
    std::vector<TokenLogprob> top;   // the n_logprobs most likely tokens, most likely first
    bool done = false;
    // The last event:
    StopReason stop = StopReason::Length;
    std::string error;               // set when the request failed inside the engine
    int n_prompt = 0;                // prompt tokens
    int n_cached = 0;                // of which came from the prefix cache
    int n_generated = 0;             // tokens generated (an end-of-generation token left out)
};

struct EngineRequest {
    std::vector<int32_t> prompt;     // at least one token
    SamplerParams sampling;
    int max_tokens = -1;             // < 0: until end of generation or the context per sequence
    bool ignore_eos = false;
    std::vector<std::string> stop;   // stop strings (cut from the text)
    int n_logprobs = -1;             // < 0: none; 0: the chosen token's; k: also the top k (<= 20)
    bool cache_prompt = true;        // reuse and keep cached prefixes
    bool speculative = true;         // draft by prompt lookup when the engine does (greedy requests)
    // GBNF (kiln/grammar.h): only text inside this grammar is generated (json_gbnf(),
    // json_schema_to_gbnf() for structured output); the request ends when the grammar
    // allows nothing more. Empty: unconstrained.
    std::string grammar;
};

// A submitted request, shared by the engine (which produces its events) and the caller.
class RequestHandle {
public:
    // Waits for the next event; false when none came within `timeout`.
    bool next(EngineEvent* e, std::chrono::milliseconds timeout = std::chrono::hours(24));
    // The engine ends the request at its next step (a last event with StopReason::Cancelled)
    // and frees its sequence.
    void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
    bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

private:
    friend class Engine;
    void push(EngineEvent e);
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<EngineEvent> events_;
    std::atomic<bool> cancelled_{false};
};

struct EngineMetrics {
    uint64_t requests = 0;            // accepted by submit()
    uint64_t requests_refused = 0;    // refused: queue full or stopping
    uint64_t requests_finished = 0;
    uint64_t requests_cancelled = 0;
    uint64_t prompt_tokens = 0;       // of accepted requests
    uint64_t prompt_tokens_cached = 0;  // of those, served from the prefix cache
    uint64_t prefix_cache_hits = 0;   // requests that reused a cached prefix
    uint64_t prompt_tokens_computed = 0;
    uint64_t generated_tokens = 0;
    uint64_t spec_drafted = 0;        // prompt-lookup tokens drafted
    uint64_t spec_accepted = 0;       // of which verification kept
    uint64_t steps = 0;               // forward passes
    double prompt_seconds = 0;        // steps with prompt tokens
    double decode_seconds = 0;        // steps with decode tokens only
    int queued = 0, running = 0, cached_prefixes = 0;
    int kv_used = 0, kv_total = 0;    // KV positions (whole pages) in use / in the pool
};

enum class Refusal { None, Invalid, QueueFull, Stopping };

class DraftRunner;  // src/serve/draft_runner.h

class Engine {
public:
    static Expected<std::unique_ptr<Engine>> create(std::shared_ptr<const Model> model, const EngineOptions& options = {});
    ~Engine();  // cancels what is queued and running and joins the engine thread
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Queues a request. Fails (nothing queued) on a bad request (empty prompt, a token out
    // of the vocabulary, a prompt plus max_tokens past the context per sequence, bad
    // sampling parameters), a full queue or a stopping engine; *why says which.
    Expected<std::shared_ptr<RequestHandle>> submit(EngineRequest request, Refusal* why = nullptr);
    // Refuses new requests and cancels those queued and running; returns when all have
    // had their last event.
    void shutdown();

    EngineMetrics metrics() const;
    const Model& model() const { return *model_; }
    int n_ctx_per_seq() const { return n_ctx_per_seq_; }
    int n_parallel() const { return options_.n_parallel; }

    struct Running;  // a request holding a sequence (src/serve/engine.cpp)

private:
    Engine() = default;
    void loop();
    bool step();  // false when there was nothing to do
    void admit(std::shared_ptr<RequestHandle> handle, EngineRequest request);
    void finish(Running& r, StopReason why, std::string error = {});
    void emit_token(Running& r, int32_t token, const float* logits);
    int verify_drafts(Running& r, const Batch& batch, int i);
    int take_sequence(int keep_from);  // a sequence id with nothing in it, evicting a cached prefix if needed
    void make_room(int pages);
    void release(int seq, bool keep);

    std::shared_ptr<const Model> model_;
    EngineOptions options_;
    int n_ctx_per_seq_ = 0;
    std::unique_ptr<Session> session_;
    std::unique_ptr<TokenPieces> pieces_;  // for constrained requests, made at the first one
    std::unique_ptr<DraftRunner> draft_;   // EngineOptions::draft_model's sessions
    std::vector<std::unique_ptr<Running>> running_;
    // Per sequence id: the tokens its KV cache holds and when it was last used; `busy`: a
    // running request's (else a cached prefix when it holds tokens, or free).
    struct SeqInfo {
        std::vector<int32_t> tokens;
        uint64_t last_used = 0;
        bool busy = false;
    };
    std::vector<SeqInfo> seqs_;
    uint64_t clock_ = 0;

    mutable std::mutex mutex_;  // guards queue_, stopping_ and metrics_
    std::condition_variable wake_;
    std::deque<std::pair<std::shared_ptr<RequestHandle>, EngineRequest>> queue_;
    bool stopping_ = false, exit_ = false;
    EngineMetrics metrics_;
    std::thread thread_;
};

}  // namespace kiln
