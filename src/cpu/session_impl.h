// Session internals: the CPU backend's buffers and the KV cache, shared by runtime/session.cpp
// and the CPU forward pass (forward.cpp, attention.cpp, linear.cpp, moe.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/decode_tuner.h"
#include "runtime/device_forward.h"
#include "kiln/format/weights.h"
#include "kiln/session.h"
#include "kiln/thread_pool.h"
#include "runtime/aligned_buffer.h"
#include "cpu/kv_cache.h"
#include "cpu/recurrent_state.h"

namespace kiln {

// Flash attention scratch, for chunks of up to n_batch tokens and n_threads threads.
struct AttnScratch {
    AlignedBuffer<uint8_t> q;     // (n_batch, n_head, attn_q_bytes) prepared queries
    AlignedBuffer<float> thread;  // (n_threads, thread_floats) per-thread scratch
    size_t thread_floats = 0;
    AlignedBuffer<float> part;    // decode tile partials and running state (attention.cpp)
    Status allocate(const ModelConfig& c, int n_batch, int n_threads, DType type_k);
};

// One sequence's tokens in a chunk: attention reads that sequence's pages only.
struct AttnGroup {
    int seq;          // its KvPages sequence
    int pos0;         // position of its first token here; token k is at pos0 + k
    int n;            // its tokens in the chunk
    int row0;         // their rows in q and out: row0 .. row0 + n - 1, in position order
};

struct MoeScratch;  // moe.h
class ChunkRunner;  // below

// Where a chunk's logits go: rows appended to the session's, each batch token's row noted.
struct LogitsOut {
    std::vector<float>& logits;  // (n_logits, n_vocab)
    int& n_logits;
    std::vector<int>& row_of;    // (batch size) each token's row of logits, -1: none
    int n_vocab;
    // Room for `rows` more rows; returns the first's index.
    int append(int rows) {
        logits.resize(size_t(n_logits + rows) * size_t(n_vocab));
        return std::exchange(n_logits, n_logits + rows);
    }
    float* row(int r) { return logits.data() + size_t(r) * size_t(n_vocab); }
};

struct SessionState {
    const cpu::KernelTable* kt = nullptr;
    KvCache kv;
    int n_batch = 0;
    std::vector<bool> skip;  // (n_layer) layers left out of the forward pass
    bool read_ahead = true;  // SessionOptions::read_ahead
    bool tune_decode = false;  // SessionOptions::decode_tuning, and the kernels come in several distances
    ActivationObserver* observer = nullptr;  // Session::set_activation_observer
    int decode_variant = 0;    // KernelTable::decode_rows / decode_r16 variant of this forward; Session::forward sets it, 0 unless one token
    DecodeTuner tuner;

