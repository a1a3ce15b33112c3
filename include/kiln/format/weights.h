// The weight tensors of a loaded Model (Model::weights()), as the backends and tools see
// them: views into the mapped file (or its repacked copies).
#pragma once

#include <array>
#include <utility>
#include <vector>

#include "kiln/format/tensor.h"

namespace kiln {

struct LayerWeights {
    TensorView attn_norm;                 // (n_embd)
    TensorView wq, wk, wv, wo;            // (n_embd -> n_head*head_dim), ..., (n_head*head_dim_v -> n_embd)
    TensorView bq, bk, bv;                // biases (Qwen2)
    TensorView q_norm, k_norm;            // (head_dim) per-head RMSNorm weights
    TensorView post_attn_norm;            // Gemma 3: norm of the attention output
    TensorView ffn_norm;                  // (n_embd)
    TensorView ffn_gate, ffn_up, ffn_down;  // dense MLP
    TensorView post_ffn_norm;             // Gemma 3
    // MoE: router and 3-D expert tensors (n_in, n_out, n_expert).
    TensorView ffn_gate_inp;
    TensorView ffn_gate_exps, ffn_up_exps, ffn_down_exps;
    TensorView ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp, ffn_gate_inp_shexp;
    // Gated DeltaNet (recurrent layers of hybrid models).
    TensorView wqkv;            // (n_embd -> conv channels) q, k, v before the conv
    TensorView wqkv_gate;       // (n_embd -> v_dim) z, the output gate
    TensorView ssm_alpha;       // (n_embd -> v_heads) decay input
    TensorView ssm_beta;        // (n_embd -> v_heads) write strength input
    TensorView ssm_ba;          // Qwen3-Next: (n_embd -> 2 v_heads) per key head, its value heads' betas, then their alphas
    TensorView ssm_out;         // (v_dim -> n_embd)
    TensorView ssm_conv1d;      // (conv channels, conv_kernel) f32 taps
    TensorView ssm_dt;          // (v_heads) f32 decay bias
    TensorView ssm_a;           // (v_heads) f32, -exp(A_log)
    TensorView ssm_norm;        // (state) f32 gated RMSNorm weight

    // Every weight matrix of the layer (attention, dense MLP, router, experts, shared
    // expert; absent ones are empty()) and every vector (norms, biases), for the code that
    // walks all of them: repacking, byte counts, the Vulkan upload.
    std::array<TensorView*, 21> matrices() { return matrices_of(*this); }
    std::array<const TensorView*, 21> matrices() const { return matrices_of(*this); }
    std::array<const TensorView*, 13> vectors() const {
        return {&attn_norm, &bq, &bk, &bv, &q_norm, &k_norm, &post_attn_norm, &ffn_norm, &post_ffn_norm, &ssm_conv1d, &ssm_dt, &ssm_a, &ssm_norm};
    }

private:
    template <class Self>
    static std::array<decltype(&std::declval<Self&>().wq), 21> matrices_of(Self& l) {
        return {&l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_gate, &l.ffn_up, &l.ffn_down, &l.ffn_gate_inp, &l.ffn_gate_exps, &l.ffn_up_exps,
                &l.ffn_down_exps, &l.ffn_gate_shexp, &l.ffn_up_shexp, &l.ffn_down_shexp, &l.ffn_gate_inp_shexp,
                &l.wqkv, &l.wqkv_gate, &l.ssm_alpha, &l.ssm_beta, &l.ssm_out, &l.ssm_ba};
    }
};

struct Weights {
    TensorView token_embd;   // (n_vocab rows of n_embd)
    TensorView output_norm;  // (n_embd)
    TensorView output;       // (n_vocab rows of n_embd); == token_embd when tied
    TensorView rope_freqs;   // optional (rope_dim/2) frequency divisors (Llama 3.1)
    std::vector<LayerWeights> layers;
};

}  // namespace kiln
