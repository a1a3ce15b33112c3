// Session internals shared by session.cpp, forward.cpp, attention.cpp and linear.cpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <utility>
#include <vector>

#include "cpu/kernels.h"
#include "decode_tuner.h"
#include "device_forward.h"
#include "kiln/session.h"
#include "streamed_alloc.h"

namespace kiln {

// 64-byte aligned float/byte storage (SIMD loads, no false sharing between threads); 2 MiB
// aligned on huge pages from 2 MiB up (streamed_alloc.h).
template <class T>
struct AlignedBuffer {
    T* data = nullptr;
    size_t size = 0;
    AlignedBuffer() = default;
    explicit AlignedBuffer(size_t n) { resize(n); }
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    AlignedBuffer(AlignedBuffer&& o) noexcept : data(o.data), size(o.size) { o.data = nullptr, o.size = 0; }
    AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
        std::swap(data, o.data);
        std::swap(size, o.size);
        return *this;
    }
    ~AlignedBuffer() { std::free(data); }
    void resize(size_t n) {
        std::free(data);
        size = n;
        data = n ? static_cast<T*>(alloc_streamed(n * sizeof(T))) : nullptr;
    }
    T* operator()() { return data; }
};

// Per-layer KV cache in the layouts of kernels/cpu/kv_layout.h: K as panels of 16
// positions (n_head_kv, n_ctx / 16, k_panel bytes), V as rows (n_head_kv, n_ctx, v_row
// bytes). n_ctx is rounded up to whole attention tiles; the memory is zeroed, so a tile's
// unused tail always holds finite numbers.
struct KvCache {
    DType type_k = DType::F16, type_v = DType::F16;
    int n_ctx = 0, n_head_kv = 0, head_dim = 0, head_dim_v = 0;
    size_t k_panel = 0, v_row = 0;             // bytes of one K panel / one V row
    std::vector<AlignedBuffer<uint8_t>> k, v;  // [layer]

    uint8_t* k_panel_at(int layer, int head, int pos) const {
        return k[size_t(layer)].data + (size_t(head) * (n_ctx / cpu::kKvPanel) + pos / cpu::kKvPanel) * k_panel;
    }
    uint8_t* v_at(int layer, int head, int pos) const { return v[size_t(layer)].data + (size_t(head) * n_ctx + pos) * v_row; }
    bool hadamard = false;  // entries stored rotated (SessionOptions::kv_hadamard)
    cpu::ToF16Fn to_f16 = nullptr;  // the session's kernel table's fp16 conversion (F16 entries)

    void store(int layer, int head, int pos, const float* key, const float* value) {
        float k_rot[512], v_rot[512];  // head sizes are at most 512 (allocate checks)
        if (hadamard) key = rotated(key, head_dim, k_rot), value = rotated(value, head_dim_v, v_rot);
        cpu::store_k(type_k, key, head_dim, k_panel_at(layer, head, pos), pos % cpu::kKvPanel, to_f16);
        cpu::store_v(type_v, value, head_dim_v, v_at(layer, head, 0), v_row, pos, to_f16);
    }
    static const float* rotated(const float* x, int n, float* buf) {
        std::copy(x, x + n, buf);
        cpu::hadamard(buf, n);
        return buf;
    }
    size_t bytes() const { return k.size() * size_t(n_head_kv) * n_ctx * (k_panel / cpu::kKvPanel + v_row); }

    // Allocates n_layer layers for n_ctx positions (rounded up to whole tiles), zeroed.
    Status allocate(const ModelConfig& c, int n_ctx, DType type_k, DType type_v, bool hadamard = false);
};

// Flash attention scratch, for chunks of up to n_batch tokens and n_threads threads.
struct AttnScratch {
    AlignedBuffer<uint8_t> q;     // (n_batch, n_head, attn_q_bytes) prepared queries
    AlignedBuffer<float> thread;  // (n_threads, thread_floats) per-thread scratch
    size_t thread_floats = 0;
    AlignedBuffer<float> part;    // decode tile partials and running state (attention.cpp)
    Status allocate(const ModelConfig& c, int n_batch, int n_threads, DType type_k);
};

struct MoeScratch;  // moe.h

struct Session::Impl {
    const cpu::KernelTable* kt = nullptr;
    KvCache kv;
    int n_batch = 0;
    std::vector<bool> skip;  // (n_layer) layers left out of the forward pass
    bool read_ahead = true;  // SessionOptions::read_ahead
    bool tune_decode = false;  // SessionOptions::decode_tuning, and the kernels come in several distances
    int decode_variant = 0;    // KernelTable::decode_rows / decode_r16 variant of this forward; Session::forward sets it, 0 unless one token
    DecodeTuner tuner;

    // Scratch for one chunk of n <= n_batch tokens.
    AlignedBuffer<float> x;        // (n, n_embd) residual stream
    AlignedBuffer<float> xn;       // (n, n_embd) normed input of a block
    AlignedBuffer<float> q;        // (n, n_head * head_dim)
    AlignedBuffer<float> k;        // (n, n_head_kv * head_dim)
    AlignedBuffer<float> v;        // (n, n_head_kv * head_dim_v)
    AlignedBuffer<float> attn;     // (n, n_head * head_dim_v)
    AlignedBuffer<float> proj;     // (n, n_embd) output of wo / ffn_down
    AlignedBuffer<float> gate;     // (n, n_ff)
    AlignedBuffer<float> up;       // (n, n_ff)
    AlignedBuffer<uint8_t> act;    // (n, act_row_bytes(max k)) quantized activations
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
    // Backend::Vulkan: the device runs the forward pass (weights, KV cache and activations
    // live there) and the CPU buffers above stay unallocated but for the RoPE tables.
    std::unique_ptr<DeviceForward> device;

    // Fills rope_cs for n tokens at positions pos0..: the global-base table, then (models
    // with a local base, Gemma 3) the local one, which it returns (else nullptr). forward.cpp.
    const float* fill_rope(const ModelConfig& c, int pos0, int n);
};

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
void linear(Session::Impl& s, ThreadPool& pool, const TensorView& w, const float* x, int n, float* y,
            std::initializer_list<const TensorView*> next = {});
// Up to 4 matrices with the same input in one job: ys[i] (n, ws[i].rows) = x . ws[i]^T.
// next: the group the forward pass multiplies by after this one; in a streaming job each
// worker reads the start of its share of it into cache once done with this one.
void linear_group(Session::Impl& s, ThreadPool& pool, std::initializer_list<const TensorView*> ws, const float* x, int n,
                  std::initializer_list<float*> ys, std::initializer_list<const TensorView*> next = {});

// cos/sin of every (token, rotary pair) of n tokens at positions pos0.. (forward.cpp);
// also the table the Vulkan RoPE shader reads. cs: (n, rope_dim/2, 2).
void rope_table(const ModelConfig& c, const std::vector<float>& freqs, float base, float freq_scale, int pos0, int n, float* cs);

// Causal attention of n new tokens at positions pos0.. over layer `il` of the KV cache
// (their K and V are already stored). q: (n, n_head, head_dim); out: (n, n_head, head_dim_v).
void attention(const cpu::KernelTable& kt, ThreadPool& pool, const KvCache& kv, AttnScratch& scratch, const ModelConfig& c, int il,
               int pos0, int n, const float* q, float* out, float kq_scale, int window);

}  // namespace kiln
