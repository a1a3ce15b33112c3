// The CPU backend's forward pass: the ops of src/model/layer_ops.h over SessionState's
// buffers (the recipe is src/model/transformer.cpp; the MoE block is moe.cpp), and the
// chunk's setup: its rows ordered by sequence, RoPE tables, the logits rows asked for.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>

#include "ref/quants.h"
#include "cpu/moe.h"
#include "model/layer_ops.h"
#include "switches.h"
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
const bool kDebugTaps = switches().debug_taps;
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
        if (gi == groups.size()) groups.push_back({seq, batch.pos[size_t(i0 + i)], 0, 0});
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
    streamed = 0;
    for (int r = 0; int gi : order) {
        groups[size_t(gi)].row0 = r, r += groups[size_t(gi)].n;
        if (groups[size_t(gi)].n <= kStreamingTokens) streamed = r;
    }
    row_token.resize(size_t(n)), row_seq.resize(size_t(n)), row_pos.resize(size_t(n)), row_index.resize(size_t(n));
    std::vector<int> fill(groups.size());  // (groups) rows of each placed so far
    for (int i = 0; i < n; ++i) {
        const size_t gi = size_t(group_of[size_t(i)]);
        const size_t r = size_t(groups[gi].row0 + fill[gi]++);
        row_token[r] = batch.token[size_t(i0 + i)], row_seq[r] = batch.seq[size_t(i0 + i)], row_pos[r] = batch.pos[size_t(i0 + i)];
        row_index[r] = i0 + i;
    }
}

namespace {

// LayerOps on the CPU: executes each op over the chunk's n rows (row order: order_rows).
class CpuForward final : public LayerOps {
public:
    CpuForward(SessionState& s, ThreadPool& pool, const Model& m, int n, std::function<Status()> head)
        : s_(s), pool_(pool), kt_(*s.kt), c_(m.config()), w_(m.weights()), n_(n), ns_(s.streamed), head_(std::move(head)) {}

