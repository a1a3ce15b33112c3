// The mixture-of-experts feed-forward block, as llama.cpp's build_moe_ffn computes it:
//   probs = softmax(router . x); top-k experts per token; weights = their probs
//   (renormalized to sum 1 for qwen3moe and Mixtral); y = sum_j w_j * down_j(silu(gate_j x) * up_j x)
//   (+ sigmoid(gate_inp_shexp . x) * shared expert(x) for qwen2moe).
//
// Execution, the same for decode (n = 1), verification and prefill:
//  1. route every token, then sort the (token, expert) assignments by expert, so each
//     expert's tokens are consecutive rows: one matmul per expert over all its tokens
//     (a GEMM in prefill, a row kernel in decode that reads only the chosen slices);
//  2. quantize each token's input once and copy it to its k rows;
//  3. one parallel job over (expert, 256-row unit) pairs computes gate and up rows, applies
//     silu(gate) * up and quantizes the result for down, all while it is in L1;
//  4. one parallel job over slabs of output rows runs down for every active expert and
//     adds the weighted rows into y: a slab belongs to one thread, so no atomics.
// Three thread meetings per layer beside the router's, whatever n and k are.
#include "cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "cpu/r16.h"
#include "switches.h"
#include "kiln/format/gguf.h"

namespace kiln {

namespace {

// Elements per quantization block of an activation format: quantizing any whole number
// of blocks of a row separately gives the same bytes as quantizing the row at once.
int act_block(cpu::ActFormat f) { return f == cpu::ActFormat::Q8K ? QK_K : f == cpu::ActFormat::Q8x32 ? 32 : 1; }

// x (k floats, k a whole number of blocks) -> activation bytes at y.
void quantize_act(const cpu::KernelTable& kt, cpu::ActFormat f, const float* x, uint8_t* y, int64_t k) {
    if (f == cpu::ActFormat::Q8K) kt.quantize_q8K(x, reinterpret_cast<block_q8_K*>(y), k);
    else if (f == cpu::ActFormat::Q8x32) kt.quantize_q8x32(x, reinterpret_cast<cpu::block_q8_x32*>(y), k);
    else std::memcpy(y, x, sizeof(float) * size_t(k));
}

// y[c * y_stride + r] = W_e row r . a row c, r in [r0, r1): expert e's slice of a 3-D tensor,
// from its row-interleaved copy when there is one and an r16 kernel for its type. variant:
// the decode variant of a one-token forward (KernelTable::decode_rows), else 0.
void expert_matmul(const cpu::KernelTable& kt, const TensorView& w3, int e, int64_t r0, int64_t r1, const cpu::ActRows& a, float* y,
                   size_t y_stride, int variant) {
    const TensorView w = w3.slice(e);
    if (const cpu::MatmulFn r16 = w.packed ? kt.decode_r16(w.dtype, variant) : nullptr) r16(w.cols(), w.packed, w.packed_group_bytes, r0, r1, a, y, y_stride);
    else kt.decode_rows(w.dtype, variant)(w.cols(), w.data, w.row_size(), r0, r1, a, y, y_stride);
}

// Router: probabilities, the k best experts (ties to the lower index) and their weights.
void route(const cpu::KernelTable& kt, const ModelConfig& c, MoeScratch& m, int n) {
    const int X = c.n_expert, K = m.k;
    for (int i = 0; i < n; ++i) {
        float* p = m.logits() + size_t(i) * X;  // (n_expert)
        kt.softmax(p, X);
        int32_t* sel = m.sel.data() + size_t(i) * K;
        float* w = m.wsel.data() + size_t(i) * K;
        float sum = 0;
        for (int j = 0; j < K; ++j) {
            int best = -1;
            for (int e = 0; e < X; ++e) {
                if (std::find(sel, sel + j, e) != sel + j) continue;
                if (best < 0 || p[e] > p[best]) best = e;
            }
            sel[j] = best;
            w[j] = p[best];
            sum += w[j];
        }
        if (c.expert_weights_norm) {
            sum = std::max(sum, 6.103515625e-5f);  // llama.cpp's clamp (smallest normal fp16)
            for (int j = 0; j < K; ++j) w[j] /= sum;
        }
    }
}

// The reference: every expert runs on every token with the dense linear(), then the
// outputs are masked by the routing weights (0 for experts a token did not choose).
void dense_reference(SessionState& s, ThreadPool& pool, const ModelConfig& c, const LayerWeights& L, const float* x, int n, float* y) {
    ActivationObserver* const observer = std::exchange(s.observer, nullptr);  // its slices are not the weights the observer knows
    MoeScratch& m = *s.moe;
    const int E = c.n_embd, F = c.n_ff_exp, K = m.k;
    std::memset(y, 0, sizeof(float) * size_t(n) * E);
    for (int e = 0; e < c.n_expert; ++e) {
        const TensorView g = L.ffn_gate_exps.slice(e), u = L.ffn_up_exps.slice(e), d = L.ffn_down_exps.slice(e);
        linear_group(s, pool, {&g, &u}, x, n, {m.gate(), m.up()});  // (n, F) each
        for (int i = 0; i < n; ++i) s.kt->silu_mul(m.gate() + size_t(i) * F, m.up() + size_t(i) * F, F);
        linear(s, pool, d, m.gate(), n, m.out());  // (n, E)
        for (int i = 0; i < n; ++i) {
            float wt = 0;
            for (int j = 0; j < K; ++j)
                if (m.sel[size_t(i) * K + j] == e) wt = m.wsel[size_t(i) * K + j];
            s.kt->axpy_f32(y + size_t(i) * E, wt, m.out() + size_t(i) * E, E);
        }
    }
    s.observer = observer;
}

}  // namespace

Status moe_init(SessionState& s, const Model& model, int k, int n_batch) {
    const ModelConfig& c = model.config();
    const std::string& path = model.gguf().path();
    if (k < 0) return Status::error("experts per token %d must be >= 1", k);
    if (k == 0) k = c.n_expert_used;
    if (k > c.n_expert) return Status::error("%s: %d experts per token asked for, but the model has only %d (expert_count)", path.c_str(), k, c.n_expert);
    auto m = std::make_shared<MoeScratch>();
    m->k = k;
    m->dense_reference = switches().moe_dense_reference;
    const int E = c.n_embd, F = c.n_ff_exp, X = c.n_expert;
    size_t row_in = 0, row_h = 0;
    int unit = 16;
    for (size_t il = 0; il < model.weights().layers.size(); ++il) {
        const LayerWeights& L = model.weights().layers[il];
        for (const TensorView* t : {&L.ffn_gate_exps, &L.ffn_up_exps, &L.ffn_down_exps})
            if (!s.kt->matmul[int(t->dtype)]) return Status::error("%s: tensor '%s': no %s matmul kernel for %s weights", path.c_str(), t->name, cpu::isa_name(s.kt->isa), dtype_name(t->dtype));
        if (!L.ffn_gate_inp_shexp.empty() && L.ffn_gate_inp_shexp.dtype != DType::F32)
            return Status::error("%s: tensor '%s': type %s, expected f32", path.c_str(), L.ffn_gate_inp_shexp.name, dtype_name(L.ffn_gate_inp_shexp.dtype));
        const cpu::ActFormat fi = cpu::act_format(L.ffn_gate_exps.dtype), fh = cpu::act_format(L.ffn_down_exps.dtype);
        if (cpu::act_format(L.ffn_up_exps.dtype) != fi)
            return Status::error("%s: layer %zu: ffn_gate_exps (%s) and ffn_up_exps (%s) need different activation formats, which kiln does not support",
                                 path.c_str(), il, dtype_name(L.ffn_gate_exps.dtype), dtype_name(L.ffn_up_exps.dtype));
        const int u = std::max(16, act_block(fh));
        if (F % u) return Status::error("%s: layer %zu: expert width %d is not a multiple of %d", path.c_str(), il, F, u);
        unit = std::max(unit, u);
        row_in = std::max(row_in, cpu::act_row_bytes(fi, E));
        row_h = std::max(row_h, cpu::act_row_bytes(fh, F));
    }
    const size_t B = size_t(n_batch), A = B * size_t(k);  // tokens, (token, expert) assignments
    m->row_in = row_in;
    m->row_h = row_h;
    m->unit = unit;
    m->logits.resize(B * X);
    m->sel.resize(A);
    m->wsel.resize(A);
    m->slot.resize(A);
    m->count.resize(size_t(X));
    m->offset.resize(size_t(X));
    m->cursor.resize(size_t(X));
    m->active.reserve(size_t(X));
    m->xg.resize(A * row_in);
    m->gate.resize(std::max(A, B) * F);
    m->up.resize(std::max(A, B) * F);
    m->hq.resize(A * row_h);
    m->out.resize(std::max(A, B) * E);
    if (c.n_ff_shexp > 0) m->sh_out.resize(B * E);
    if (!m->logits.data || !m->xg.data || !m->gate.data || !m->up.data || !m->hq.data || !m->out.data)
        return Status::error("out of memory allocating the MoE scratch (%d tokens x %d experts)", n_batch, k);
    s.moe = std::move(m);
    return Status::ok();
}

void moe_ffn(SessionState& s, ThreadPool& pool, const ModelConfig& c, const LayerWeights& L, const float* x, int n, float* y) {
    MoeScratch& m = *s.moe;
    const cpu::KernelTable& kt = *s.kt;
    const int E = c.n_embd, F = c.n_ff_exp, X = c.n_expert, K = m.k;
    const int variant = s.decode_variant;  // 0 unless this is a one-token forward

    // ---- router ----
    if (L.ffn_gate_inp.dtype == DType::F32) {
        // f32 as in every GGUF: SIMD dot products over (token, expert) pairs (the generic f32
        // matmul is scalar); the 256 KiB-per-64-experts matrix stays in L2 across tokens.
        const float* wr = static_cast<const float*>(L.ffn_gate_inp.data);
        if (s.observer) s.observer->matmul_input(L.ffn_gate_inp, -1, x, n);
        pool.parallel_for(int64_t(n) * X, 16, [&](int64_t p0, int64_t p1, int) {
            for (int64_t p = p0; p < p1; ++p) m.logits()[p] = kt.dot_f32(wr + size_t(p % X) * E, x + size_t(p / X) * E, E);
        });
    } else {
        linear(s, pool, L.ffn_gate_inp, x, n, m.logits());  // (n, n_expert)
    }
    route(kt, c, m, n);

    if (m.dense_reference) {
        dense_reference(s, pool, c, L, x, n, y);
    } else {
        // ---- group the (token, expert) assignments by expert ----
        std::fill(m.count.begin(), m.count.end(), 0);
        for (int a = 0; a < n * K; ++a) ++m.count[size_t(m.sel[size_t(a)])];
        m.active.clear();
        for (int e = 0, at = 0; e < X; ++e) {
            m.offset[size_t(e)] = m.cursor[size_t(e)] = at;
            at += m.count[size_t(e)];
            if (m.count[size_t(e)]) m.active.push_back(e);
        }
        for (int a = 0; a < n * K; ++a) m.slot[size_t(a)] = m.cursor[size_t(m.sel[size_t(a)])]++;  // tokens ascending within an expert

        if (s.observer)  // each expert's tokens, as llama-imatrix counts them for MUL_MAT_ID
            for (int a = 0; a < n * K; ++a) {
                s.observer->matmul_input(L.ffn_gate_exps, m.sel[size_t(a)], x + size_t(a / K) * E, 1);
                s.observer->matmul_input(L.ffn_up_exps, m.sel[size_t(a)], x + size_t(a / K) * E, 1);
            }

        // ---- inputs: quantized once per token, copied to each of its k rows ----
        const cpu::ActFormat fmt_in = cpu::act_format(L.ffn_gate_exps.dtype), fmt_h = cpu::act_format(L.ffn_down_exps.dtype);
        const size_t row_in = cpu::act_row_bytes(fmt_in, E), row_h = cpu::act_row_bytes(fmt_h, F);
        uint8_t* xg = m.xg();  // (n * k, row_in)
        for_each_token(pool, n, [&](int i) {
            const int32_t* slot = m.slot.data() + size_t(i) * K;
            quantize_act(kt, fmt_in, x + size_t(i) * E, xg + size_t(slot[0]) * row_in, E);
            for (int j = 1; j < K; ++j) std::memcpy(xg + size_t(slot[j]) * row_in, xg + size_t(slot[0]) * row_in, row_in);
        });

        // ---- gate, up, silu(gate) * up, quantized for down: one job per (expert, unit of rows) ----
        const int unit = m.unit, per = F / unit;
        const uint64_t id_in = cpu::new_act_id(uint64_t(c.n_expert));  // expert e's input rows: id_in + e (up reuses gate's packed tokens)
        int most = 0;  // tokens of the busiest expert: up to kStreamingTokens, every job streams its weights once
        for (int e : m.active) most = std::max(most, m.count[size_t(e)]);
        auto gate_up = [&](int64_t u0, int64_t u1, int) {
            for (int64_t u = u0; u < u1; ++u) {
                const int e = m.active[size_t(u / per)], cnt = m.count[size_t(e)], off = m.offset[size_t(e)];
                const int64_t lo = (u % per) * unit, hi = lo + unit;
                const cpu::ActRows a{xg + size_t(off) * row_in, row_in, cnt, id_in + uint64_t(e)};
                float* g = m.gate() + size_t(off) * F;  // (cnt, F) rows of this expert
                float* up = m.up() + size_t(off) * F;
                expert_matmul(kt, L.ffn_gate_exps, e, lo, hi, a, g, size_t(F), variant);
                expert_matmul(kt, L.ffn_up_exps, e, lo, hi, a, up, size_t(F), variant);
                for (int r = 0; r < cnt; ++r) {
                    float* gr = g + size_t(r) * F + lo;
                    kt.silu_mul(gr, up + size_t(r) * F + lo, unit);
                    // lo is a whole number of blocks, so its byte offset is that of lo elements.
                    quantize_act(kt, fmt_h, gr, m.hq() + size_t(off + r) * row_h + cpu::act_row_bytes(fmt_h, lo), unit);
                }
            }
        };
        if (most <= kStreamingTokens) pool.parallel_for_shares(int64_t(m.active.size()) * per, 1, gate_up);  // decode +4-6%
        else pool.parallel_for(int64_t(m.active.size()) * per, 1, gate_up);

        if (s.observer)  // silu(gate) * up of each expert's tokens: (count, F) rows from offset
            for (int e : m.active) s.observer->matmul_input(L.ffn_down_exps, e, m.gate() + size_t(m.offset[size_t(e)]) * F, m.count[size_t(e)]);

        // ---- down for every active expert and the weighted sum, one slab of output rows per job ----
        // A chunk packs the tokens of each expert that has more than 8 (the GEMM) once, so
        // then a thread takes one chunk: a slab's work is the same for every slab, and four
        // chunks would pack those tokens four times. Otherwise (row kernels, the weights
        // streamed once) it splits in shares, as a dense decode matmul does.
        auto down = [&](int64_t r0, int64_t r1, int) {
            for (int e : m.active) {
                const int off = m.offset[size_t(e)];
                const cpu::ActRows a{m.hq() + size_t(off) * row_h, row_h, m.count[size_t(e)]};
                expert_matmul(kt, L.ffn_down_exps, e, r0, r1, a, m.out() + size_t(off) * E, size_t(E), variant);  // (cnt, E)
            }
            for (int i = 0; i < n; ++i) {
                float* yi = y + size_t(i) * E + r0;
                std::memset(yi, 0, sizeof(float) * size_t(r1 - r0));
                for (int j = 0; j < K; ++j) {
                    const size_t a = size_t(i) * K + j;
                    kt.axpy_f32(yi, m.wsel[a], m.out() + size_t(m.slot[a]) * E + r0, r1 - r0);
                }
            }
        };
        if (most <= kStreamingTokens) pool.parallel_for_shares(E, 16, down);
        else pool.parallel_for(E, 16, down, 1);
    }

    // ---- shared expert (qwen2moe): a dense SwiGLU MLP scaled by a sigmoid gate ----
    if (!L.ffn_gate_shexp.empty()) {
        const int S = c.n_ff_shexp;
        linear_group(s, pool, {&L.ffn_gate_shexp, &L.ffn_up_shexp}, x, n, {s.gate(), s.up()});  // (n, S) each
        for_each_token(pool, n, [&](int i) { kt.silu_mul(s.gate() + size_t(i) * S, s.up() + size_t(i) * S, S); });
        linear(s, pool, L.ffn_down_shexp, s.gate(), n, m.sh_out());  // (n, E)
        if (s.observer && !L.ffn_gate_inp_shexp.empty()) s.observer->matmul_input(L.ffn_gate_inp_shexp, -1, x, n);
        for_each_token(pool, n, [&](int i) {
            float g = 1.0f;
            if (!L.ffn_gate_inp_shexp.empty()) {
                g = kt.dot_f32(static_cast<const float*>(L.ffn_gate_inp_shexp.data), x + size_t(i) * E, E);
                g = 1.0f / (1.0f + std::exp(-g));
            }
            kt.axpy_f32(y + size_t(i) * E, g, m.sh_out() + size_t(i) * E, E);
        });
    }
}

}  // namespace kiln
