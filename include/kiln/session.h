// Session: the state of one or more sequences (conversations) on a Model: the KV cache,
// positions, scratch buffers and the thread pool. decode() runs one forward pass over a
// batch of tokens from any of its sequences (prefill, decode and speculative verification
// mixed); forward() is the one-sequence shorthand (sequence 0).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/format/tensor.h"
#include "kiln/model.h"
#include "kiln/status.h"

namespace kiln {

class ThreadPool;                 // kiln/thread_pool.h
struct SessionState;              // the backend's buffers and KV cache (src/cpu/session_impl.h)
struct SampledVerification;       // kiln/speculative.h

// Compute backends: the CPU kernels (always) and the Vulkan shaders (when kiln is built
// with KILN_VULKAN=ON). A Session picks one in SessionOptions::backend.
enum class Backend { Cpu, Vulkan };

const char* backend_name(Backend b);  // "cpu", "vulkan"
Expected<Backend> parse_backend(const std::string& name);

// True when this build of kiln contains the Vulkan backend.
bool vulkan_compiled();

struct VulkanDeviceInfo {
    int index = 0;          // the --device number
    std::string name;       // e.g. "AMD Radeon 8060S (RADV GFX1151)"
    std::string type;       // "integrated GPU", "discrete GPU", "CPU", ...
    std::string api;        // Vulkan version, e.g. "1.3.255"
    uint64_t device_local_bytes = 0;
    bool usable = false;    // Vulkan 1.2+ with what kiln needs
};

// The Vulkan devices the loader sees, in --device order. An error when kiln was built
// without Vulkan or no Vulkan loader/driver is present.
Expected<std::vector<VulkanDeviceInfo>> list_vulkan_devices();

// The KV cache is a pool of pages of this many positions; each sequence takes whole pages.
constexpr int kKvPagePositions = 64;

enum class KvHadamard { Auto, On, Off };

struct SessionOptions {
    // KV cache positions, shared by all sequences (one sequence may use them all); 0:
    // min(trained context, 4096).
    int n_ctx = 0;
    int n_seq_max = 1;         // sequence ids are [0, n_seq_max)
    // KV cache element types, keys and values separately (llama.cpp's --cache-type-k/-v):
    // F16, BF16, Q8_0, Q4_0 or F32.
    DType type_k = DType::F16;
    DType type_v = DType::F16;
    // Rotate keys, values and queries of each head by a Walsh-Hadamard transform around
    // the cache (the output is rotated back): the same attention in exact arithmetic, less
    // error from a quantized cache (outlier channels spread over the head). On needs
    // power-of-two head sizes; Auto rotates when K or V is Q8_0/Q4_0 and the heads are
    // powers of two, as llama.cpp does for quantized caches (LLAMA_ATTN_ROT_DISABLE there,
    // Off here): on Qwen2.5-Coder-0.5B a q8_0 cache's KL divergence from f16 halves.
    // The Vulkan backend has no rotated cache: Auto is off there, On an error.
    KvHadamard kv_hadamard = KvHadamard::Auto;
    int n_threads = 0;         // 0: one per available core
    // Run on this thread pool instead of creating one (n_threads and pin_threads are then
    // ignored). A draft session shares its target's pool: the two run alternately, and two
    // pools would have one's workers spinning on the cores the other is computing on.
    // Sessions on one pool must not run forward() at the same time.
    std::shared_ptr<ThreadPool> pool;
    int n_batch = 512;         // tokens per forward chunk (bounds the scratch memory)
    bool pin_threads = false;
    // Decode (up to 8 tokens): each worker, done with its share of a matmul, reads the start
    // of its share of the next one while this thread does the work in between (norms, RoPE,
    // the KV store), so memory keeps streaming. Off only to measure it (kiln-bench --ab).
    bool read_ahead = true;
    // One-token forwards (dense and MoE, repacked weights or not): now and then time the
    // decode kernels' weight-prefetch variants (4 KB ahead into L1, that plus 32 KB into
    // L2, 6 or 8 KB into L1, where the CPU's kernels prefetch) and keep the fastest (which
    // one depends on the CPU and the bandwidth the machine gives at the moment). The
    // results are the same bits either way.
    bool decode_tuning = true;
    const char* isa = nullptr;  // CPU kernels: "avx512", "avx2", "generic"; nullptr: best (or KILN_ISA)
    // Layers this session skips (self-speculative drafting: a draft Session on the same
    // Model with some layers left out). Their KV entries are never written or read.
    std::vector<int> skip_layers;
    // A trimmed output head, for self-speculative drafting: logits are computed for these
    // token ids only (their rows of the output matrix, copied once) and every other token
    // reads -inf. On small-vocabulary-heavy models (Gemma 3 270M: 72% of the bytes per token
    // are the 262144-row head) this makes the model a cheap draft for itself. Empty: all.
    std::vector<int32_t> logit_tokens;
    int n_expert_used = 0;      // MoE: experts per token; 0: the model's expert_used_count
    // Hybrid models (Qwen3.5): how many tokens a sequence can be truncated back by (rejected
    // drafts): each sequence keeps the recurrent state after each of its last this many
    // tokens (memory: this + 2 copies of the state). Truncating further back than that fails
    // unless to 0.
    int recurrent_rollback = 16;
    // Where forward() runs. Vulkan: the weights are uploaded to device `device` (an index
    // of list_vulkan_devices()) at create(), which fails naming any architecture, weight
    // format or option the Vulkan shaders do not cover.
    Backend backend = Backend::Cpu;
    int device = 0;
};

// A KV cache type from its llama.cpp name: f16, bf16, q8_0, q4_0 or f32.
Expected<DType> parse_cache_type(const std::string& name);

// Sees the input of every matrix product a CPU forward pass runs with a model weight (what
// llama-imatrix collects; kiln::ImatrixCollector accumulates it): x (rows, w.cols()) times
// w^T, or for an expert tensor (3-D) its slice `expert` (-1 for a 2-D weight). Called on the
// thread running decode(), between the kernels, before the product.
struct ActivationObserver {
    virtual ~ActivationObserver() = default;
    virtual void matmul_input(const TensorView& w, int expert, const float* x, int rows) = 0;
};

// Tokens of one forward pass, from any sequences (as llama_batch): token i is appended to
// sequence seq[i] at position pos[i], which must be that sequence's length counting its
// earlier tokens in the batch; logits[i] asks for its logits.
struct Batch {
    std::vector<int32_t> token, seq, pos;  // (n) each
    std::vector<uint8_t> logits;           // (n) 1: compute this token's logits
    void add(int32_t t, int sequence, int position, bool want_logits) {
        token.push_back(t), seq.push_back(sequence), pos.push_back(position), logits.push_back(want_logits);
    }
    void clear() { token.clear(), seq.clear(), pos.clear(), logits.clear(); }
    int size() const { return int(token.size()); }
};

class Session {
public:
    // Allocates the KV cache and scratch buffers. Errors name the bad option.
    static Expected<std::unique_ptr<Session>> create(std::shared_ptr<const Model> model, const SessionOptions& options = {});
    ~Session();

