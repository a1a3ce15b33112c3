// The operations a transformer's layer recipe is written in (src/model/transformer.cpp),
// implemented once per backend: the CPU backend executes each (src/cpu/forward.cpp), the
// Vulkan backend records each into a command buffer with a barrier after it
// (src/vulkan/forward.cpp). Every op acts on the current chunk's n tokens and on the
// backend's activation buffers, named by Act. A new layer type is one recipe change plus
// one op per backend.
#pragma once

#include <initializer_list>
#include <vector>

#include "kiln/format/weights.h"
#include "kiln/model.h"
#include "kiln/status.h"

namespace kiln {

// The activation buffers, each (n, width) for the chunk's n tokens.
enum class Act {
    X,     // (n, n_embd) the residual stream
    Xn,    // (n, n_embd) the normed input of a block
    Q,     // (n, n_head, head_dim)
    K,     // (n, n_head_kv, head_dim)
    V,     // (n, n_head_kv, head_dim_v)
    Attn,  // (n, n_head, head_dim_v) attention output
    Proj,  // (n, n_embd) output of wo / ffn_down / the experts
    Gate,  // (n, n_ff)
    Up,    // (n, n_ff)
    QG,    // (n, n_head, 2 * head_dim) each head's query, then its output gate (Qwen3.5)
    // Gated DeltaNet inputs (the recurrent layers of Qwen3.5).
    Mix,    // (n, conv channels) queries, keys and values before the conv
    Z,      // (n, v_heads * state) output gate
    Alpha,  // (n, v_heads) decay input
    Beta,   // (n, v_heads) write strength input (Qwen3-Next: (n, 2 v_heads), its betas and alphas grouped by key head)
};

class LayerOps {
public:
    virtual ~LayerOps() = default;
    // X = the tokens' embedding rows (times embd_scale).
    virtual Status embed() = 0;
    // out = rms_norm(in) * w, rows of n_embd.
    virtual Status norm(Act in, const TensorView& w, Act out) = 0;
    // outs[i] = in . ws[i]^T for up to 4 matrices reading the same input (one job). next:
    // the matrices the recipe multiplies by after these (a backend may start reading them).
    virtual Status linear(std::initializer_list<const TensorView*> ws, Act in, std::initializer_list<Act> outs,
                          std::initializer_list<const TensorView*> next) = 0;
    virtual Status qkv_bias(const LayerWeights& L) = 0;  // Q, K, V += bq, bk, bv
    virtual Status qk_norm(const LayerWeights& L) = 0;   // per-head rms_norm of Q and K
    virtual Status rope(bool local_base) = 0;            // Q and K rotated at their positions (the local base's table: Gemma 3's sliding layers)
    virtual Status kv_store(int il) = 0;                 // K and V into layer il's cache at their positions
    // Attn = softmax(Q K^T * scale) V over each token's own sequence in layer il's cache
    // (scale: attn_scale, else 1/sqrt(head_dim)); window > 0: the last `window` positions.
    virtual Status attention(int il, int window) = 0;
    // Hybrid models' ops; a backend without them refuses such models at session creation.
    virtual Status split_q_gate() { return unsupported("gated attention"); }  // Q = the query halves of QG
    virtual Status attn_gate() { return unsupported("gated attention"); }     // Attn *= sigmoid(the gate halves of QG)
    // Z (n, v_heads * state) = the gated DeltaNet of layer il over Mix, Z, Alpha, Beta:
    // causal conv1d + silu, L2-normed q and k, the delta rule from each sequence's state
    // (into Attn), the gated RMSNorm silu(Z) * norm(Attn); the states move on (recurrent_state.h).
    virtual Status delta_net(int /*il*/, const LayerWeights&) { return unsupported("gated DeltaNet"); }
    virtual Status glu(bool gelu) = 0;                   // Gate = silu(Gate) * Up (gelu for Gemma)
    virtual Status moe(const LayerWeights& L) = 0;       // Proj = the mixture of experts of Xn
    virtual Status residual(const TensorView& post_norm) = 0;  // X += Proj, Proj first normed by post_norm when the model has one
    virtual Status logits() = 0;                         // the final norm and the vocabulary projection of the rows asked for
    // Debug taps, named like llama.cpp's graph callbacks ("attn_norm-3"): a backend may
    // print a sum of the buffer (the CPU's, with KILN_DEBUG_TAPS=1).
    virtual void tap(const char* /*name*/, int /*il*/, Act) {}

protected:
    static Status unsupported(const char* what) { return Status::error("%s is not implemented by this backend", what); }
};

// The forward pass of one chunk: embeddings, every layer not in `skip`, logits.
Status run_transformer(const Model& model, const std::vector<bool>& skip, LayerOps& ops);

}  // namespace kiln