    // Scratch for one chunk of n <= n_batch tokens.
    AlignedBuffer<float> x;        // (n, n_embd) residual stream
    AlignedBuffer<float> xn;       // (n, n_embd) normed input of a block
    AlignedBuffer<float> q;        // (n, n_head * head_dim)
    AlignedBuffer<float> k;        // (n, n_head_kv * head_dim)
    AlignedBuffer<float> v;        // (n, n_head_kv * head_dim_v)
    AlignedBuffer<float> attn;     // (n, max(n_head * head_dim_v, v_heads * state)) attention or DeltaNet output
    AlignedBuffer<float> proj;     // (n, n_embd) output of wo / ffn_down
    AlignedBuffer<float> gate;     // (n, n_ff)
    AlignedBuffer<float> up;       // (n, n_ff)
    AlignedBuffer<uint8_t> act;    // (n, act_row_bytes(max k)) quantized activations
    // Hybrid models (Qwen3.5): gated attention and gated DeltaNet.
    AlignedBuffer<float> qg;       // (n, n_head, 2 * head_dim) queries with their output gates
    AlignedBuffer<float> mix;      // (n, conv channels) DeltaNet q, k, v before the conv
    AlignedBuffer<float> conv;     // (n, conv channels) after the conv and silu
    AlignedBuffer<float> z;        // (n, v_heads * state) output gate
    AlignedBuffer<float> alpha;    // (n, v_heads) decay input, then the decay
    AlignedBuffer<float> beta;     // (n, 2 v_heads) write strength input (Qwen3-Next: grouped with alpha), then the strength
    AlignedBuffer<float> rec_scratch;  // (n_threads, state, state) states not kept
    RecurrentStates rec;           // each sequence's DeltaNet states
    std::vector<RecurrentStates::Plan> rec_plans;  // (groups) the current chunk's, in groups order
    AlignedBuffer<float> rope_cs;  // (n, rope_dim / 2, 2) cos, sin per token and pair
    AttnScratch attn_scratch;  // flash attention
    std::vector<float> rope_freqs; // (rope_dim / 2) inverse frequency divisors (1 if absent)
    std::shared_ptr<MoeScratch> moe;  // MoE layers' scratch (moe.cpp); null for dense models
    // A trimmed output head (SessionOptions::logit_tokens); head_tokens empty: the whole one.
    // It has room for kHeadGrowth more tokens (Session::add_logit_tokens); the matmul runs
    // over the used rows rounded up to 16, the rows past T being zeros no logit is read from.
    static constexpr size_t kHeadGrowth = 1024;
    std::vector<int32_t> head_tokens;  // (T) token ids, in row order
    std::vector<uint8_t> in_head;      // (n_vocab) 1 for the tokens of head_tokens
    AlignedBuffer<uint8_t> head_rows;  // (capacity, output row bytes) their rows of the output matrix, zeros past T
    AlignedBuffer<uint8_t> head_packed;  // their row-interleaved copy when the model has one (--repack)
    TensorView head;                   // (round_up(T, 16), n_embd) over head_rows
    AlignedBuffer<float> head_logits;  // (n_batch, capacity), row stride head.rows()
    // What runs the forward passes: the CPU backend over the buffers above, or (Backend::
    // Vulkan) a device holding weights, KV cache and activations, the CPU buffers above then
    // unallocated but for the RoPE tables.
    std::unique_ptr<ChunkRunner> runner;

    // The chunk's tokens in row order: the tokens of sequences with up to kStreamingTokens
    // tokens in the chunk first (`streamed` rows: their matmuls run through the row
    // kernels, as each sequence's would alone), then the longer ones' (the GEMM), so a
    // token's bits do not depend on what else is in the batch. forward.cpp.
    std::vector<int32_t> row_token, row_seq, row_pos;  // (n) each
    std::vector<int> row_index;                        // (n) the batch index of each row
    int streamed = 0;
    std::vector<AttnGroup> groups;  // (sequences in the chunk) for attention; their rows are contiguous
    void order_rows(const Batch& batch, int i0, int n);