    // One forward pass over a batch of tokens of any sequences (in chunks of n_batch
    // tokens). A sequence's logits do not depend on what else is in the batch. Fails
    // (changing nothing) on a bad sequence id, position or token, or when the KV cache has
    // no room for the batch.
    Status decode(const Batch& batch);
    // Logits (n_vocab floats) of token i of the last decode() batch, which asked for them;
    // nullptr otherwise.
    const float* batch_logits(int i) const;

    // While *cancel is true, decode() and forward() stop between chunks of n_batch tokens
    // (undoing the call) and fail with "cancelled"; nullptr: never. For another thread to
    // stop a long prefill; generate() sets it from GenerateOptions::cancel.
    void set_cancel(const std::atomic<bool>* cancel) { cancel_ = cancel; }
    // Shows every later forward pass's matrix inputs to `o` (nullptr: none). CPU backend
    // only: an error on Vulkan (its activations stay on the device).
    Status set_activation_observer(ActivationObserver* o);

    // Sequence operations. Length: its positions in the cache.
    int seq_length(int seq) const;
    int n_seq_max() const;
    // Drops the sequence's positions >= n_keep (all of them for remove). On a hybrid model
    // (recurrent layers) only to lengths seq_can_keep() allows.
    Status seq_truncate(int seq, int n_keep);
    // True when the sequence can be truncated to (or forked at) n tokens: any n up to its
    // length on attention-only models; on hybrid models 0 or one of its last
    // SessionOptions::recurrent_rollback lengths.
    bool seq_can_keep(int seq, int n) const;
    Status seq_remove(int seq) { return seq_truncate(seq, 0); }
    // dst (emptied first) shares the first n positions of src (n < 0: all of them); the
    // shared cache pages are copied only when one of the two writes into them.
    Status seq_fork(int src, int dst, int n = -1);
    // KV positions no sequence holds (whole pages).
    int free_positions() const;

