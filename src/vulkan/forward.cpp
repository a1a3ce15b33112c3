// The transformer forward pass on a Vulkan device (llama and Mixtral, qwen2, qwen3, gemma3,
// qwen3moe, qwen2moe, and the DeltaNet hybrids qwen35, qwen35moe, qwen3next): the ops of the one recipe (src/model/transformer.cpp) recorded into
// one command buffer per chunk of tokens, with a barrier wherever a step reads what the
// previous one wrote. Weights are uploaded once;
// only the token ids and RoPE table go up and the asked-for logits come back per forward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "act_format.h"
#include "runtime/device_forward.h"
#include "cpu/recurrent_state.h"
#include "model/layer_ops.h"
#include "vulkan/ops.h"
#include "vulkan/weights.h"
#include "kiln/format/gguf.h"
#include "kiln/speculative.h"

namespace kiln::vulkan {

namespace {

// Everything a Session option or the model may ask for that these shaders do not do, as
// one error naming it (checked before any upload).
Status check_supported(const Model& model, const SessionOptions& o) {
    const ModelConfig& c = model.config();
    const char* path = model.gguf().path().c_str();
    if (c.arch != Arch::Llama && c.arch != Arch::Qwen2 && c.arch != Arch::Qwen3 && c.arch != Arch::Gemma3 && c.arch != Arch::Qwen3Moe && c.arch != Arch::Qwen2Moe &&
        c.arch != Arch::Qwen35 && c.arch != Arch::Qwen35Moe && c.arch != Arch::Qwen3Next)
        return Status::error("%s: architecture %s is not supported by the Vulkan backend", path, arch_name(c.arch));
    const int k = o.n_expert_used > 0 ? o.n_expert_used : c.n_expert_used;
    if (c.is_moe() && (k > int(Ops::kMaxExpertsPerToken) || k > c.n_expert))
        return Status::error("%s: %d experts per token: the Vulkan router takes up to %u (and the model has %d)", path, k, Ops::kMaxExpertsPerToken, c.n_expert);
    if (c.n_expert > int(Ops::kMaxExperts)) return Status::error("%s: %d experts: the Vulkan expert shader takes up to %u", path, c.n_expert, Ops::kMaxExperts);
    if (!c.is_moe() && o.n_expert_used > 0) return Status::error("%s: SessionOptions::n_expert_used given, but the model has no experts", path);
    if (o.kv_hadamard == KvHadamard::On) return Status::error("SessionOptions::kv_hadamard: the Vulkan backend has no rotated KV cache");
    if (o.type_k != o.type_v || (o.type_k != DType::F16 && o.type_k != DType::Q8_0))
        return Status::error("the Vulkan backend keeps an f16 or q8_0 KV cache, the same for K and V (asked for K %s, V %s)", dtype_name(o.type_k),
                             dtype_name(o.type_v));
    if (!Ops::kv_type_supported(o.type_k, uint32_t(c.head_dim), uint32_t(c.head_dim_v)) || c.head_dim > int(Ops::kMaxHeadDim) ||
        c.head_dim_v > int(Ops::kMaxHeadDim))
        return Status::error("%s: head dims %d/%d: the Vulkan attention shader takes even dims (multiples of 32 for q8_0) up to %u", path, c.head_dim,
                             c.head_dim_v, Ops::kMaxHeadDim);
    if (c.n_head % c.n_head_kv) return Status::error("%s: %d query heads are not a multiple of %d KV heads", path, c.n_head, c.n_head_kv);
    if (c.rope_dim > c.head_dim) return Status::error("%s: rope dim %d exceeds head dim %d", path, c.rope_dim, c.head_dim);
    auto check_matrix = [&](const TensorView& t) -> Status {
        if (t.empty()) return Status::ok();
        if (!has_matvec(t.dtype)) return Status::error("%s: tensor '%s' is %s, which the Vulkan backend has no shader for", path, t.name, dtype_name(t.dtype));
        if (t.cols() % 16) return Status::error("%s: tensor '%s' has %lld columns, not a multiple of 16", path, t.name, (long long)t.cols());
        return Status::ok();
    };
    auto check_vector = [&](const TensorView& t) -> Status {
        if (!t.empty() && t.dtype != DType::F32) return Status::error("%s: tensor '%s' is %s; the Vulkan backend expects f32 norms and biases", path, t.name, dtype_name(t.dtype));
        return Status::ok();
    };
    const Weights& w = model.weights();
    KILN_TRY(check_matrix(w.token_embd));
    KILN_TRY(check_matrix(w.output));
    KILN_TRY(check_vector(w.output_norm));
    for (const LayerWeights& L : w.layers) {
        for (const TensorView* t : L.matrices()) KILN_TRY(check_matrix(*t));
        for (const TensorView* t : L.vectors()) KILN_TRY(check_vector(*t));
    }
    return Status::ok();
}

std::vector<const TensorView*> all_tensors(const Weights& w) {
    std::vector<const TensorView*> out = {&w.token_embd, &w.output_norm, &w.output};
    for (const LayerWeights& L : w.layers) {
        for (const TensorView* t : L.vectors()) out.push_back(t);
        for (const TensorView* t : L.matrices()) out.push_back(t);
    }
    return out;
}

// The device forward: LayerOps recorded into one command buffer per chunk (the recipe is
// src/model/transformer.cpp), a barrier after each op.
class VulkanForward final : public DeviceForward, public LayerOps {
public:
    static Expected<std::unique_ptr<DeviceForward>> create(const Model& model, const SessionOptions& o, int n_ctx, int n_batch, const std::vector<bool>& skip);
    Status forward(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, int n_logit_rows, float* logits) override;
    Status verify_greedy(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, int* accepted, int32_t* next) override;
    bool can_verify_sampled(const SampledVerification& v) const override;
    Status verify_sampled(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, const SampledVerification& v,
                          int* accepted, int32_t* next) override;
    // Both verifications: records the batch's forward and its logits, then `test` (shaders
    // that read logits_ and drafts_ and write verdict_), submits and reads the verdict.
    Status verify_round(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local,
                        const std::function<Status(Recorder&)>& test, int* accepted, int32_t* next);
    size_t kv_bytes_per_position() const override {
        const ModelConfig& c = model_.config();
        const int cached = c.n_layer - c.recurrent_index(c.n_layer);  // layers with a KV cache (not a hybrid's recurrent ones)
        return size_t(cached) * size_t(c.n_head_kv) *
               size_t(Ops::kv_row_bytes(kv_shape_.type, uint32_t(c.head_dim)) + Ops::kv_row_bytes(kv_shape_.type, uint32_t(c.head_dim_v)));
    }

private:
    VulkanForward(const Model& model, std::shared_ptr<Context> ctx) : model_(model), ctx_(ctx), ops_(ctx) {}
    Expected<Buffer> device_floats(size_t n) { return Buffer::create(*ctx_, std::max<size_t>(n, 1) * 4, Memory::DeviceLocal); }
    // LayerOps, recorded into rec_ for the chunk of n_ tokens at positions pos0_.. .
    Status embed() override;
    Status norm(Act in, const TensorView& w, Act out) override;
    Status linear(std::initializer_list<const TensorView*> ws, Act in, std::initializer_list<Act> outs, std::initializer_list<const TensorView*> next) override;
    Status qkv_bias(const LayerWeights& L) override;
    Status qk_norm(const LayerWeights& L) override;
    Status rope(bool local_base) override;
    Status kv_store(int il) override;
    Status attention(int il, int window) override;
    Status glu(bool gelu) override;
    Status moe(const LayerWeights& L) override { return record_moe(*rec_, L, n_); }
    Status split_q_gate() override;
    Status attn_gate() override;
    Status delta_net(int il, const LayerWeights& L) override;
    void set_recurrent_plan(int in, bool empty, const std::vector<int>& out) override;
    Status residual(const TensorView& post_norm) override;
    Status logits() override;  // the final norm and its rounding; the caller records the projection
    const Buffer& buf(Act a) const;
    // Uploads the inputs and records the chunk, with the final norm when logits follow
    // (after r.begin(); the caller submits).
    Status record_chunk(Recorder& r, const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, bool logits);
    // Records the vocabulary projection of normed rows first .. first + rows - 1 into logits_ (rows, n_vocab).
    Status record_logits(Recorder& r, int first, int rows);
    // Logits rows that fit one storage binding (vocabularies of 262144 floats on a device
    // with 128 MiB bindings: 128 rows).
    int max_logit_rows() const { return int(std::max<uint64_t>(1, ctx_->max_binding_bytes() / (uint64_t(model_.config().n_vocab) * 4))); }
    // y (n, W.rows) = x (n, W.cols) . W^T; for a quantized W, x's copy rounded by round_inputs().
    Status linear(Recorder& r, const TensorView& w, const Buffer& x, const Buffer& y, int n);
    // Rounds x (rows, k) as the CPU quantizes it for each weight format among `consumers`
    // (act_round.comp) into the copies linear() reads, then a barrier: both backends then
    // dot the same 8-bit values and greedy picks agree even on near ties.
    Status round_inputs(Recorder& r, const Buffer& x, uint32_t k, uint32_t rows, std::initializer_list<const TensorView*> consumers);
    // The buffer a matmul with weights of format wt reads for input x (x itself for float weights).
    const Buffer& input_for(DType wt, const Buffer& x) const;
    // The mixture-of-experts block: xn_ -> proj_ (n, E).
    Status record_moe(Recorder& r, const LayerWeights& L, int n);
    // y (n * K, rows) = x rows . W_e^T for each pair's expert, over every part of w3.
    Status expert_linear(Recorder& r, const TensorView& w3, const Buffer& x, bool x_by_pair, const Buffer& y, int n);

