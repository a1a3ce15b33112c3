#version 450
// Stores a chunk's keys and values into one layer of the KV cache at positions
// pos0 .. pos0 + n - 1, in the row format of kv.glsl. Cache layout per layer:
// K (n_head_kv, n_ctx, row of head_dim) and V (n_head_kv, n_ctx, row of head_dim_v).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer K { float k[]; };  // (n, n_head_kv, head_dim) f32
layout(std430, binding = 1) readonly buffer V { float v[]; };  // (n, n_head_kv, head_dim_v) f32
layout(std430, binding = 2) buffer KC { uint kc[]; };          // (n_head_kv, n_ctx, kv_row_words(head_dim))
layout(std430, binding = 3) buffer VC { uint vc[]; };          // (n_head_kv, n_ctx, kv_row_words(head_dim_v))
layout(push_constant) uniform Push { uint n, n_head_kv, head_dim, head_dim_v, n_ctx, pos0; } p;

#include "kv.glsl"

// Destination word of (row = token * n_head_kv + head) in a cache of rows of `dim`.
uint dst_word(uint row, uint dim) {
    const uint head = row % p.n_head_kv, token = row / p.n_head_kv;
    return (head * p.n_ctx + p.pos0 + token) * kv_row_words(dim);
}

#if defined(KV_F16)
// One thread per pair of values.
void store(uint i, uint dim, bool is_k) {
    const uint pair = i % (dim / 2u), row = i / (dim / 2u), src = row * dim + 2u * pair, dst = dst_word(row, dim) + pair;
    if (is_k) kc[dst] = packHalf2x16(vec2(k[src], k[src + 1u]));
    else vc[dst] = packHalf2x16(vec2(v[src], v[src + 1u]));
}
uint items(uint dim) { return p.n * p.n_head_kv * dim / 2u; }
#else
// One thread per row: its blocks share words with each other but not with other rows.
// Quantized as ggml's quantize_row_q8_0_ref: d = amax / 127, q = round(x / d) (half away
// from zero), d stored as fp16.
void put_byte(bool is_k, uint word0, uint byte_index, uint value) {
    const uint w = word0 + (byte_index >> 2), s = (byte_index & 3u) * 8u, mask = ~(0xffu << s);
    if (is_k) kc[w] = (kc[w] & mask) | (value << s);
    else vc[w] = (vc[w] & mask) | (value << s);
}
void store(uint row, uint dim, bool is_k) {
    const uint word0 = dst_word(row, dim);
    for (uint b = 0u; b < dim / 32u; ++b) {
        float amax = 0.0;
        for (uint j = 0u; j < 32u; ++j) amax = max(amax, abs(is_k ? k[row * dim + 32u * b + j] : v[row * dim + 32u * b + j]));
        const float d = amax / 127.0, id = d != 0.0 ? 1.0 / d : 0.0;
        const uint dh = packHalf2x16(vec2(d, 0.0)) & 0xffffu;
        put_byte(is_k, word0, 34u * b, dh & 0xffu);
        put_byte(is_k, word0, 34u * b + 1u, dh >> 8);
        for (uint j = 0u; j < 32u; ++j) {
            const float x = (is_k ? k[row * dim + 32u * b + j] : v[row * dim + 32u * b + j]) * id;
            const int q = int(sign(x) * floor(abs(x) + 0.5));
            put_byte(is_k, word0, 34u * b + 2u + j, uint(q) & 0xffu);
        }
    }
}
uint items(uint dim) { return p.n * p.n_head_kv; }
#endif

void main() {
    const uint nk = items(p.head_dim), nv = items(p.head_dim_v);
    for (uint i = gl_GlobalInvocationID.x; i < nk + nv; i += gl_NumWorkGroups.x * 256u) {
        if (i < nk) store(i, p.head_dim, true);
        else store(i - nk, p.head_dim_v, false);
    }
}