    // Fills rope_cs for n tokens at positions pos: the global-base table, then (models
    // with a local base, Gemma 3) the local one, which it returns (else nullptr). forward.cpp.
    const float* fill_rope(const ModelConfig& c, const int32_t* pos, int n);
};

// What runs a session's forward passes (picked at Session::create): the CPU backend
// (src/cpu/forward.cpp) or a Vulkan device (DeviceForward, src/vulkan/forward.cpp).
class ChunkRunner {
public:
    virtual ~ChunkRunner() = default;
    // Tokens [i0, i0 + n) of the batch (n <= n_batch, their KV positions reserved); the
    // logits of those that ask for them go to `out`.
    virtual Status forward(const Batch& batch, int i0, int n, LogitsOut& out) = 0;
    // A batch this backend cannot run, as an error naming why.
    virtual Status check(const Batch&) const { return Status::ok(); }
    virtual size_t kv_bytes_per_position() const = 0;
    // The device, for speculative verifications that run there; nullptr on the CPU.
    virtual DeviceForward* device() { return nullptr; }
};
std::unique_ptr<ChunkRunner> make_cpu_runner(SessionState& s, ThreadPool& pool, const Model& model);  // cpu/forward.cpp

// z (n, v_heads * state) = the gated DeltaNet of recurrent layer il over the chunk's mix, z,
// alpha and beta rows (cpu/delta_net.cpp; attn holds the rule's outputs), each sequence
// (groups) from its state as rec_plans say.
void delta_net(SessionState& s, ThreadPool& pool, const ModelConfig& c, const LayerWeights& L, int il, int n);
std::unique_ptr<ChunkRunner> make_device_runner(SessionState& s, const Model& model, std::unique_ptr<DeviceForward> device);  // runtime/session.cpp

// fn(i) for each of n tokens: a per-token row op, split across threads when the batch is
// large enough to pay for the barrier.
template <class Fn>
void for_each_token(ThreadPool& pool, int n, Fn&& fn) {
    if (n < 4) {
        for (int i = 0; i < n; ++i) fn(i);
    } else {
        pool.parallel_for(n, 1, [&](int64_t i0, int64_t i1, int) {
            for (int64_t i = i0; i < i1; ++i) fn(int(i));
        });
    }
}

// Up to this many tokens a matmul reads its weights from memory once (the row kernels,
// one pass over each 16-row group): a bandwidth-bound stream, split with
// ThreadPool::parallel_for_shares. Past it the GEMM is compute-bound.
constexpr int kStreamingTokens = 8;

// y (n, W.rows) = x (n, W.cols) . W^T, multi-threaded over rows of W.
// streamed: rows [0, streamed) go through the row kernels in passes of up to
// kStreamingTokens, the rest through the GEMM, so that a row gets the bits it would get
// in its own sequence's forward (SessionState::streamed); -1: all rows one way, by n.
void linear(SessionState& s, ThreadPool& pool, const TensorView& w, const float* x, int n, float* y,
            std::initializer_list<const TensorView*> next = {}, int streamed = -1);
// Up to 4 matrices with the same input in one job: ys[i] (n, ws[i].rows) = x . ws[i]^T.
// next: the group the forward pass multiplies by after this one; in a streaming job each
// worker reads the start of its share of it into cache once done with this one.
void linear_group(SessionState& s, ThreadPool& pool, std::initializer_list<const TensorView*> ws, const float* x, int n,
                  std::initializer_list<float*> ys, std::initializer_list<const TensorView*> next = {}, int streamed = -1);

// cos/sin of every (token, rotary pair) of n tokens at positions pos0.. (forward.cpp);
// also the table the Vulkan RoPE shader reads. cs: (n, rope_dim/2, 2).
void rope_table(const ModelConfig& c, const std::vector<float>& freqs, float base, float freq_scale, int pos0, int n, float* cs);
// The same for n tokens at positions pos (n).
void rope_table(const ModelConfig& c, const std::vector<float>& freqs, float base, float freq_scale, const int32_t* pos, int n, float* cs);

// Causal attention of the chunk's tokens, each over its own sequence in layer `il` of the
// KV cache (their K and V are already stored). q: (rows, n_head, head_dim); out: (rows,
// n_head, head_dim_v), rows = the groups' tokens. A token's output does not depend on the
// other tokens or sequences in the chunk.
void attention(const cpu::KernelTable& kt, ThreadPool& pool, const KvCache& kv, AttnScratch& scratch, const ModelConfig& c, int il,
               std::span<const AttnGroup> groups, const float* q, float* out, float kq_scale, int window);
// The same for n tokens of sequence 0 at positions pos0.., rows 0..n-1.
void attention(const cpu::KernelTable& kt, ThreadPool& pool, const KvCache& kv, AttnScratch& scratch, const ModelConfig& c, int il,
               int pos0, int n, const float* q, float* out, float kq_scale, int window);

}  // namespace kiln
