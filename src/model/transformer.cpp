// The transformer forward pass (llama, qwen2, qwen3, gemma3, and the MoE families), written
// once against LayerOps: it reads like the model, one named step per line. Each backend
// supplies the ops (layer_ops.h).
#include "model/layer_ops.h"

namespace kiln {

Status run_transformer(const Model& model, const std::vector<bool>& skip, LayerOps& ops) {
    const ModelConfig& c = model.config();
    const Weights& w = model.weights();
    KILN_TRY(ops.embed());  // (n, E), scaled by sqrt(E) for Gemma
    ops.tap("embd", -1, Act::X);
    for (int il = 0; il < c.n_layer; ++il) {
        if (skip[size_t(il)]) continue;  // self-speculative draft: the residual stream passes through
        const LayerWeights& L = w.layers[size_t(il)];
        const bool swa = c.layer_is_swa[size_t(il)];

        // ---- attention block ----
        KILN_TRY(ops.norm(Act::X, L.attn_norm, Act::Xn));
        KILN_TRY(ops.linear({&L.wq, &L.wk, &L.wv}, Act::Xn, {Act::Q, Act::K, Act::V}, {&L.wo}));
        ops.tap("attn_norm", il, Act::Xn);
        ops.tap("Vcur", il, Act::V);
        if (c.qkv_bias) KILN_TRY(ops.qkv_bias(L));
        if (c.qk_norm) KILN_TRY(ops.qk_norm(L));
        KILN_TRY(ops.rope(swa && c.rope_theta_local > 0));
        ops.tap("Qcur", il, Act::Q);
        ops.tap("Kcur", il, Act::K);
        KILN_TRY(ops.kv_store(il));
        KILN_TRY(ops.attention(il, swa ? c.sliding_window : 0));
        ops.tap("kqv_out", il, Act::Attn);
        KILN_TRY(ops.linear({&L.wo}, Act::Attn, {Act::Proj}, {&L.ffn_gate, &L.ffn_up}));  // MoE layers have no ffn_gate/up: nothing read ahead
        ops.tap("attn_out", il, Act::Proj);
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
            if (il + 1 < c.n_layer && !skip[size_t(il + 1)]) {  // the next layer's q, k, v read ahead
                const LayerWeights& next = w.layers[size_t(il + 1)];
                KILN_TRY(ops.linear({&L.ffn_down}, Act::Gate, {Act::Proj}, {&next.wq, &next.wk, &next.wv}));
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
