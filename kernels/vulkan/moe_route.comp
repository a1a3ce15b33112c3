#version 450
// Mixture-of-experts router, one workgroup per token, as src/moe.cpp route(): the softmax
// of the router logits, the K most probable experts (ties to the lower index) and their
// probabilities as weights, renormalized to sum 1 when asked (Qwen3-MoE, Mixtral; the sum
// clamped at the smallest normal fp16, as llama.cpp does).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Logits { float l[]; };  // (n, n_expert) router logits
layout(std430, binding = 1) writeonly buffer Sel { uint sel[]; };   // (n, K) chosen experts, best first
layout(std430, binding = 2) writeonly buffer W { float w[]; };      // (n, K) their weights
layout(push_constant) uniform Push { uint n_expert, k, norm; } p;

#include "reduce.glsl"

const uint kMaxK = 32u;  // src/vulkan/forward.cpp refuses more experts per token

void main() {
    const uint t = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x, base = t * p.n_expert;
    float m = -1.0 / 0.0;
    for (uint e = tid; e < p.n_expert; e += 64u) m = max(m, l[base + e]);
    m = group_max(m);
    float s = 0.0;
    for (uint e = tid; e < p.n_expert; e += 64u) s += exp(l[base + e] - m);
    s = group_sum(s);
    if (tid != 0u) return;
    // K sequential scans (K x n_expert reads): small next to the expert matmuls.
    uint picked[kMaxK];
    float wt[kMaxK];
    float total = 0.0;
    for (uint j = 0u; j < p.k; ++j) {
        uint best = 0xffffffffu;
        float best_p = 0.0;
        for (uint e = 0u; e < p.n_expert; ++e) {
            bool taken = false;
            for (uint i = 0u; i < j; ++i) taken = taken || picked[i] == e;
            if (taken) continue;
            const float pe = exp(l[base + e] - m) / s;
            if (best == 0xffffffffu || pe > best_p) best = e, best_p = pe;
        }
        picked[j] = best;
        wt[j] = best_p;
        total += best_p;
    }
    const float scale = p.norm != 0u ? 1.0 / max(total, 6.103515625e-5) : 1.0;
    for (uint j = 0u; j < p.k; ++j) {
        sel[t * p.k + j] = picked[j];
        w[t * p.k + j] = wt[j] * scale;
    }
}