    const Model& model_;
    std::shared_ptr<Context> ctx_;
    Ops ops_;
    std::unique_ptr<Recorder> rec_;
    DeviceWeights weights_;
    std::vector<bool> skip_;
    int n_ctx_ = 0, n_batch_ = 0;
    int n_ = 0, pos0_ = 0;    // the chunk being recorded
    bool want_logits_ = false;
    Ops::KvShape kv_shape_{};

    // Per-forward inputs, written by the host (B = n_batch).
    Buffer ids_;   // (B) int32 token ids
    Buffer rope_;  // (B, rope_dim / 2, 2) cos, sin of the global base, then at rope_local_offset_ the same for the local base
    uint64_t rope_local_offset_ = 0;  // bytes; a multiple of the device's binding offset alignment
    // Activations (device-local), as in SessionState.
    Buffer x_;     // (B, n_embd) residual stream
    Buffer xn_;    // (B, n_embd) normed input of a block
    Buffer q_;     // (B, n_head, head_dim)
    Buffer k_;     // (B, n_head_kv, head_dim)
    Buffer v_;     // (B, n_head_kv, head_dim_v)
    Buffer attn_;  // (B, n_head, head_dim_v)
    Buffer proj_;  // (B, n_embd) output of wo / ffn_down
    Buffer gate_;  // (B, n_ff) (or the shared expert's n_ff_shexp)
    Buffer up_;    // (B, n_ff)
    // Mixture of experts (K = experts per token, X = n_expert, F = n_ff_exp).
    int experts_per_token_ = 0;  // K
    Buffer router_;  // (B, X) router logits
    Buffer sel_;     // (B, K) uint32 chosen experts
    Buffer wsel_;    // (B, K) their weights
    Buffer egate_;   // (B * K, F) each (token, slot)'s gate, then the gated activation
    Buffer eup_;     // (B * K, F)
    Buffer edown_;   // (B * K, E) each slot's expert output
    Buffer gsh_;     // (B) shared-expert gate logits (Qwen2-MoE)
    // Hybrid models (C = conv channels, Hv = value heads, S = state width).
    Buffer qg_;      // (B, n_head, 2 head_dim) queries with their output gates
    Buffer mix_;     // (B, C) DeltaNet q, k, v before the conv
    Buffer conv_;    // (B, C) after the conv (q, k then L2-normed)
    Buffer z_;       // (B, Hv S) output gate, then the layer's output
    Buffer alpha_;   // (B, Hv)
    Buffer beta_;    // (B, 2 Hv) (Qwen3-Next: betas and alphas)
    Buffer gates_;   // (B, 2, Hv) decay, write strength
    Buffer rec_slots_;  // (B + 2) int32 host-visible: slot read, empty flag, slot after each token
    std::vector<Buffer> rec_states_;  // [recurrent layer] (slots + 1, layer_floats): conv window, then (Hv, S, S); the last slot is scratch
    Ops::DeltaShape delta_{};
    // Inputs of quantized matmuls, rounded as the CPU quantizes them (I = the widest input,
    // max(n_embd, n_ff, n_head * head_dim_v, K * n_ff_exp)).
    Buffer x_q8_;       // (B, I) rounded for q8_x32 (32-element weight formats)
    Buffer x_q8_sums_;  // (B, I / 32) their fp16-rounded block sums
    Buffer x_q8K_;      // (B, I) rounded for q8_K (k-quants)
    VkBuffer rounded_from_[2] = {};  // the buffer each copy was last rounded from (checked by input_for)
    std::vector<Buffer> k_cache_, v_cache_;  // [layer] (n_head_kv, n_ctx, row of head_dim[_v]) in kv_shape_.type
    Buffer logits_;  // (rows, n_vocab) host-visible, grown to the largest request
    // Greedy verification (verify_greedy).
    Buffer picks_;   // (B) uint32 argmax of each logits row
    Buffer drafts_;  // (B) int32 drafted tokens, host-visible
    Buffer verdict_; // (2) uint32 accepted count, next token; host-visible
    // Stochastic verification (verify_sampled), host-visible inputs and the device's distributions.
    Buffer pen_;     // (B, 1 + kMaxPenalized) uint32: count, penalized tokens per row
    Buffer draft_q_; // (B, 1 + 2 kMaxDraftQ) uint32: count, (token, f32 bits) per draft
    Buffer u_;       // (B, 2) f32 uniforms
    Buffer dist_;    // (B, 1 + 2 kMaxTopK) uint32: each row's sampling distribution (device-local)
};

Expected<std::unique_ptr<DeviceForward>> VulkanForward::create(const Model& model, const SessionOptions& o, int n_ctx, int n_batch,
                                                               const std::vector<bool>& skip) {
    KILN_TRY(check_supported(model, o));
    auto ctx = Context::create(o.device);
    KILN_TRY(ctx);
    std::unique_ptr<VulkanForward> f(new VulkanForward(model, ctx.value()));
    const ModelConfig& c = model.config();
    f->skip_ = skip;
    f->n_ctx_ = n_ctx;
    f->n_batch_ = n_batch;
    f->kv_shape_ = {uint32_t(c.n_head), uint32_t(c.n_head_kv), uint32_t(c.head_dim), uint32_t(c.head_dim_v), uint32_t(n_ctx), o.type_k};
    auto rec = Recorder::create(*f->ctx_);
    KILN_TRY(rec);
    f->rec_ = std::move(rec.value());
    KILN_TRY(f->weights_.upload(*f->ctx_, all_tensors(model.weights())));

    const size_t B = size_t(n_batch), E = size_t(c.n_embd);
    // Every buffer below is bound whole, so each must fit the device's largest binding.
    const uint64_t max_binding = f->ctx_->max_binding_bytes();
    const uint64_t kv_layer = uint64_t(c.n_head_kv) * uint64_t(n_ctx) *
                              std::max(Ops::kv_row_bytes(o.type_k, uint32_t(c.head_dim)), Ops::kv_row_bytes(o.type_v, uint32_t(c.head_dim_v)));
    if (kv_layer > max_binding)
        return Status::error("a context of %d tokens needs %.1f MiB of KV cache per layer, more than %s binds at once (%.1f MiB); lower SessionOptions::n_ctx", n_ctx,
                             double(kv_layer) / (1 << 20), f->ctx_->name(), double(max_binding) / (1 << 20));
    const uint64_t widest = B * 4 * uint64_t(std::max({c.n_embd, c.n_ff, c.n_head * c.head_dim, c.n_head * c.head_dim_v}));
    if (widest > max_binding)
        return Status::error("a batch of %d tokens needs %.1f MiB activation buffers, more than %s binds at once; lower the batch size", n_batch,
                             double(widest) / (1 << 20), f->ctx_->name());
    auto alloc = [&](Buffer& b, Expected<Buffer> made) -> Status {
        if (!made) return made.status();
        b = std::move(made.value());
        return Status::ok();
    };
    KILN_TRY(alloc(f->ids_, Buffer::create(*f->ctx_, B * 4, Memory::HostVisible)));
    const uint64_t align = std::max<uint64_t>(256, f->ctx_->properties().limits.minStorageBufferOffsetAlignment);
    f->rope_local_offset_ = (std::max<uint64_t>(B * size_t(c.rope_dim / 2) * 2 * 4, 4) + align - 1) / align * align;
    KILN_TRY(alloc(f->rope_, Buffer::create(*f->ctx_, 2 * f->rope_local_offset_, Memory::HostVisible)));
    KILN_TRY(alloc(f->picks_, Buffer::create(*f->ctx_, B * 4, Memory::DeviceLocal)));
    KILN_TRY(alloc(f->drafts_, Buffer::create(*f->ctx_, B * 4, Memory::HostVisible)));
    KILN_TRY(alloc(f->verdict_, Buffer::create(*f->ctx_, 8, Memory::HostVisible)));
    KILN_TRY(alloc(f->pen_, Buffer::create(*f->ctx_, B * (1 + Ops::kMaxPenalized) * 4, Memory::HostVisible)));
    KILN_TRY(alloc(f->draft_q_, Buffer::create(*f->ctx_, B * (1 + 2 * Ops::kMaxDraftQ) * 4, Memory::HostVisible)));
    KILN_TRY(alloc(f->u_, Buffer::create(*f->ctx_, B * 2 * 4, Memory::HostVisible)));
    KILN_TRY(alloc(f->dist_, Buffer::create(*f->ctx_, B * (1 + 2 * Ops::kMaxTopK) * 4, Memory::DeviceLocal)));
    KILN_TRY(alloc(f->x_, f->device_floats(B * E)));
    KILN_TRY(alloc(f->xn_, f->device_floats(B * E)));
    KILN_TRY(alloc(f->q_, f->device_floats(B * size_t(c.n_head) * c.head_dim)));
    KILN_TRY(alloc(f->k_, f->device_floats(B * size_t(c.n_head_kv) * c.head_dim)));
    KILN_TRY(alloc(f->v_, f->device_floats(B * size_t(c.n_head_kv) * c.head_dim_v)));
    KILN_TRY(alloc(f->attn_, f->device_floats(B * std::max(size_t(c.n_head) * c.head_dim_v, size_t(c.ssm_v_dim())))));
    KILN_TRY(alloc(f->proj_, f->device_floats(B * E)));
    const size_t F = size_t(std::max(c.n_ff, c.n_ff_shexp));
    KILN_TRY(alloc(f->gate_, f->device_floats(B * F)));
    KILN_TRY(alloc(f->up_, f->device_floats(B * F)));
    const size_t K_used = c.is_moe() ? size_t(o.n_expert_used > 0 ? o.n_expert_used : c.n_expert_used) : 0;
    const size_t I = std::max({E, F, size_t(c.n_head) * c.head_dim_v, K_used * size_t(c.n_ff_exp)});
    KILN_TRY(alloc(f->x_q8_, f->device_floats(B * I)));
    KILN_TRY(alloc(f->x_q8_sums_, f->device_floats(B * I / 32)));
    KILN_TRY(alloc(f->x_q8K_, f->device_floats(B * I)));
    if (c.is_moe()) {
        const size_t K = K_used, Fe = size_t(c.n_ff_exp);
        f->experts_per_token_ = int(K);
        if (B * K * 4 * std::max(Fe, E) > max_binding)
            return Status::error("a batch of %d tokens x %zu experts needs activation buffers larger than %s binds at once; lower the batch size", n_batch, K,
                                 f->ctx_->name());
        KILN_TRY(alloc(f->router_, f->device_floats(B * size_t(c.n_expert))));
        KILN_TRY(alloc(f->sel_, f->device_floats(B * K)));
        KILN_TRY(alloc(f->wsel_, f->device_floats(B * K)));
        KILN_TRY(alloc(f->egate_, f->device_floats(B * K * Fe)));
        KILN_TRY(alloc(f->eup_, f->device_floats(B * K * Fe)));
        KILN_TRY(alloc(f->edown_, f->device_floats(B * K * E)));
        KILN_TRY(alloc(f->gsh_, f->device_floats(B)));
    }
    if (c.attn_output_gate) KILN_TRY(alloc(f->qg_, f->device_floats(B * size_t(c.n_head) * 2 * c.head_dim)));
    if (c.is_hybrid()) {
        const size_t C = size_t(c.ssm_conv_channels()), Vd = size_t(c.ssm_v_dim()), Hv = size_t(c.ssm_v_heads), S = size_t(c.ssm_state);
        const int slots = RecurrentStates::slots_for(o.recurrent_rollback);  // as the session's bookkeeping
        const size_t conv_floats = size_t(c.ssm_conv_kernel - 1) * C, layer_floats = (conv_floats + Hv * S * S + 15) / 16 * 16;
        f->delta_ = {0, uint32_t(C), uint32_t(c.ssm_conv_kernel), uint32_t(S), uint32_t(c.ssm_k_heads), uint32_t(Hv), uint32_t(layer_floats),
                     uint32_t(conv_floats), uint32_t(slots), c.ssm_grouped_heads};
        if (uint64_t(slots + 1) * layer_floats * 4 > max_binding)
            return Status::error("%s: the recurrent state of a layer with %d snapshots (%.1f MiB) is more than %s binds at once; lower SessionOptions::recurrent_rollback",
                                 model.gguf().path().c_str(), slots, double(slots + 1) * double(layer_floats) * 4 / (1 << 20), f->ctx_->name());
        KILN_TRY(alloc(f->mix_, f->device_floats(B * C)));
        KILN_TRY(alloc(f->conv_, f->device_floats(B * C)));
        KILN_TRY(alloc(f->z_, f->device_floats(B * Vd)));
        KILN_TRY(alloc(f->alpha_, f->device_floats(B * Hv)));
        KILN_TRY(alloc(f->beta_, f->device_floats(B * 2 * Hv)));
        KILN_TRY(alloc(f->gates_, f->device_floats(B * 2 * Hv)));
        KILN_TRY(alloc(f->rec_slots_, Buffer::create(*f->ctx_, (B + 2) * 4, Memory::HostVisible)));
        for (int il = 0; il < c.n_layer; ++il)
            if (c.recurrent(il)) {
                Buffer b;
                KILN_TRY(alloc(b, f->device_floats(size_t(slots + 1) * layer_floats)));
                f->rec_states_.push_back(std::move(b));
            }
    }
    for (int il = 0; il < c.n_layer; ++il) {
        // Skipped layers (self-speculative drafts) never touch their cache, nor a hybrid's
        // recurrent layers: a 4-byte stand-in.
        const size_t positions = skip[size_t(il)] || c.recurrent(il) ? 0 : size_t(n_ctx);
        const uint64_t k_row = Ops::kv_row_bytes(o.type_k, uint32_t(c.head_dim)), v_row = Ops::kv_row_bytes(o.type_v, uint32_t(c.head_dim_v));
        auto kc = Buffer::create(*f->ctx_, std::max<uint64_t>(c.n_head_kv * positions * k_row, 4), Memory::DeviceLocal);
        KILN_TRY(kc);
        auto vc = Buffer::create(*f->ctx_, std::max<uint64_t>(c.n_head_kv * positions * v_row, 4), Memory::DeviceLocal);
        KILN_TRY(vc);
        f->k_cache_.push_back(std::move(kc.value()));
        f->v_cache_.push_back(std::move(vc.value()));
    }
    return std::unique_ptr<DeviceForward>(std::move(f));
}

Status VulkanForward::round_inputs(Recorder& r, const Buffer& x, uint32_t k, uint32_t rows, std::initializer_list<const TensorView*> consumers) {
    bool need[2] = {};  // q8_x32, q8_K
    for (const TensorView* w : consumers)
        if (!w->empty()) {
            const ActFormat f = act_format(w->dtype);
            need[0] |= f == ActFormat::Q8x32;
            need[1] |= f == ActFormat::Q8K;
        }
    if (need[0]) KILN_TRY(ops_.act_round(r, whole(x), whole(x_q8_), whole(x_q8_sums_), k, rows, false));
    if (need[1]) KILN_TRY(ops_.act_round(r, whole(x), whole(x_q8K_), whole(x_q8_sums_), k, rows, true));
    for (int i = 0; i < 2; ++i)
        if (need[i]) rounded_from_[i] = x.handle();
    if (need[0] || need[1]) r.barrier();
    return Status::ok();
}

const Buffer& VulkanForward::input_for(DType wt, const Buffer& x) const {
    const ActFormat f = act_format(wt);
    if (f == ActFormat::F32) return x;
    const int i = f == ActFormat::Q8K ? 1 : 0;
    KILN_ASSERT(rounded_from_[i] == x.handle(), "vulkan forward: a %s matmul input was not rounded first", dtype_name(wt));
    return i ? x_q8K_ : x_q8_;
}

Status VulkanForward::linear(Recorder& r, const TensorView& w, const Buffer& x, const Buffer& y, int n) {
    const DeviceTensor& t = weights_[w];
    const Buffer& in = input_for(t.dtype, x);
    for (const DeviceTensor::Part& part : t.parts)
        KILN_TRY(ops_.linear(r, t.dtype, part.range, whole(in), whole(y), {t.cols, part.rows, uint32_t(n), t.cols, t.rows, 0, part.row0}, whole(x_q8_sums_)));
    return Status::ok();
}

Status VulkanForward::expert_linear(Recorder& r, const TensorView& w3, const Buffer& x, bool x_by_pair, const Buffer& y, int n) {
    const DeviceTensor& t = weights_[w3];
    const uint32_t R = uint32_t(w3.ne[1]), pairs = uint32_t(n * experts_per_token_);
    const Buffer& in = input_for(t.dtype, x);
    for (const DeviceTensor::Part& part : t.parts)
        KILN_TRY(ops_.moe_matvec(r, t.dtype, part.range, whole(in), whole(y), whole(sel_), {t.cols, R, pairs, uint32_t(experts_per_token_), t.cols, R, x_by_pair ? 1u : 0u, part.row0, part.rows}));
    return Status::ok();
}

Status VulkanForward::record_moe(Recorder& r, const LayerWeights& L, int n) {
    const ModelConfig& c = model_.config();
    const uint32_t un = uint32_t(n), K = uint32_t(experts_per_token_), Fe = uint32_t(c.n_ff_exp), E = uint32_t(c.n_embd);
    KILN_TRY(round_inputs(r, xn_, uint32_t(c.n_embd), un,
                          {&L.ffn_gate_inp, &L.ffn_gate_exps, &L.ffn_up_exps, &L.ffn_gate_shexp, &L.ffn_up_shexp, &L.ffn_gate_inp_shexp}));
    KILN_TRY(linear(r, L.ffn_gate_inp, xn_, router_, n));  // (n, X)
    r.barrier();
    KILN_TRY(ops_.moe_route(r, whole(router_), whole(sel_), whole(wsel_), un, uint32_t(c.n_expert), K, c.expert_weights_norm));  // (n, K)
    r.barrier();
    KILN_TRY(expert_linear(r, L.ffn_gate_exps, xn_, false, egate_, n));  // (n * K, F)
    KILN_TRY(expert_linear(r, L.ffn_up_exps, xn_, false, eup_, n));      // (n * K, F)
    Ops::Shared shared = Ops::Shared::None;
    if (!L.ffn_gate_shexp.empty()) {  // Qwen2-MoE's shared expert, into proj_ (n, E)
        KILN_TRY(linear(r, L.ffn_gate_shexp, xn_, gate_, n));
        KILN_TRY(linear(r, L.ffn_up_shexp, xn_, up_, n));
        shared = Ops::Shared::Ungated;
        if (!L.ffn_gate_inp_shexp.empty()) {
            KILN_TRY(linear(r, L.ffn_gate_inp_shexp, xn_, gsh_, n));  // (n, 1)
            shared = Ops::Shared::Gated;
        }
    }
    r.barrier();
    KILN_TRY(ops_.glu(r, whole(egate_), whole(eup_), un * K * Fe, false));
    if (shared != Ops::Shared::None) KILN_TRY(ops_.glu(r, whole(gate_), whole(up_), un * uint32_t(c.n_ff_shexp), false));
    r.barrier();
    KILN_TRY(round_inputs(r, egate_, Fe, un * K, {&L.ffn_down_exps}));
    KILN_TRY(expert_linear(r, L.ffn_down_exps, egate_, true, edown_, n));  // (n * K, E)
    r.barrier();
    if (shared != Ops::Shared::None) {  // after the experts: the rounded copies are reused
        KILN_TRY(round_inputs(r, gate_, uint32_t(c.n_ff_shexp), un, {&L.ffn_down_shexp}));
        KILN_TRY(linear(r, L.ffn_down_shexp, gate_, proj_, n));
        r.barrier();
    }
    KILN_TRY(ops_.moe_combine(r, whole(edown_), whole(wsel_), whole(proj_), whole(gsh_), E, K, un, shared));  // (n, E)
    r.barrier();
    return Status::ok();
}

const Buffer& VulkanForward::buf(Act a) const {
    switch (a) {
        case Act::X: return x_;
        case Act::Xn: return xn_;
        case Act::Q: return q_;
        case Act::K: return k_;
        case Act::V: return v_;
        case Act::Attn: return attn_;
        case Act::Proj: return proj_;
        case Act::Gate: return gate_;
        case Act::Up: return up_;
        case Act::QG: return qg_;
        case Act::Mix: return mix_;
        case Act::Z: return z_;
        case Act::Alpha: return alpha_;
        case Act::Beta: return beta_;
    }
    return x_;
}

Status VulkanForward::embed() {
    const DeviceTensor& embd = weights_[model_.weights().token_embd];
    for (const DeviceTensor::Part& part : embd.parts)
        KILN_TRY(ops_.get_rows(*rec_, embd.dtype, part.range, whole(ids_), whole(x_), uint32_t(model_.config().n_embd), uint32_t(n_), model_.config().embd_scale,
                               part.row0, part.rows));  // (n, E)
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::norm(Act in, const TensorView& w, Act out) {
    const ModelConfig& c = model_.config();
    KILN_TRY(ops_.rms_norm(*rec_, whole(buf(in)), weights_[w].range(), whole(buf(out)), uint32_t(n_), uint32_t(c.n_embd), c.rms_eps));
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::linear(std::initializer_list<const TensorView*> ws, Act in, std::initializer_list<Act> outs, std::initializer_list<const TensorView*>) {
    KILN_TRY(round_inputs(*rec_, buf(in), uint32_t((*ws.begin())->cols()), uint32_t(n_), ws));
    const Act* out = std::data(outs);
    for (const TensorView* w : ws) KILN_TRY(linear(*rec_, *w, buf(in), buf(*out++), n_));
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::qkv_bias(const LayerWeights& L) {
    const ModelConfig& c = model_.config();
    const uint32_t un = uint32_t(n_), H = uint32_t(c.n_head), Hkv = uint32_t(c.n_head_kv), D = uint32_t(c.head_dim), Dv = uint32_t(c.head_dim_v);
    KILN_TRY(ops_.add(*rec_, whole(q_), weights_[L.bq].range(), un * H * D, H * D));
    KILN_TRY(ops_.add(*rec_, whole(k_), weights_[L.bk].range(), un * Hkv * D, Hkv * D));
    KILN_TRY(ops_.add(*rec_, whole(v_), weights_[L.bv].range(), un * Hkv * Dv, Hkv * Dv));
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::qk_norm(const LayerWeights& L) {
    const ModelConfig& c = model_.config();
    const uint32_t un = uint32_t(n_), D = uint32_t(c.head_dim);
    KILN_TRY(ops_.rms_norm(*rec_, whole(q_), weights_[L.q_norm].range(), whole(q_), un * uint32_t(c.n_head), D, c.rms_eps));
    KILN_TRY(ops_.rms_norm(*rec_, whole(k_), weights_[L.k_norm].range(), whole(k_), un * uint32_t(c.n_head_kv), D, c.rms_eps));
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::rope(bool local_base) {
    const ModelConfig& c = model_.config();
    const uint32_t un = uint32_t(n_), D = uint32_t(c.head_dim);
    const BufferRange cs{rope_.handle(), local_base ? rope_local_offset_ : 0, rope_local_offset_};
    KILN_TRY(ops_.rope(*rec_, whole(q_), cs, un, uint32_t(c.n_head), D, uint32_t(c.rope_dim), c.rope_neox));
    KILN_TRY(ops_.rope(*rec_, whole(k_), cs, un, uint32_t(c.n_head_kv), D, uint32_t(c.rope_dim), c.rope_neox));
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::kv_store(int il) {
    KILN_TRY(ops_.kv_store(*rec_, whole(k_), whole(v_), whole(k_cache_[size_t(il)]), whole(v_cache_[size_t(il)]), kv_shape_, uint32_t(n_), uint32_t(pos0_)));
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::attention(int il, int window) {
    // Gemma scales the queries by attn_scale (and not by 1/sqrt(head_dim)); one factor on q.k.
    const ModelConfig& c = model_.config();
    const float scale = c.attn_scale > 0 ? c.attn_scale : 1.0f / std::sqrt(float(c.head_dim));
    KILN_TRY(ops_.flash_attn(*rec_, whole(q_), whole(k_cache_[size_t(il)]), whole(v_cache_[size_t(il)]), whole(attn_), kv_shape_, uint32_t(n_), uint32_t(pos0_),
                             uint32_t(window), scale));  // (n, H, Dv)
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::split_q_gate() {
    const ModelConfig& c = model_.config();
    KILN_TRY(ops_.qgate(*rec_, whole(qg_), whole(q_), uint32_t(n_) * uint32_t(c.n_head) * uint32_t(c.head_dim), uint32_t(c.head_dim), false));
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::attn_gate() {
    const ModelConfig& c = model_.config();
    KILN_TRY(ops_.qgate(*rec_, whole(qg_), whole(attn_), uint32_t(n_) * uint32_t(c.n_head) * uint32_t(c.head_dim_v), uint32_t(c.head_dim_v), true));
    rec_->barrier();
    return Status::ok();
}

void VulkanForward::set_recurrent_plan(int in, bool empty, const std::vector<int>& out) {
    int32_t* slots = static_cast<int32_t*>(rec_slots_.mapped());  // (n + 2) read by the delta_* shaders
    slots[0] = in, slots[1] = empty ? 1 : 0;
    for (size_t t = 0; t < out.size(); ++t) slots[2 + t] = out[t] >= 0 ? out[t] : int32_t(delta_.scratch);
}

Status VulkanForward::delta_net(int il, const LayerWeights& L) {
    // The same steps as the CPU's (src/cpu/delta_net.cpp), one shader each.
    const ModelConfig& c = model_.config();
    Ops::DeltaShape s = delta_;
    s.n = uint32_t(n_);
    const BufferRange states = whole(rec_states_[size_t(c.recurrent_index(il))]), slots = whole(rec_slots_);
    KILN_TRY(ops_.delta_conv(*rec_, whole(mix_), weights_[L.ssm_conv1d].range(), states, slots, whole(conv_), s));  // (n, C)
    rec_->barrier();
    KILN_TRY(ops_.delta_prep(*rec_, whole(conv_), whole(alpha_), whole(beta_), weights_[L.ssm_dt].range(), weights_[L.ssm_a].range(), whole(gates_), s,
                             !L.ssm_ba.empty(), c.rms_eps));
    rec_->barrier();
    KILN_TRY(ops_.delta_rule(*rec_, whole(conv_), whole(gates_), states, slots, whole(attn_), s));  // (n, Hv S)
    rec_->barrier();
    KILN_TRY(ops_.rms_norm(*rec_, whole(attn_), weights_[L.ssm_norm].range(), whole(attn_), s.n * s.Hv, s.S, c.rms_eps));
    rec_->barrier();
    KILN_TRY(ops_.glu(*rec_, whole(z_), whole(attn_), s.n * s.Hv * s.S, false));  // z = silu(z) * norm(o)
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::glu(bool gelu) {
    KILN_TRY(ops_.glu(*rec_, whole(gate_), whole(up_), uint32_t(n_) * uint32_t(model_.config().n_ff), gelu));
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::residual(const TensorView& post_norm) {
    const uint32_t E = uint32_t(model_.config().n_embd), un = uint32_t(n_);
    if (!post_norm.empty()) {
        KILN_TRY(ops_.rms_norm(*rec_, whole(proj_), weights_[post_norm].range(), whole(proj_), un, E, model_.config().rms_eps));
        rec_->barrier();
    }
    KILN_TRY(ops_.add(*rec_, whole(x_), whole(proj_), un * E, un * E));
    rec_->barrier();
    return Status::ok();
}

Status VulkanForward::logits() {
    if (!want_logits_) return Status::ok();
    // The final norm of every row (cheap, and no sub-buffer offset to align), rounded for the head.
    const ModelConfig& c = model_.config();
    KILN_TRY(ops_.rms_norm(*rec_, whole(x_), weights_[model_.weights().output_norm].range(), whole(xn_), uint32_t(n_), uint32_t(c.n_embd), c.rms_eps));
    rec_->barrier();
    return round_inputs(*rec_, xn_, uint32_t(c.n_embd), uint32_t(n_), {&model_.weights().output});
}

Status VulkanForward::record_chunk(Recorder& r, const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, bool logits) {
    const ModelConfig& c = model_.config();
    KILN_ASSERT(n >= 1 && n <= n_batch_ && pos0 + n <= n_ctx_, "vulkan forward: n %d, pos0 %d", n, pos0);

    // Inputs: token ids and the RoPE tables (global, then local, each n_batch tokens long).
    std::memcpy(ids_.mapped(), tokens, size_t(n) * 4);
    const size_t rope_bytes = size_t(n) * size_t(c.rope_dim / 2) * 2 * 4;
    std::memcpy(rope_.mapped(), rope_global, rope_bytes);
    if (rope_local) std::memcpy(static_cast<uint8_t*>(rope_.mapped()) + rope_local_offset_, rope_local, rope_bytes);

    KILN_ASSERT(&r == rec_.get(), "vulkan forward: one recorder");
    n_ = n, pos0_ = pos0, want_logits_ = logits;
    return run_transformer(model_, skip_, *this);
}

Status VulkanForward::record_logits(Recorder& r, int first, int rows) {
    const uint32_t E = uint32_t(model_.config().n_embd), V = uint32_t(model_.config().n_vocab);
    KILN_ASSERT(rows <= max_logit_rows(), "%d logits rows exceed one binding", rows);
    if (logits_.size() < uint64_t(rows) * V * 4) {
        auto b = Buffer::create(*ctx_, uint64_t(rows) * V * 4, Memory::HostVisible);
        KILN_TRY(b);
        logits_ = std::move(b.value());
    }
    const DeviceTensor& out = weights_[model_.weights().output];
    const BufferRange y{logits_.handle(), 0, uint64_t(rows) * V * 4};
    const Buffer& in = input_for(out.dtype, xn_);
    for (const DeviceTensor::Part& part : out.parts)  // (rows, n_vocab)
        KILN_TRY(ops_.linear(r, out.dtype, part.range, whole(in), y, {E, part.rows, uint32_t(rows), E, V, uint32_t(first) * E, part.row0}, whole(x_q8_sums_)));
    return Status::ok();
}

Status VulkanForward::forward(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, int n_logit_rows, float* logits) {
    const size_t V = size_t(model_.config().n_vocab);
    Recorder& r = *rec_;
    r.begin();
    KILN_TRY(record_chunk(r, tokens, n, pos0, rope_global, rope_local, n_logit_rows > 0));
    // The logits of the last n_logit_rows tokens, in groups that fit one binding: the first
    // in the same submission, any others (many rows of a large vocabulary) in their own.
    const int group = max_logit_rows();
    for (int done = 0; done < n_logit_rows || done == 0; done += group) {
        const int rows = std::min(group, n_logit_rows - done);
        if (done > 0) r.begin();
        if (rows > 0) KILN_TRY(record_logits(r, n - n_logit_rows + done, rows));
        KILN_TRY(r.submit_and_wait());
        if (rows > 0) std::memcpy(logits + size_t(done) * V, logits_.mapped(), size_t(rows) * V * 4);
    }
    return Status::ok();
}

Status VulkanForward::verify_round(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local,
                                   const std::function<Status(Recorder&)>& test, int* accepted, int32_t* next) {
    std::memcpy(drafts_.mapped(), tokens + 1, size_t(n - 1) * 4);
    Recorder& r = *rec_;
    r.begin();
    KILN_TRY(record_chunk(r, tokens, n, pos0, rope_global, rope_local, true));
    KILN_TRY(record_logits(r, 0, n));  // n <= kMatvecTokens rows
    r.barrier();
    KILN_TRY(test(r));
    KILN_TRY(r.submit_and_wait());
    const uint32_t* verdict = static_cast<const uint32_t*>(verdict_.mapped());
    *accepted = int(verdict[0]);
    *next = int32_t(verdict[1]);
    return Status::ok();
}

Status VulkanForward::verify_greedy(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, int* accepted, int32_t* next) {
    const uint32_t V = uint32_t(model_.config().n_vocab), n_drafts = uint32_t(n - 1);
    auto test = [&](Recorder& r) -> Status {
        KILN_TRY(ops_.argmax(r, whole(logits_), whole(picks_), uint32_t(n), V));  // (n) greedy picks
        r.barrier();
        return ops_.spec_verify(r, whole(picks_), whole(drafts_), whole(verdict_), n_drafts);
    };
    return verify_round(tokens, n, pos0, rope_global, rope_local, test, accepted, next);
}

bool VulkanForward::can_verify_sampled(const SampledVerification& v) const {
    if (!(v.params.temperature > 0) || v.params.top_k < 1 || v.params.top_k > int(Ops::kMaxTopK)) return false;
    if (v.params.frequency_penalty != 0 || v.params.presence_penalty != 0) return false;  // the shader has the repetition penalty only
    for (const auto& pen : v.penalized)
        if (pen.size() > Ops::kMaxPenalized) return false;
    for (const auto& q : v.q)
        if (q.size() > Ops::kMaxDraftQ) return false;
    return true;
}

Status VulkanForward::verify_sampled(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, const SampledVerification& v,
                                     int* accepted, int32_t* next) {
    const int V = model_.config().n_vocab;
    const uint32_t n_drafts = uint32_t(n - 1);
    uint32_t* pen = static_cast<uint32_t*>(pen_.mapped());
    uint32_t* q = static_cast<uint32_t*>(draft_q_.mapped());
    float* u = static_cast<float*>(u_.mapped());
    for (int m = 0; m < n; ++m) {
        uint32_t* row = pen + size_t(m) * (1 + Ops::kMaxPenalized);
        row[0] = 0;
        for (int32_t t : v.penalized[size_t(m)])
            if (t >= 0 && t < V) row[1 + row[0]++] = uint32_t(t);
        // f32 uniforms, kept below 1 (a double just under 1 would round up to 1.0f).
        for (int j = 0; j < 2; ++j) u[2 * m + j] = std::min(float(v.u[size_t(2 * m + j)]), 0x1.fffffep-1f);
    }
    for (uint32_t m = 0; m < n_drafts; ++m) {
        uint32_t* row = q + size_t(m) * (1 + 2 * Ops::kMaxDraftQ);
        row[0] = uint32_t(v.q[m].size());
        for (size_t i = 0; i < v.q[m].size(); ++i) {
            row[1 + 2 * i] = uint32_t(v.q[m][i].first);
            std::memcpy(&row[2 + 2 * i], &v.q[m][i].second, 4);
        }
    }
    const SamplerParams& sp = v.params;
    const Ops::SampleChain chain{uint32_t(V), uint32_t(sp.top_k), sp.temperature, sp.top_p, sp.min_p, sp.repeat_penalty};
    auto test = [&](Recorder& r) -> Status {
        KILN_TRY(ops_.spec_dist(r, whole(logits_), whole(pen_), whole(dist_), uint32_t(n), chain));  // (n) distributions
        r.barrier();
        return ops_.spec_sample(r, whole(dist_), whole(drafts_), whole(draft_q_), whole(u_), whole(verdict_), n_drafts);
    };
    return verify_round(tokens, n, pos0, rope_global, rope_local, test, accepted, next);
}

}  // namespace

}  // namespace kiln::vulkan

namespace kiln {

Expected<std::unique_ptr<DeviceForward>> create_vulkan_forward(const Model& model, const SessionOptions& options, int n_ctx, int n_batch,
                                                               const std::vector<bool>& skip_layers) {
    return vulkan::VulkanForward::create(model, options, n_ctx, n_batch, skip_layers);
}

}  // namespace kiln
