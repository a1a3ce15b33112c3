// The transformer forward pass (llama, qwen2, qwen3, gemma3, and the MoE families), written
// once against LayerOps: it reads like the model, one named step per line. Each backend
// supplies the ops (layer_ops.h).
#include "model/layer_ops.h"

namespace kiln {

namespace {

// Self-attention over the KV cache; Proj = its output projection.
Status attention_block(const ModelConfig& c, const LayerWeights& L, LayerOps& ops, int il) {
    const bool swa = c.layer_is_swa[size_t(il)];
    const Act q = c.attn_output_gate ? Act::QG : Act::Q;  // Qwen3.5: each head's query comes with a gate
    KILN_TRY(ops.linear({&L.wq, &L.wk, &L.wv}, Act::Xn, {q, Act::K, Act::V}, {&L.wo}));
    ops.tap("Vcur", il, Act::V);
    if (c.attn_output_gate) KILN_TRY(ops.split_q_gate());
    if (c.qkv_bias) KILN_TRY(ops.qkv_bias(L));
    if (c.qk_norm) KILN_TRY(ops.qk_norm(L));
    KILN_TRY(ops.rope(swa && c.rope_theta_local > 0));
    ops.tap("Qcur", il, Act::Q);
    ops.tap("Kcur", il, Act::K);
    KILN_TRY(ops.kv_store(il));
    KILN_TRY(ops.attention(il, swa ? c.sliding_window : 0));
    if (c.attn_output_gate) KILN_TRY(ops.attn_gate());
    ops.tap("kqv_out", il, Act::Attn);
    KILN_TRY(ops.linear({&L.wo}, Act::Attn, {Act::Proj}, {&L.ffn_gate, &L.ffn_up}));  // MoE layers have no ffn_gate/up: nothing read ahead
    ops.tap("attn_out", il, Act::Proj);
    return Status::ok();
}

// Gated DeltaNet (Qwen3.5's linear attention); Proj = its output projection.
Status delta_net_block(const LayerWeights& L, LayerOps& ops, int il) {
    if (!L.ssm_ba.empty())  // Qwen3-Next: beta and alpha from one matrix, into Beta (delta_net splits them)
        KILN_TRY(ops.linear({&L.wqkv, &L.wqkv_gate, &L.ssm_ba}, Act::Xn, {Act::Mix, Act::Z, Act::Beta}, {&L.ssm_out}));
    else
        KILN_TRY(ops.linear({&L.wqkv, &L.wqkv_gate, &L.ssm_alpha, &L.ssm_beta}, Act::Xn, {Act::Mix, Act::Z, Act::Alpha, Act::Beta}, {&L.ssm_out}));
    ops.tap("linear_attn_qkv_mixed", il, Act::Mix);
    KILN_TRY(ops.delta_net(il, L));
    ops.tap("final_output", il, Act::Z);
    KILN_TRY(ops.linear({&L.ssm_out}, Act::Z, {Act::Proj}, {&L.ffn_gate, &L.ffn_up}));
    ops.tap("linear_attn_out", il, Act::Proj);
    return Status::ok();
}

}  // namespace

Status run_transformer(const Model& model, const std::vector<bool>& skip, LayerOps& ops) {
    const ModelConfig& c = model.config();
    const Weights& w = model.weights();
    KILN_TRY(ops.embed());  // (n, E), scaled by sqrt(E) for Gemma
    ops.tap("embd", -1, Act::X);
    for (int il = 0; il < c.n_layer; ++il) {
        if (skip[size_t(il)]) continue;  // self-speculative draft: the residual stream passes through
        const LayerWeights& L = w.layers[size_t(il)];

        // ---- attention block (or, in a hybrid's recurrent layers, gated DeltaNet) ----
        KILN_TRY(ops.norm(Act::X, L.attn_norm, Act::Xn));
        ops.tap("attn_norm", il, Act::Xn);
        if (c.recurrent(il)) KILN_TRY(delta_net_block(L, ops, il));
        else KILN_TRY(attention_block(c, L, ops, il));
        KILN_TRY(ops.residual(L.post_attn_norm));
        KILN_TRY(ops.norm(Act::X, L.ffn_norm, Act::Xn));
        ops.tap("ffn_inp", il, Act::X);
        ops.tap("ffn_norm", il, Act::Xn);

        // ---- feed-forward block ----
        if (c.is_moe()) {
            KILN_TRY(ops.moe(L));
        } else {
            KILN_TRY(ops.linear({&L.ffn_gate, &L.ffn_up}, Act::Xn, {Act::Gate, Act::Up}, {&L.ffn_down}));
            ops.tap("ffn_gate", il, Act::Gate);
            ops.tap("ffn_up", il, Act::Up);
            KILN_TRY(ops.glu(c.arch == Arch::Gemma3));
            ops.tap("ffn_swiglu", il, Act::Gate);
            if (il + 1 < c.n_layer && !skip[size_t(il + 1)]) {  // the next layer's first matrices read ahead
                const LayerWeights& next = w.layers[size_t(il + 1)];
                if (c.recurrent(il + 1)) KILN_TRY(ops.linear({&L.ffn_down}, Act::Gate, {Act::Proj}, {&next.wqkv, &next.wqkv_gate}));
                else KILN_TRY(ops.linear({&L.ffn_down}, Act::Gate, {Act::Proj}, {&next.wq, &next.wk, &next.wv}));
            } else {
                KILN_TRY(ops.linear({&L.ffn_down}, Act::Gate, {Act::Proj}, {}));
            }
        }
        ops.tap("ffn_out", il, Act::Proj);
        KILN_TRY(ops.residual(L.post_ffn_norm));
        ops.tap("l_out", il, Act::X);
    }
    return ops.logits();
}

}  // namespace kiln
