// One recording function per shader: the typed interface the forward pass and the shader
// tests share. Each binds its buffers (shapes in the comments, f32 unless noted), pushes
// its sizes and dispatches; none waits. Calls between two Recorder::barrier()s may run
// concurrently.
#pragma once

#include <cstdint>
#include <memory>

#include "kiln/dtype.h"
#include "vulkan/buffer.h"
#include "vulkan/commands.h"
#include "vulkan/pipeline.h"

namespace kiln::vulkan {

// Weight formats with a dequant-matvec (and embedding lookup) shader.
bool has_matvec(DType t);
// Formats whose matvec/matmul read x's 32-element block sums (q4_1, q5_1: the min term).
bool needs_block_sums(DType t);

class Ops {
public:
    explicit Ops(std::shared_ptr<const Context> ctx) : ctx_(ctx), pipelines_(std::move(ctx)) {}
    const Context& context() const { return *ctx_; }

    struct MatvecShape {
        uint32_t k, rows, n;         // W (rows, k); n token rows of x
        uint32_t x_stride, y_stride;  // floats between token rows of x and of y
        uint32_t x_offset = 0;        // floats before x's token row 0
        uint32_t y_row0 = 0;          // output column of W's row 0 (W a part of a larger matrix)
    };
    // y (n, y_stride) [.., y_row0 : y_row0 + rows] = x (n, x_stride) [.., :k] . W^T, W in format wt
    // (for needs_block_sums(wt): W's min times `sums` (n, x_stride / 32), x's block sums):
    // the decode/verification shader for n <= kMatvecTokens, the tiled prefill shader above
    // (either order of summation, so a token's result depends only on which one ran).
    Status linear(Recorder& r, DType wt, const BufferRange& w, const BufferRange& x, const BufferRange& y, const MatvecShape& s, const BufferRange& sums = {});
    // The two shaders linear() chooses between (matmul_tiled needs k % 32 == 0).
    Status matvec(Recorder& r, DType wt, const BufferRange& w, const BufferRange& x, const BufferRange& y, const MatvecShape& s, const BufferRange& sums = {});
    Status matmul_tiled(Recorder& r, DType wt, const BufferRange& w, const BufferRange& x, const BufferRange& y, const MatvecShape& s,
                        const BufferRange& sums = {});
    // Up to this many tokens linear() runs matvec: decode and speculative verification
    // (draft_max <= 7, plus one) take the same path, so verification is exact.
    static constexpr uint32_t kMatvecTokens = 8;
    // out (n, k) = dequant(W[ids[i]]) * scale for the ids in [row0, row0 + rows), the rows w
    // holds (a part of an embedding table too large for one binding); ids (n) int32.
    Status get_rows(Recorder& r, DType wt, const BufferRange& w, const BufferRange& ids, const BufferRange& out, uint32_t k, uint32_t n, float scale,
                    uint32_t row0, uint32_t rows);
    // y (rows, k) = x (rows, k) rounded as the CPU quantizes activations for weights of format
    // q8_K (the k-quants) or q8_x32 (the 32-element formats; then sums (rows, k / 32) = the
    // fp16 block sums q8_1 stores): act_round.comp.
    Status act_round(Recorder& r, const BufferRange& x, const BufferRange& y, const BufferRange& sums, uint32_t k, uint32_t rows, bool q8_K);
    // y (rows, width) = rms_norm(x (rows, width)) * w (width); y may be x.
    Status rms_norm(Recorder& r, const BufferRange& x, const BufferRange& w, const BufferRange& y, uint32_t rows, uint32_t width, float eps);
    // y (total) += x (x_len) repeated (x_len divides total).
    Status add(Recorder& r, const BufferRange& y, const BufferRange& x, uint32_t total, uint32_t x_len);
    // gate (total) = act(gate) * up (total); SiLU or Gemma's GELU.
    Status glu(Recorder& r, const BufferRange& gate, const BufferRange& up, uint32_t total, bool gelu);
    // Rotates x (n, heads, head_dim) in place by cs (n, rope_dim / 2, 2).
    Status rope(Recorder& r, const BufferRange& x, const BufferRange& cs, uint32_t n, uint32_t heads, uint32_t head_dim, uint32_t rope_dim, bool neox);

