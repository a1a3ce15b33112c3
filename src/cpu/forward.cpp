// The transformer forward pass (llama, qwen2, qwen3, gemma3; the MoE feed-forward block is moe.cpp),
// over a chunk of n tokens: it reads like the model, one named step per line.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ref/quants.h"
#include "cpu/moe.h"
#include "cpu/session_impl.h"

namespace kiln {

namespace {

// Rotates the first rope_dim dims of each of n_heads heads of n tokens. x: (n, n_heads, head_dim).
void apply_rope(const ModelConfig& c, const float* cs, float* x, int n, int n_heads) {
    const int half = c.rope_dim / 2, D = c.head_dim;
    for (int i = 0; i < n; ++i) {
        const float* t = cs + size_t(i) * half * 2;
        for (int h = 0; h < n_heads; ++h) {
            float* v = x + (size_t(i) * n_heads + h) * D;
            for (int p = 0; p < half; ++p) {
                // NEOX pairs (p, p + d/2); GGUF llama pairs (2p, 2p + 1).
                float& a = c.rope_neox ? v[p] : v[2 * p];
                float& b = c.rope_neox ? v[p + half] : v[2 * p + 1];
                const float x0 = a, x1 = b, co = t[2 * p], si = t[2 * p + 1];
                a = x0 * co - x1 * si;
                b = x0 * si + x1 * co;
            }
        }
    }
}

const float* f32(const TensorView& t) { return static_cast<const float*>(t.data); }

// Debug taps (KILN_DEBUG_TAPS=1): the sum of each named intermediate, named like
// llama.cpp's graph callbacks ("attn_norm-3") so the two can be diffed layer by layer.
const bool kDebugTaps = std::getenv("KILN_DEBUG_TAPS") != nullptr;
void tap(const char* name, int il, const float* x, size_t n) {
    if (!kDebugTaps) return;
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += x[i];
    if (il >= 0) std::fprintf(stderr, "tap %s-%d sum = %.6f [%.4f %.4f %.4f]\n", name, il, sum, x[0], x[1], x[2]);
    else std::fprintf(stderr, "tap %s sum = %.6f [%.4f %.4f %.4f]\n", name, sum, x[0], x[1], x[2]);
}

}  // namespace

// cos/sin of every (token, rotary pair), computed the way ggml does (theta multiplied by
// base^(-2/d) pair after pair in float) so positions match llama.cpp bit for bit.
void rope_table(const ModelConfig& c, const std::vector<float>& freqs, float base, float freq_scale, const int32_t* pos, int n, float* cs /* (n, rope_dim/2, 2) */) {
    const int half = c.rope_dim / 2;
    const float theta_scale = std::pow(base, -2.0f / float(c.rope_dim));
    for (int i = 0; i < n; ++i) {
        float theta = float(pos[i]);
        for (int p = 0; p < half; ++p) {
            const float t = freq_scale * (theta / freqs[size_t(p)]);
            cs[(size_t(i) * half + p) * 2 + 0] = std::cos(t);
            cs[(size_t(i) * half + p) * 2 + 1] = std::sin(t);
            theta *= theta_scale;
        }
    }
}

void rope_table(const ModelConfig& c, const std::vector<float>& freqs, float base, float freq_scale, int pos0, int n, float* cs) {
    std::vector<int32_t> pos(static_cast<size_t>(n));  // (n) pos0, pos0 + 1, ...
    for (int i = 0; i < n; ++i) pos[size_t(i)] = pos0 + i;
    rope_table(c, freqs, base, freq_scale, pos.data(), n, cs);
}

const float* SessionState::fill_rope(const ModelConfig& c, const int32_t* pos, int n) {
    float* local = rope_cs() + size_t(n) * (c.rope_dim / 2) * 2;
    rope_table(c, rope_freqs, c.rope_theta, c.rope_freq_scale, pos, n, rope_cs());
    if (c.rope_theta_local <= 0) return nullptr;
    rope_table(c, rope_freqs, c.rope_theta_local, 1.0f, pos, n, local);
    return local;
}

void SessionState::order_rows(const Batch& batch, int i0, int n) {
    groups.clear();
    std::vector<int> group_of(static_cast<size_t>(n));  // (n) each token's group
    for (int i = 0; i < n; ++i) {
        const int seq = batch.seq[size_t(i0 + i)];
        size_t gi = 0;
        while (gi < groups.size() && groups[gi].seq != seq) ++gi;
        if (gi == groups.size()) groups.push_back({seq, batch.pos[size_t(i0 + i)], 0, nullptr});
        group_of[size_t(i)] = int(gi);
        ++groups[gi].n;
    }
    // Short groups first (stable: batch order otherwise), each group's rows in batch
    // order, which is its positions' order (check_batch).
    std::vector<int> order(groups.size());  // (groups) group indices in row order
    for (size_t gi = 0; gi < groups.size(); ++gi) order[gi] = int(gi);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return (groups[size_t(a)].n <= kStreamingTokens) > (groups[size_t(b)].n <= kStreamingTokens);
    });
    std::vector<int> first(groups.size());  // (groups) first row of each
    streamed = 0;
    for (int r = 0; int gi : order) {
        first[size_t(gi)] = r, r += groups[size_t(gi)].n;
        if (groups[size_t(gi)].n <= kStreamingTokens) streamed = r;
    }
    row_token.resize(size_t(n)), row_seq.resize(size_t(n)), row_pos.resize(size_t(n)), row_index.resize(size_t(n)), group_rows.resize(size_t(n));
    std::vector<int> fill = first;  // (groups) next free row of each
    for (int i = 0; i < n; ++i) {
        const int r = fill[size_t(group_of[size_t(i)])]++;
        row_token[size_t(r)] = batch.token[size_t(i0 + i)], row_seq[size_t(r)] = batch.seq[size_t(i0 + i)], row_pos[size_t(r)] = batch.pos[size_t(i0 + i)];
        row_index[size_t(r)] = i0 + i;
        group_rows[size_t(r)] = r;
    }
    for (size_t gi = 0; gi < groups.size(); ++gi) groups[gi].rows = group_rows.data() + first[gi];
}

