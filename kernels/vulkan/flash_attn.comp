#version 450
// Flash attention over the KV cache (f16 or q8_0 rows, kv.glsl): one workgroup per (query head, token). The visible
// positions [lo, pos] (causal; lo = pos - window + 1 for sliding-window layers) are walked in
// tiles of 64: thread j scores position j of the tile, then the online softmax rescales the
// running sum and output when the maximum grows, so nothing of size n_ctx is stored.
// Grouped-query attention: query head h reads KV head h / (n_head / n_head_kv).
// The query is rounded as the CPU backend prepares it (kv_layout.cpp prepare_q): to f16 for
// an f16 cache, to q8_0 (ggml's rounding, half away from zero) for a q8_0 cache; the scale
// multiplies the dot product, as on the CPU.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Q { float q[]; };    // (n, n_head, head_dim) f32
layout(std430, binding = 1) readonly buffer KC { uint kc[]; };   // (n_head_kv, n_ctx, kv_row_words(head_dim))
layout(std430, binding = 2) readonly buffer VC { uint vc[]; };   // (n_head_kv, n_ctx, kv_row_words(head_dim_v))
layout(std430, binding = 3) writeonly buffer O { float o[]; };   // (n, n_head, head_dim_v) f32
layout(push_constant) uniform Push {
    uint n_head, n_head_kv, head_dim, head_dim_v, n_ctx;
    uint pos0;    // position of token 0 of the batch
    uint window;  // 0: full causal attention
    float scale;  // applied to q.k
} p;

#include "reduce.glsl"
#include "kv.glsl"
KV_READERS(k_row, kc)
KV_READERS(v_row, vc)

// q_s . key at cache word kw.
float key_dot(uint kw, uint dim);
// Element d of the value row at cache word vw.
float value_at(uint vw, uint d);

const uint kTile = 64u, kMaxDim = 512u, kDimsPerThread = kMaxDim / 64u;
shared float q_s[kMaxDim];
shared float prob[kTile];

float fp16_round(float v) { return unpackHalf2x16(packHalf2x16(vec2(v, 0.0))).x; }

#if defined(KV_F16)
void round_query(uint t) {
    for (uint d = t; d < p.head_dim; d += 64u) q_s[d] = fp16_round(q_s[d]);
}
float key_dot(uint kw, uint dim) {
    float s = 0.0;
    for (uint d = 0u; d < dim / 2u; ++d) {
        const vec2 kv = unpackHalf2x16(kc[kw + d]);
        s += q_s[2u * d] * kv.x + q_s[2u * d + 1u] * kv.y;
    }
    return s;
}
float value_at(uint vw, uint d) { return unpackHalf2x16(vc[vw + d / 2u])[d & 1u]; }
#else
// Thread t rounds block t of 32 dims: d = amax / 127, q = round(x / d) half away from zero
// (trunc + exact fraction test: floor(a + 0.5) would round 0.49999997 up), d stored as f16.
void round_query(uint t) {
    if (t >= p.head_dim / 32u) return;
    float amax = 0.0;
    for (uint i = 0u; i < 32u; ++i) amax = max(amax, abs(q_s[32u * t + i]));
    const float d = amax / 127.0, id = d != 0.0 ? 1.0 / d : 0.0, d16 = fp16_round(d);
    for (uint i = 0u; i < 32u; ++i) {
        const float v = q_s[32u * t + i] * id, a = abs(v), r = trunc(a);
        q_s[32u * t + i] = d16 * sign(v) * (a - r >= 0.5 ? r + 1.0 : r);
    }
}
float key_dot(uint kw, uint dim) {
    float s = 0.0;
    for (uint b = 0u; b < dim / 32u; ++b) {
        const uint o = 4u * kw + 34u * b;
        float sb = 0.0;
        for (uint j = 0u; j < 32u; j += 4u) {
            const uint u = k_row_u32(o + 2u + j);
            for (uint i = 0u; i < 4u; ++i) sb += q_s[32u * b + j + i] * float(kv_sext8(u >> (8u * i)));
        }
        s += k_row_f16(o) * sb;
    }
    return s;
}
float value_at(uint vw, uint d) {
    const uint o = 4u * vw + 34u * (d / 32u);
    return v_row_f16(o) * float(kv_sext8(v_row_u8(o + 2u + d % 32u)));
}
#endif

void main() {
    const uint h = gl_WorkGroupID.x, token = gl_WorkGroupID.y, t = gl_LocalInvocationID.x;
    const uint g = h / (p.n_head / p.n_head_kv);
    const uint pos = p.pos0 + token, lo = p.window > 0u && pos + 1u > p.window ? pos + 1u - p.window : 0u;
    const uint k_words = kv_row_words(p.head_dim), v_words = kv_row_words(p.head_dim_v);
    for (uint d = t; d < p.head_dim; d += 64u) q_s[d] = q[(token * p.n_head + h) * p.head_dim + d];
    barrier();
    round_query(t);
    barrier();

    float m = -1.0 / 0.0, l = 0.0;
    float acc[kDimsPerThread];  // output dims t, t + 64, ...
    for (uint r = 0u; r < kDimsPerThread; ++r) acc[r] = 0.0;
    for (uint start = lo; start <= pos; start += kTile) {
        const uint count = min(kTile, pos + 1u - start);
        float s = -1.0 / 0.0;
        if (t < count) s = key_dot((g * p.n_ctx + start + t) * k_words, p.head_dim) * p.scale;
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
            for (uint j = 0u; j < count; ++j) a += prob[j] * value_at((g * p.n_ctx + start + j) * v_words, d);
            acc[r] = a;
        }
        barrier();  // prob[] is rewritten by the next tile
    }
    for (uint r = 0u; r < kDimsPerThread; ++r) {
        const uint d = t + 64u * r;
        if (d < p.head_dim_v) o[(token * p.n_head + h) * p.head_dim_v + d] = acc[r] / l;
    }
}
