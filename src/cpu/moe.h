// Mixture-of-experts feed-forward block (qwen3moe, qwen2moe, llama with experts = Mixtral).
#pragma once

#include "cpu/session_impl.h"

namespace kiln {

// Scratch of the MoE layers for one chunk of n <= n_batch tokens; k = experts per token.
struct MoeScratch {
    int k = 0;                     // experts per token (the model's or SessionOptions::n_expert_used)
    bool dense_reference = false;  // KILN_MOE_DENSE_REFERENCE=1: every expert on every token, then masked (tests)
    size_t row_in = 0, row_h = 0;  // largest bytes of one quantized input row of gate/up, of down
    int unit = 16;                 // rows of gate/up per job: a whole number of fmt_h blocks and of 16-row panels

    AlignedBuffer<float> logits;   // (n, n_expert) router logits, then probabilities
    std::vector<int32_t> sel;      // (n, k) experts chosen for each token, best first
    std::vector<float> wsel;       // (n, k) their weights
    std::vector<int32_t> slot;     // (n, k) row of assignment (token, j) in the expert-sorted order
    std::vector<int32_t> count;    // (n_expert) tokens routed to each expert
    std::vector<int32_t> offset;   // (n_expert) first expert-sorted row of each expert
    std::vector<int32_t> cursor;   // (n_expert) next free row of each expert while sorting
    std::vector<int32_t> active;   // experts with at least one token, ascending
    AlignedBuffer<uint8_t> xg;     // (n * k, row_in) quantized block inputs, gathered in expert-sorted order
    AlignedBuffer<float> gate;     // (n * k, n_ff_exp) gate projections, then silu(gate) * up
    AlignedBuffer<float> up;       // (n * k, n_ff_exp)
    AlignedBuffer<uint8_t> hq;     // (n * k, row_h) quantized silu(gate) * up
    AlignedBuffer<float> out;      // (n * k, n_embd) expert outputs before weighting
    AlignedBuffer<float> sh_out;   // (n, n_embd) shared expert output (qwen2moe)
};

// Allocates s.moe for n_batch tokens with k experts per token (0: the model's count);
// errors name the layer and tensor the runtime cannot run.
Status moe_init(SessionState& s, const Model& m, int k, int n_batch);

// y (n, n_embd) = the MoE block of layer L applied to x (n, n_embd), the normed input.
void moe_ffn(SessionState& s, ThreadPool& pool, const ModelConfig& c, const LayerWeights& L, const float* x, int n, float* y);

}  // namespace kiln