Status Session::forward_chunk(const Batch& batch, int i0, int n) {
    SessionState& s = *impl_;
    ThreadPool& pool = *pool_;
    const cpu::KernelTable& kt = *s.kt;
    const ModelConfig& c = model_->config();
    const Weights& w = model_->weights();
    const int E = c.n_embd, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim, Dv = c.head_dim_v, F = c.n_ff;
    float *x = s.x(), *xn = s.xn(), *q = s.q(), *k = s.k(), *v = s.v(), *attn = s.attn(), *proj = s.proj();

    auto per_token = [&](auto&& fn) { for_each_token(pool, n, fn); };  // row ops over this chunk

    if (s.device) {  // the whole chunk on the Vulkan device (src/vulkan/forward.cpp): one sequence, logits of its last rows (check_batch)
        const float* rope_local = s.fill_rope(c, batch.pos.data() + i0, n);
        int rows = 0;
        for (int i = 0; i < n; ++i)
            if (batch.logits[size_t(i0 + i)]) logits_row_[size_t(i0 + i)] = n_logits_ + rows++;
        logits_.resize(size_t(n_logits_ + rows) * size_t(c.n_vocab));
        KILN_TRY(s.device->forward(batch.token.data() + i0, n, batch.pos[size_t(i0)], s.rope_cs(), rope_local, rows,
                                   logits_.data() + size_t(n_logits_) * size_t(c.n_vocab)));
        n_logits_ += rows;
        return Status::ok();
    }
    s.order_rows(batch, i0, n);
    const int32_t *tokens = s.row_token.data(), *seq = s.row_seq.data(), *pos = s.row_pos.data();  // (n) each, in row order
    const int ns = s.streamed;  // rows [0, ns) through the row kernels

    // Rotary tables for this chunk's positions: [0] global base, [1] Gemma's local base.
    const size_t rope_stride = size_t(n) * (c.rope_dim / 2) * 2;
    s.fill_rope(c, pos, n);

    // Token embeddings (n, E), scaled by sqrt(E) for Gemma.
    per_token([&](int i) {
        ref::dequantize_row(w.token_embd.dtype, w.token_embd.row(tokens[i]), x + size_t(i) * E, E);
        if (c.embd_scale != 1.0f) kt.scale(x + size_t(i) * E, c.embd_scale, E);
    });

    tap("embd", -1, x, size_t(n) * E);

    const float kq_scale = c.attn_scale > 0 ? 1.0f : 1.0f / std::sqrt(float(D));
    for (int il = 0; il < c.n_layer; ++il) {
        if (s.skip[size_t(il)]) continue;  // self-speculative draft: the residual stream passes through
        const LayerWeights& L = w.layers[size_t(il)];
        const bool swa = c.layer_is_swa[size_t(il)];

        // ---- attention block ----
        per_token([&](int i) { kt.rms_norm(x + size_t(i) * E, f32(L.attn_norm), xn + size_t(i) * E, E, c.rms_eps); });
        linear_group(s, pool, {&L.wq, &L.wk, &L.wv}, xn, n, {q, k, v}, {&L.wo}, ns);  // (n, H, D), (n, Hkv, D), (n, Hkv, Dv)
        tap("attn_norm", il, xn, size_t(n) * E);
        tap("Vcur", il, v, size_t(n) * Hkv * Dv);
        per_token([&](int i) {
            if (c.qkv_bias) {
                kt.add(q + size_t(i) * H * D, f32(L.bq), int64_t(H) * D);
                kt.add(k + size_t(i) * Hkv * D, f32(L.bk), int64_t(Hkv) * D);
                kt.add(v + size_t(i) * Hkv * Dv, f32(L.bv), int64_t(Hkv) * Dv);
            }
            if (c.qk_norm) {
                for (int h = 0; h < H; ++h) kt.rms_norm(q + (size_t(i) * H + h) * D, f32(L.q_norm), q + (size_t(i) * H + h) * D, D, c.rms_eps);
                for (int h = 0; h < Hkv; ++h) kt.rms_norm(k + (size_t(i) * Hkv + h) * D, f32(L.k_norm), k + (size_t(i) * Hkv + h) * D, D, c.rms_eps);
            }
        });
        const float* cs = s.rope_cs() + (swa && c.rope_theta_local > 0 ? rope_stride : 0);
        apply_rope(c, cs, q, n, H);
        apply_rope(c, cs, k, n, Hkv);
        tap("Qcur", il, q, size_t(n) * H * D);
        tap("Kcur", il, k, size_t(n) * Hkv * D);
        if (c.attn_scale > 0) kt.scale(q, c.attn_scale, int64_t(n) * H * D);
        // Store this chunk's keys and values at their positions.
        per_token([&](int i) {
            for (int h = 0; h < Hkv; ++h) s.kv.store(il, h, seq[i], pos[i], k + (size_t(i) * Hkv + h) * D, v + (size_t(i) * Hkv + h) * Dv);
        });
        attention(kt, pool, s.kv, s.attn_scratch, c, il, s.groups, q, attn, kq_scale, swa ? c.sliding_window : 0);  // (n, H, Dv)
        tap("kqv_out", il, attn, size_t(n) * H * Dv);
        linear(s, pool, L.wo, attn, n, proj, {&L.ffn_gate, &L.ffn_up}, ns);  // (n, E); MoE layers have no ffn_gate/up: nothing read ahead
        tap("attn_out", il, proj, size_t(n) * E);
        per_token([&](int i) {
            if (!L.post_attn_norm.empty()) kt.rms_norm(proj + size_t(i) * E, f32(L.post_attn_norm), proj + size_t(i) * E, E, c.rms_eps);
            kt.add(x + size_t(i) * E, proj + size_t(i) * E, E);
            kt.rms_norm(x + size_t(i) * E, f32(L.ffn_norm), xn + size_t(i) * E, E, c.rms_eps);
        });

        // ---- feed-forward block ----
        tap("ffn_inp", il, x, size_t(n) * E);
        tap("ffn_norm", il, xn, size_t(n) * E);
        if (c.is_moe()) {
            moe_ffn(s, pool, c, L, xn, n, proj);  // (n, E)
        } else {
            linear_group(s, pool, {&L.ffn_gate, &L.ffn_up}, xn, n, {s.gate(), s.up()}, {&L.ffn_down}, ns);  // (n, F) each
            tap("ffn_gate", il, s.gate(), size_t(n) * F);
            tap("ffn_up", il, s.up(), size_t(n) * F);
            per_token([&](int i) {
                float* g = s.gate() + size_t(i) * F;
                if (c.arch == Arch::Gemma3) kt.gelu_mul(g, s.up() + size_t(i) * F, F);
                else kt.silu_mul(g, s.up() + size_t(i) * F, F);
            });
            tap("ffn_swiglu", il, s.gate(), size_t(n) * F);
            if (il + 1 < c.n_layer && !s.skip[size_t(il + 1)]) {
                const LayerWeights& next = w.layers[size_t(il + 1)];
                linear(s, pool, L.ffn_down, s.gate(), n, proj, {&next.wq, &next.wk, &next.wv}, ns);  // (n, E)
            } else {
                linear(s, pool, L.ffn_down, s.gate(), n, proj, {}, ns);
            }
        }
        tap("ffn_out", il, proj, size_t(n) * E);
        per_token([&](int i) {
            if (!L.post_ffn_norm.empty()) kt.rms_norm(proj + size_t(i) * E, f32(L.post_ffn_norm), proj + size_t(i) * E, E, c.rms_eps);
            kt.add(x + size_t(i) * E, proj + size_t(i) * E, E);
        });
        tap("l_out", il, x, size_t(n) * E);
    }

    // ---- output: final norm and the vocabulary projection, for the rows asked for ----
    // Rows of sequences with up to kStreamingTokens of them first (the row kernels), as above.
    std::vector<int> out_rows;  // (rows) chunk rows whose logits are wanted
    int head_streamed = 0;
    for (int pass = 0; pass < 2; ++pass) {
        for (const AttnGroup& g : s.groups) {
            int wanted = 0;
            for (int j = 0; j < g.n; ++j) wanted += batch.logits[size_t(s.row_index[size_t(g.rows[j])])];
            if ((wanted <= kStreamingTokens) != (pass == 0)) continue;
            for (int j = 0; j < g.n; ++j)
                if (batch.logits[size_t(s.row_index[size_t(g.rows[j])])]) out_rows.push_back(g.rows[j]);
        }
        if (pass == 0) head_streamed = int(out_rows.size());
    }
    const int rows = int(out_rows.size());
    if (rows == 0) return Status::ok();
    for (int r = 0; r < rows; ++r) {
        kt.rms_norm(x + size_t(out_rows[size_t(r)]) * E, f32(w.output_norm), xn + size_t(r) * E, E, c.rms_eps);
        logits_row_[size_t(s.row_index[size_t(out_rows[size_t(r)])])] = n_logits_ + r;
    }
    logits_.resize(size_t(n_logits_ + rows) * size_t(c.n_vocab));
    float* out = logits_.data() + size_t(n_logits_) * size_t(c.n_vocab);  // (rows, n_vocab)
    if (s.head_tokens.empty()) {
        linear(s, pool, w.output, xn, rows, out, {}, head_streamed);
    } else {  // a trimmed head: its tokens' logits, -inf for the rest
        const size_t T = s.head_tokens.size(), stride = size_t(s.head.rows());
        linear(s, pool, s.head, xn, rows, s.head_logits(), {}, head_streamed);  // (rows, stride)
        std::fill(out, out + size_t(rows) * size_t(c.n_vocab), -INFINITY);
        for (int r = 0; r < rows; ++r)
            for (size_t j = 0; j < T; ++j) out[size_t(r) * size_t(c.n_vocab) + size_t(s.head_tokens[j])] = s.head_logits.data[size_t(r) * stride + j];
    }
    n_logits_ += rows;
    return Status::ok();
}

}  // namespace kiln
