#version 450
// Flash attention over the F16 KV cache: one workgroup per (query head, token). The visible
// positions [lo, pos] (causal; lo = pos - window + 1 for sliding-window layers) are walked in
// tiles of 64: thread j scores position j of the tile, then the online softmax rescales the
// running sum and output when the maximum grows, so nothing of size n_ctx is stored.
// Grouped-query attention: query head h reads KV head h / (n_head / n_head_kv).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Q { float q[]; };    // (n, n_head, head_dim) f32
layout(std430, binding = 1) readonly buffer KC { uint kc[]; };   // (n_head_kv, n_ctx, head_dim / 2) f16x2
layout(std430, binding = 2) readonly buffer VC { uint vc[]; };   // (n_head_kv, n_ctx, head_dim_v / 2) f16x2
layout(std430, binding = 3) writeonly buffer O { float o[]; };   // (n, n_head, head_dim_v) f32
layout(push_constant) uniform Push {
    uint n_head, n_head_kv, head_dim, head_dim_v, n_ctx;
    uint pos0;    // position of token 0 of the batch
    uint window;  // 0: full causal attention
    float scale;  // applied to q.k
} p;

#include "reduce.glsl"

const uint kTile = 64u, kMaxDim = 512u, kDimsPerThread = kMaxDim / 64u;
shared float q_s[kMaxDim];
shared float prob[kTile];

void main() {
    const uint h = gl_WorkGroupID.x, token = gl_WorkGroupID.y, t = gl_LocalInvocationID.x;
    const uint g = h / (p.n_head / p.n_head_kv);
    const uint pos = p.pos0 + token, lo = p.window > 0u && pos + 1u > p.window ? pos + 1u - p.window : 0u;
    const uint D2 = p.head_dim / 2u, Dv2 = p.head_dim_v / 2u;
    for (uint d = t; d < p.head_dim; d += 64u) q_s[d] = q[(token * p.n_head + h) * p.head_dim + d] * p.scale;
    barrier();

    float m = -1.0 / 0.0, l = 0.0;
    float acc[kDimsPerThread];  // output dims t, t + 64, ...
    for (uint r = 0u; r < kDimsPerThread; ++r) acc[r] = 0.0;
    for (uint start = lo; start <= pos; start += kTile) {
        const uint count = min(kTile, pos + 1u - start);
        float s = -1.0 / 0.0;
        if (t < count) {
            const uint kb = (g * p.n_ctx + start + t) * D2;
            s = 0.0;
            for (uint d = 0u; d < D2; ++d) {
                const vec2 kv = unpackHalf2x16(kc[kb + d]);
                s += q_s[2u * d] * kv.x + q_s[2u * d + 1u] * kv.y;
            }
        }
        const float m_new = max(m, group_max(s));
        const float pj = t < count ? exp(s - m_new) : 0.0;
        prob[t] = pj;
        const float correction = exp(m - m_new);  // 0 on the first tile (m = -inf)
        l = l * correction + group_sum(pj);         // group_sum's barriers also publish prob[]
        m = m_new;
        for (uint r = 0u; r < kDimsPerThread; ++r) {
            const uint d = t + 64u * r;
            if (d >= p.head_dim_v) break;
            float a = acc[r] * correction;
            for (uint j = 0u; j < count; ++j) {
                const uint w = vc[(g * p.n_ctx + start + j) * Dv2 + d / 2u];
                a += prob[j] * unpackHalf2x16(w)[d & 1u];
            }
            acc[r] = a;
        }
        barrier();  // prob[] is rewritten by the next tile
    }
    for (uint r = 0u; r < kDimsPerThread; ++r) {
        const uint d = t + 64u * r;
        if (d < p.head_dim_v) o[(token * p.n_head + h) * p.head_dim_v + d] = acc[r] / l;
    }
}