    // Sequence 0: appends `tokens` at positions n_past() .. n_past() + n - 1 and computes logits for
    // the last token, or for every token when all_logits is true. Fails (changing nothing)
    // if the tokens do not fit in the context or an id is out of range.
    Status forward(std::span<const int32_t> tokens, bool all_logits = false);

    // Greedy speculative verification: appends `batch` (the pending token, then the drafts)
    // as forward() does, and returns in *accepted how many drafts in a row equal the model's
    // greedy (argmax) choice and in *next its greedy token after them. The caller truncates
    // the rejected tail. batch must fit one chunk (n_batch). On Vulkan the comparison runs
    // on the device and only these two numbers come back (logits() is then empty).
    Status verify_greedy(std::span<const int32_t> batch, int* accepted, int32_t* next);
    // Stochastic speculative verification: appends `batch` as forward() does and returns
    // in *accepted how many drafts rejection sampling keeps and in *next the token drawn
    // after them (kiln::verify_sampled_rows). On Vulkan, with top-k in [1, 64] (and draft
    // distributions of up to 64 tokens, up to 256 penalized tokens), the test runs on the
    // device and only these two numbers come back; otherwise on the host from the logits.
    Status verify_sampled(std::span<const int32_t> batch, const SampledVerification& v, int* accepted, int32_t* next);

    // Adds tokens to a trimmed output head (SessionOptions::logit_tokens), e.g. the tokens a
    // self-speculative draft saw its target produce; returns how many were new. The head
    // has room for 1024 more than it started with; later tokens are not added. A session
    // with the whole head ignores this.
    int add_logit_tokens(std::span<const int32_t> tokens);

    // Logits (n_vocab floats) of row i of the last forward (all_logits: token i), or of its
    // last row for i = -1. After a decode() of several sequences the rows are in the
    // backend's order: use batch_logits() there.
    const float* logits(int i = -1) const;
    int n_logits() const { return n_logits_; }

    int n_past() const { return seq_length(0); }  // sequence 0's length
    int n_ctx() const { return n_ctx_; }
    // Drops sequence 0's KV entries at positions >= n_keep (e.g. rejected draft tokens).
    Status truncate(int n_keep) { return seq_truncate(0, n_keep); }

    // KV cache bytes per cached position (all layers, K and V): what attention reads per
    // token of context at each decode step.
    size_t kv_bytes_per_position() const;

    const Model& model() const { return *model_; }
    ThreadPool& pool() { return *pool_; }
    const std::shared_ptr<ThreadPool>& shared_pool() const { return pool_; }
    int n_threads() const;

private:
    Session() = default;
    // Tokens [i0, i0 + n) of the batch; their positions are reserved in the cache.
    Status forward_chunk(const Batch& batch, int i0, int n);
    // Checks a batch; *appends: (sequence, tokens it adds) of each sequence in it.
    Status check_batch(const Batch& batch, std::vector<std::pair<int, int>>* appends) const;
    Status check_tokens(std::span<const int32_t> tokens) const;
    // A verification on the device: appends batch (<= n_batch tokens) and runs `verify`
    // with the chunk's local RoPE table; no logits come back.
    Status verify_on_device(const char* what, std::span<const int32_t> batch, const std::function<Status(const float* rope_local)>& verify);
    std::shared_ptr<const Model> model_;
    std::shared_ptr<ThreadPool> pool_;
    std::unique_ptr<SessionState> impl_;
    int n_ctx_ = 0;
    int n_logits_ = 0;
    std::vector<float> logits_;      // (n_logits, n_vocab)
    std::vector<int> logits_row_;    // (batch size) row of logits_ of each token of the last batch, -1: none
    const std::atomic<bool>* cancel_ = nullptr;
};

}  // namespace kiln