    Status embed() override {
        const TensorView& e = w_.token_embd;
        const int E = c_.n_embd;
        per_token([&](int i) {
            ref::dequantize_row(e.dtype, e.row(s_.row_token[size_t(i)]), s_.x() + size_t(i) * E, E);
            if (c_.embd_scale != 1.0f) kt_.scale(s_.x() + size_t(i) * E, c_.embd_scale, E);
        });
        return Status::ok();
    }
    Status norm(Act in, const TensorView& w, Act out) override {
        const int E = c_.n_embd;
        per_token([&](int i) { kt_.rms_norm(buf(in) + size_t(i) * E, f32(w), buf(out) + size_t(i) * E, E, c_.rms_eps); });
        return Status::ok();
    }
    Status linear(std::initializer_list<const TensorView*> ws, Act in, std::initializer_list<Act> outs,
                  std::initializer_list<const TensorView*> next) override {
        const TensorView* const* w = std::data(ws);
        const Act* o = std::data(outs);
        if (ws.size() == 1) kiln::linear(s_, pool_, *w[0], buf(in), n_, buf(o[0]), next, ns_);
        else if (ws.size() == 2) linear_group(s_, pool_, {w[0], w[1]}, buf(in), n_, {buf(o[0]), buf(o[1])}, next, ns_);
        else if (ws.size() == 3) linear_group(s_, pool_, {w[0], w[1], w[2]}, buf(in), n_, {buf(o[0]), buf(o[1]), buf(o[2])}, next, ns_);
        else linear_group(s_, pool_, {w[0], w[1], w[2], w[3]}, buf(in), n_, {buf(o[0]), buf(o[1]), buf(o[2]), buf(o[3])}, next, ns_);
        return Status::ok();
    }
    Status qkv_bias(const LayerWeights& L) override {
        const int H = c_.n_head, Hkv = c_.n_head_kv, D = c_.head_dim, Dv = c_.head_dim_v;
        per_token([&](int i) {
            kt_.add(s_.q() + size_t(i) * H * D, f32(L.bq), int64_t(H) * D);
            kt_.add(s_.k() + size_t(i) * Hkv * D, f32(L.bk), int64_t(Hkv) * D);
            kt_.add(s_.v() + size_t(i) * Hkv * Dv, f32(L.bv), int64_t(Hkv) * Dv);
        });
        return Status::ok();
    }
    Status qk_norm(const LayerWeights& L) override {
        const int H = c_.n_head, Hkv = c_.n_head_kv, D = c_.head_dim;
        per_token([&](int i) {
            for (int h = 0; h < H; ++h) kt_.rms_norm(s_.q() + (size_t(i) * H + h) * D, f32(L.q_norm), s_.q() + (size_t(i) * H + h) * D, D, c_.rms_eps);
            for (int h = 0; h < Hkv; ++h) kt_.rms_norm(s_.k() + (size_t(i) * Hkv + h) * D, f32(L.k_norm), s_.k() + (size_t(i) * Hkv + h) * D, D, c_.rms_eps);
        });
        return Status::ok();
    }
    Status rope(bool local_base) override {
        const float* cs = s_.rope_cs() + (local_base ? size_t(n_) * (c_.rope_dim / 2) * 2 : 0);  // fill_rope: the global table, then the local one
        apply_rope(c_, cs, s_.q(), n_, c_.n_head);
        apply_rope(c_, cs, s_.k(), n_, c_.n_head_kv);
        return Status::ok();
    }
    Status kv_store(int il) override {
        const int Hkv = c_.n_head_kv, D = c_.head_dim, Dv = c_.head_dim_v;
        per_token([&](int i) {
            for (int h = 0; h < Hkv; ++h)
                s_.kv.store(il, h, s_.row_seq[size_t(i)], s_.row_pos[size_t(i)], s_.k() + (size_t(i) * Hkv + h) * D, s_.v() + (size_t(i) * Hkv + h) * Dv);
        });
        return Status::ok();
    }
    Status attention(int il, int window) override {
        // Gemma scales the queries by attn_scale (and not q.k by 1/sqrt(head_dim)).
        if (c_.attn_scale > 0) kt_.scale(s_.q(), c_.attn_scale, int64_t(n_) * c_.n_head * c_.head_dim);
        const float kq_scale = c_.attn_scale > 0 ? 1.0f : 1.0f / std::sqrt(float(c_.head_dim));
        kiln::attention(kt_, pool_, s_.kv, s_.attn_scratch, c_, il, s_.groups, s_.q(), s_.attn(), kq_scale, window);
        return Status::ok();
    }
    Status split_q_gate() override {
        const int H = c_.n_head, D = c_.head_dim;
        per_token([&](int i) {
            for (int h = 0; h < H; ++h) std::memcpy(s_.q() + (size_t(i) * H + h) * D, s_.qg() + (size_t(i) * H + h) * 2 * D, sizeof(float) * size_t(D));
        });
        return Status::ok();
    }
    Status attn_gate() override {
        const int H = c_.n_head, D = c_.head_dim_v;
        per_token([&](int i) {
            for (int h = 0; h < H; ++h) {
                float* o = s_.attn() + (size_t(i) * H + h) * D;
                const float* g = s_.qg() + (size_t(i) * H + h) * 2 * size_t(c_.head_dim) + c_.head_dim;
                for (int d = 0; d < D; ++d) o[d] *= 1.0f / (1.0f + std::exp(-g[d]));
            }
        });
        return Status::ok();
    }
    Status delta_net(int il, const LayerWeights& L) override {
        kiln::delta_net(s_, pool_, c_, L, il, n_);
        return Status::ok();
    }
    Status glu(bool gelu) override {
        const int F = c_.n_ff;
        per_token([&](int i) {
            float* g = s_.gate() + size_t(i) * F;
            if (gelu) kt_.gelu_mul(g, s_.up() + size_t(i) * F, F);
            else kt_.silu_mul(g, s_.up() + size_t(i) * F, F);
        });
        return Status::ok();
    }
    Status moe(const LayerWeights& L) override {
        moe_ffn(s_, pool_, c_, L, s_.xn(), n_, s_.proj());
        return Status::ok();
    }
    Status residual(const TensorView& post_norm) override {
        const int E = c_.n_embd;
        per_token([&](int i) {
            float* p = s_.proj() + size_t(i) * E;
            if (!post_norm.empty()) kt_.rms_norm(p, f32(post_norm), p, E, c_.rms_eps);
            kt_.add(s_.x() + size_t(i) * E, p, E);
        });
        return Status::ok();
    }
    Status logits() override { return head_(); }
    void tap(const char* name, int il, Act a) override {
        if (!kDebugTaps) return;
        kiln::tap(name, il, buf(a), size_t(n_) * width(a));
    }

private:
    SessionState& s_;
    ThreadPool& pool_;
    const cpu::KernelTable& kt_;
    const ModelConfig& c_;
    const Weights& w_;
    const int n_, ns_;  // the chunk's rows; rows [0, ns_) through the row kernels (linear())
    std::function<Status()> head_;