    struct KvShape {
        uint32_t n_head, n_head_kv, head_dim, head_dim_v, n_ctx;
        DType type = DType::F16;  // of the cache rows: F16 or Q8_0 (kernels/vulkan/kv.glsl)
    };
    // True for the KV cache types the shaders have (F16, Q8_0), given the head dims.
    static bool kv_type_supported(DType t, uint32_t head_dim, uint32_t head_dim_v);
    // Bytes of one cache row of `dim` values (whole 32-bit words).
    static uint64_t kv_row_bytes(DType t, uint32_t dim);
    // k (n, n_head_kv, head_dim), v (n, n_head_kv, head_dim_v) -> the caches
    // kc (n_head_kv, n_ctx, row of head_dim), vc (n_head_kv, n_ctx, row of head_dim_v) at pos0...
    Status kv_store(Recorder& r, const BufferRange& k, const BufferRange& v, const BufferRange& kc, const BufferRange& vc, const KvShape& s,
                    uint32_t n, uint32_t pos0);
    // out (n, n_head, head_dim_v) = softmax(scale q.K^T over the visible positions) V for
    // q (n, n_head, head_dim) of tokens at pos0..; window 0: causal, else sliding window.
    Status flash_attn(Recorder& r, const BufferRange& q, const BufferRange& kc, const BufferRange& vc, const BufferRange& out, const KvShape& s,
                      uint32_t n, uint32_t pos0, uint32_t window, float scale);
    // x (rows, width) = softmax of each row, in place.
    Status softmax(Recorder& r, const BufferRange& x, uint32_t rows, uint32_t width);
    // idx (rows) uint32 = argmax of each row of x (rows, width).
    Status argmax(Recorder& r, const BufferRange& x, const BufferRange& idx, uint32_t rows, uint32_t width);

    // result (2) uint32 = {m, picks[m]}: m = how many drafts (n_drafts int32) equal the
    // target's picks (n_drafts + 1 uint32, from argmax) in a row.
    Status spec_verify(Recorder& r, const BufferRange& picks, const BufferRange& drafts, const BufferRange& result, uint32_t n_drafts);

    // Stochastic verification (spec_dist.comp, spec_sample.comp). The sampling chain of
    // kiln::SamplerParams, top-k required (1..kMaxTopK).
    struct SampleChain {
        uint32_t n_vocab, top_k;
        float temperature, top_p, min_p, repeat_penalty;
    };
    static constexpr uint32_t kMaxTopK = 64, kMaxPenalized = 256, kMaxDraftQ = 64;
    // dist (n, 1 + 2 kMaxTopK) uint = each row's (count, (token, probability bits)...) from
    // logits (n, n_vocab), penalized in place by pen (n, 1 + kMaxPenalized) (count, tokens).
    Status spec_dist(Recorder& r, const BufferRange& logits, const BufferRange& pen, const BufferRange& dist, uint32_t n, const SampleChain& c);
    // result (2) uint32 = {accepted drafts, next token} by rejection sampling: drafts
    // (n_drafts) int32, q (n_drafts, 1 + 2 kMaxDraftQ) their distributions (count 0: one-hot),
    // u (n_drafts + 1, 2) f32 uniforms.
    Status spec_sample(Recorder& r, const BufferRange& dist, const BufferRange& drafts, const BufferRange& q, const BufferRange& u, const BufferRange& result,
                       uint32_t n_drafts);

