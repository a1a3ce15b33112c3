// The gated DeltaNet layer of hybrid models (Qwen3.5) on the CPU: llama.cpp's qwen35
// build_layer_attn_linear after the input projections, over the chunk's sequences, each
// from and into its own recurrent state (recurrent_state.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/session_impl.h"
#include "ref/delta_net.h"

namespace kiln {

namespace {

// Causal conv1d + silu of one sequence's rows [row0, row0 + n) of mix into conv, channels
// [c0, c1) (the reference kernel: a few FMAs per channel, not worth a SIMD copy); the conv
// window after each kept token goes to its slot.
void conv_rows(const SessionState& s, const ModelConfig& c, const LayerWeights& L, const RecurrentStates::Plan& p, int rl, int row0, int n, int64_t c0,
               int64_t c1) {
    const int64_t C = c.ssm_conv_channels(), K = c.ssm_conv_kernel;
    const float* w = static_cast<const float*>(L.ssm_conv1d.data);  // (C, K)
    const float* window = s.rec.conv(p.seq, p.in, rl);               // (K - 1, C)
    const float* x = s.mix.data + size_t(row0) * size_t(C);          // (n, C)
    ref::conv1d_silu(window, x, w, s.conv.data + size_t(row0) * size_t(C), n, C, K, c0, c1);
    // Row r of the sequence's input: the window's rows for r < 0.
    auto in = [&](int64_t r) { return r < 0 ? window + (K - 1 + r) * C : x + r * C; };
    for (int t = 0; t < n; ++t) {
        if (const int slot = p.out[size_t(t)]; slot >= 0) {
            float* dst = s.rec.conv(p.seq, slot, rl);  // the K - 1 inputs up to token t
            for (int64_t r = 0; r < K - 1; ++r) std::memcpy(dst + r * C + c0, in(t + 1 + r - (K - 1)) + c0, sizeof(float) * size_t(c1 - c0));
        }
    }
}

}  // namespace

void delta_net(SessionState& s, ThreadPool& pool, const ModelConfig& c, const LayerWeights& L, int il, int n) {
    const cpu::KernelTable& kt = *s.kt;
    const int rl = c.recurrent_index(il);
    const int64_t C = c.ssm_conv_channels(), S = c.ssm_state, Hk = c.ssm_k_heads, Hv = c.ssm_v_heads, Kd = c.ssm_k_dim(), Vd = c.ssm_v_dim();
    const int64_t bstride = L.ssm_ba.empty() ? Hv : 2 * Hv;  // beta's rows: the projection's width (Qwen3-Next: betas and alphas)

    // 1. conv1d + silu, each sequence from its window; threads split the channels.
    pool.parallel_for(C, 64, [&](int64_t c0, int64_t c1, int) {
        for (size_t g = 0; g < s.groups.size(); ++g) conv_rows(s, c, L, s.rec_plans[g], rl, s.groups[g].row0, s.groups[g].n, c0, c1);
    });

    // 2. q and k L2-normed per head (ggml: rms_norm with eps / S, then 1 / sqrt(S)); the
    // decay exp(softplus(alpha + dt) * a) and write strength sigmoid(beta) per value head.
    const float* dt = static_cast<const float*>(L.ssm_dt.data);
    const float* a = static_cast<const float*>(L.ssm_a.data);
    for_each_token(pool, n, [&](int i) {
        float* row = s.conv.data + size_t(i) * size_t(C);
        for (int64_t h = 0; h < 2 * Hk; ++h) {  // the Hk query heads, then the Hk key heads
            kt.rms_norm(row + h * S, nullptr, row + h * S, S, c.rms_eps / float(S));
            kt.scale(row + h * S, 1.0f / std::sqrt(float(S)), S);
        }
        float* al = s.alpha.data + size_t(i) * size_t(Hv);
        float* be = s.beta.data + size_t(i) * size_t(bstride);
        if (!L.ssm_ba.empty()) {  // per key head: its r value heads' betas, then their alphas
            const int64_t r = Hv / Hk;
            for (int64_t kh = 0; kh < Hk; ++kh)
                for (int64_t j = 0; j < r; ++j) al[kh * r + j] = be[kh * 2 * r + r + j];
            for (int64_t h = 0; h < Hv; ++h) be[h] = be[(h / r) * 2 * r + h % r];  // compacted in place: reads at or after the write
        }
        for (int64_t h = 0; h < Hv; ++h) {
            const float x = al[h] + dt[h];
            const float softplus = x > 20.0f ? x : std::log(1.0f + std::exp(x));
            al[h] = std::exp(softplus * a[h]);
            be[h] = 1.0f / (1.0f + std::exp(-be[h]));
        }
    });

    // 3. The delta rule, per (sequence, value head), token after token; the state after a
    // kept token is written straight into its slot, the others into per-thread scratch.
    const float scale = 1.0f / std::sqrt(float(S));
    const int64_t items = int64_t(s.groups.size()) * Hv;
    pool.parallel_for(items, 1, [&](int64_t i0, int64_t i1, int thread) {
        float* scratch = s.rec_scratch.data + size_t(thread) * size_t(S * S);  // (S, S)
        for (int64_t item = i0; item < i1; ++item) {
            const AttnGroup& g = s.groups[size_t(item / Hv)];
            const RecurrentStates::Plan& p = s.rec_plans[size_t(item / Hv)];
            const int64_t h = item % Hv, kh = c.ssm_grouped_heads ? h / (Hv / Hk) : h % Hk;  // the key head serving value head h
            const float* in = s.rec.ssm(p.seq, p.in, rl) + h * S * S;
            for (int t = 0; t < g.n; ++t) {
                const size_t r = size_t(g.row0 + t);
                const float* row = s.conv.data + r * size_t(C);
                const int slot = p.out[size_t(t)];
                float* out = slot >= 0 ? s.rec.ssm(p.seq, slot, rl) + h * S * S : scratch;
                kt.delta_rule(in, out, row + kh * S, row + Kd + kh * S, row + 2 * Kd + h * S, s.alpha.data[r * size_t(Hv) + size_t(h)],
                              s.beta.data[r * size_t(bstride) + size_t(h)], scale, s.attn.data + r * size_t(Vd) + size_t(h * S), S);
                in = out;
            }
        }
    });

    // 4. The gated RMSNorm: Z = silu(z) * rms_norm(o) * w, per value head.
    const float* norm = static_cast<const float*>(L.ssm_norm.data);
    for_each_token(pool, n, [&](int i) {
        for (int64_t h = 0; h < Hv; ++h) {
            float* o = s.attn.data + size_t(i) * size_t(Vd) + size_t(h * S);
            float* z = s.z.data + size_t(i) * size_t(Vd) + size_t(h * S);
            kt.rms_norm(o, norm, o, S, c.rms_eps);
            kt.silu_mul(z, o, S);  // z = silu(z) * o
        }
    });
}

}  // namespace kiln