    template <class Fn>
    void per_token(Fn&& fn) { for_each_token(pool_, n_, fn); }  // a row op over the chunk
    float* buf(Act a) {
        switch (a) {
            case Act::X: return s_.x();
            case Act::Xn: return s_.xn();
            case Act::Q: return s_.q();
            case Act::K: return s_.k();
            case Act::V: return s_.v();
            case Act::Attn: return s_.attn();
            case Act::Proj: return s_.proj();
            case Act::Gate: return s_.gate();
            case Act::Up: return s_.up();
            case Act::QG: return s_.qg();
            case Act::Mix: return s_.mix();
            case Act::Z: return s_.z();
            case Act::Alpha: return s_.alpha();
            case Act::Beta: return s_.beta();
        }
        return nullptr;
    }
    size_t width(Act a) const {  // floats per row
        switch (a) {
            case Act::X: case Act::Xn: case Act::Proj: return size_t(c_.n_embd);
            case Act::Q: return size_t(c_.n_head) * c_.head_dim;
            case Act::K: return size_t(c_.n_head_kv) * c_.head_dim;
            case Act::V: return size_t(c_.n_head_kv) * c_.head_dim_v;
            case Act::Attn: return std::max(size_t(c_.n_head) * c_.head_dim_v, size_t(c_.ssm_v_dim()));
            case Act::Gate: case Act::Up: return size_t(c_.n_ff);
            case Act::QG: return size_t(c_.n_head) * 2 * c_.head_dim;
            case Act::Mix: return size_t(c_.ssm_conv_channels());
            case Act::Z: return size_t(c_.ssm_v_dim());
            case Act::Alpha: case Act::Beta: return size_t(c_.ssm_v_heads);
        }
        return 0;
    }
};

// The CPU backend: the chunk's rows ordered by sequence, the recipe over CpuForward, the logits rows asked for.
class CpuRunner final : public ChunkRunner {
public:
    CpuRunner(SessionState& s, ThreadPool& pool, const Model& m) : s_(s), pool_(pool), m_(m) {}
    size_t kv_bytes_per_position() const override { return s_.kv.bytes_per_position(); }

    Status forward(const Batch& batch, int i0, int n, LogitsOut& out) override {
        const ModelConfig& c = m_.config();
        s_.order_rows(batch, i0, n);
        s_.fill_rope(c, s_.row_pos.data(), n);  // rope_cs: the global base's table, then Gemma's local base's
        s_.rec_plans.clear();
        if (!s_.rec.empty())  // which state each sequence reads and which slots it writes
            for (const AttnGroup& g : s_.groups) s_.rec_plans.push_back(s_.rec.plan(g.seq, g.pos0, g.n));
        CpuForward ops(s_, pool_, m_, n, [&] { return head(batch, out); });
        KILN_TRY(run_transformer(m_, s_.skip, ops));
        for (const RecurrentStates::Plan& p : s_.rec_plans) s_.rec.commit(p);
        return Status::ok();
    }

private:
    SessionState& s_;
    ThreadPool& pool_;
    const Model& m_;

    // The final norm and the vocabulary projection, for the rows asked for: rows of
    // sequences with up to kStreamingTokens of them first (the row kernels), as in linear().
    Status head(const Batch& batch, LogitsOut& out) {
        SessionState& s = s_;
        const ModelConfig& c = m_.config();
        const Weights& w = m_.weights();
        const int E = c.n_embd;
        const cpu::KernelTable& kt = *s.kt;
        float *x = s.x(), *xn = s.xn();
        std::vector<int> out_rows;  // (rows) chunk rows whose logits are wanted
        int head_streamed = 0;
        for (int pass = 0; pass < 2; ++pass) {
            for (const AttnGroup& g : s.groups) {
                int wanted = 0;
                for (int r = g.row0; r < g.row0 + g.n; ++r) wanted += batch.logits[size_t(s.row_index[size_t(r)])];
                if ((wanted <= kStreamingTokens) != (pass == 0)) continue;
                for (int r = g.row0; r < g.row0 + g.n; ++r)
                    if (batch.logits[size_t(s.row_index[size_t(r)])]) out_rows.push_back(r);
            }
            if (pass == 0) head_streamed = int(out_rows.size());
        }
        const int rows = int(out_rows.size());
        if (rows == 0) return Status::ok();
        const int first = out.append(rows);
        for (int r = 0; r < rows; ++r) {
            kt.rms_norm(x + size_t(out_rows[size_t(r)]) * E, f32(w.output_norm), xn + size_t(r) * E, E, c.rms_eps);
            out.row_of[size_t(s.row_index[size_t(out_rows[size_t(r)])])] = first + r;
        }
        float* dst = out.row(first);  // (rows, n_vocab)
        if (s.head_tokens.empty()) {
            linear(s, pool_, w.output, xn, rows, dst, {}, head_streamed);
        } else {  // a trimmed head: its tokens' logits, -inf for the rest
            const size_t T = s.head_tokens.size(), stride = size_t(s.head.rows());
            linear(s, pool_, s.head, xn, rows, s.head_logits(), {}, head_streamed);  // (rows, stride)
            std::fill(dst, dst + size_t(rows) * size_t(c.n_vocab), -INFINITY);
            for (int r = 0; r < rows; ++r)
                for (size_t j = 0; j < T; ++j) dst[size_t(r) * size_t(c.n_vocab) + size_t(s.head_tokens[j])] = s.head_logits.data[size_t(r) * stride + j];
        }
        return Status::ok();
    }
};

}  // namespace

std::unique_ptr<ChunkRunner> make_cpu_runner(SessionState& s, ThreadPool& pool, const Model& model) {
    return std::make_unique<CpuRunner>(s, pool, model);
}

}  // namespace kiln