    // Mixture of experts (kernels/vulkan/moe_*.comp).
    // sel (n, K) uint32 experts, best first, and w (n, K) their weights from the router
    // logits (n, n_expert): softmax, top K (ties to the lower index), renormalized if norm.
    Status moe_route(Recorder& r, const BufferRange& logits, const BufferRange& sel, const BufferRange& w, uint32_t n, uint32_t n_expert, uint32_t k,
                     bool norm);
    struct MoeShape {
        uint32_t k, R;                // columns; rows per expert
        uint32_t n_pairs, K;          // n * K (token, slot) pairs; slots per token
        uint32_t x_stride, y_stride;  // floats between rows
        uint32_t x_by_pair;           // 1: x row = pair (down), 0: x row = token (gate, up)
        uint32_t part_row0, part_rows;  // global rows of the 3-D tensor this binding holds
        uint32_t expert0 = 0, n_experts = 0;  // set by moe_matvec: the experts the part holds
    };
    // y (n_pairs, y_stride) [pair][:R] = x [row of pair] . W_{sel[pair]}^T for the experts whose
    // rows this part of the expert tensor holds; each expert's rows read once per 8 pairs.
    Status moe_matvec(Recorder& r, DType wt, const BufferRange& w, const BufferRange& x, const BufferRange& y, const BufferRange& sel, MoeShape s);
    // y (n, E) = sum_s w[t][s] * down[t*K + s] (+ the shared expert's output already in y,
    // scaled by sigmoid(gate[t]) when gated); down (n*K, E), w (n, K), gate (n).
    enum class Shared : uint32_t { None = 0, Ungated = 1, Gated = 2 };
    Status moe_combine(Recorder& r, const BufferRange& down, const BufferRange& w, const BufferRange& y, const BufferRange& gate, uint32_t E, uint32_t K,
                       uint32_t n, Shared shared);
    // Gated DeltaNet (Qwen3.5 hybrids; kernels/vulkan/delta_*.comp) over one sequence's chunk of
    // n tokens. states: one recurrent layer's (slots + 1, layer_floats) block, a slot's conv
    // window (K - 1, C) first and its state (Hv, S, S) at conv_floats; slots (n + 2) int32: the
    // slot read, 1 to start from zeros, then the slot written after each token (`scratch`, the
    // last one, for tokens not kept).
    struct DeltaShape {
        uint32_t n, C, K, S, Hk, Hv;   // tokens, conv channels, taps, head width, key and value heads
        uint32_t layer_floats, conv_floats, scratch;
        bool grouped = false;          // value head h reads key head h / (Hv / Hk), else h % Hk
    };
    // conv (n, C) = silu(causal conv of mix (n, C) with w (C, K)), windows of kept tokens saved.
    Status delta_conv(Recorder& r, const BufferRange& mix, const BufferRange& w, const BufferRange& states, const BufferRange& slots, const BufferRange& conv,
                      const DeltaShape& s);
    // q and k heads of conv L2-normed in place; gates (n, 2, Hv) = decay, strength from alpha
    // (n, Hv) and beta (n, Hv), or with ba beta (n, 2 Hv) holding both; dt, a (Hv).
    Status delta_prep(Recorder& r, const BufferRange& conv, const BufferRange& alpha, const BufferRange& beta, const BufferRange& dt, const BufferRange& a,
                      const BufferRange& gates, const DeltaShape& s, bool ba, float eps);
    // out (n, Hv * S) = the delta rule's outputs, states moved on.
    Status delta_rule(Recorder& r, const BufferRange& conv, const BufferRange& gates, const BufferRange& states, const BufferRange& slots,
                      const BufferRange& out, const DeltaShape& s);
    // Gated attention: qg (total / D heads, 2 D); mode 0: y = the query halves, mode 1: y *= sigmoid(gate halves).
    Status qgate(Recorder& r, const BufferRange& qg, const BufferRange& y, uint32_t total, uint32_t D, bool gate);

    static constexpr uint32_t kMaxExpertsPerToken = 32;  // moe_route.comp kMaxK
    static constexpr uint32_t kMaxExperts = 4096;        // moe_matvec.comp's bitmap

    // Head dims the attention shaders handle (kernels/vulkan/flash_attn.comp kMaxDim).
    static constexpr uint32_t kMaxHeadDim = 512;

private:
    Expected<const Pipeline*> pipeline(const std::string& name, uint32_t n_bindings, uint32_t push_bytes) {
        return pipelines_.get(name, n_bindings, push_bytes);
    }
    // The IQ1-IQ3 grid tables (kiln::ref::IqGrids, 33 KiB) on the device: the extra binding
    // of matvec, matmul, get_rows and moe_matvec.
    Expected<BufferRange> grids();
    std::shared_ptr<const Context> ctx_;
    PipelineCache pipelines_;
    Buffer grids_;
};

}  // namespace kiln::vulkan
