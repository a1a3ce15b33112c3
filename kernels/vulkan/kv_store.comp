#version 450
// Stores a chunk's keys and values into one layer of the F16 KV cache at positions
// pos0 .. pos0 + n - 1. Cache layout per layer: K (n_head_kv, n_ctx, head_dim) and
// V (n_head_kv, n_ctx, head_dim_v), fp16 packed two per word (head dims are even).
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer K { float k[]; };  // (n, n_head_kv, head_dim) f32
layout(std430, binding = 1) readonly buffer V { float v[]; };  // (n, n_head_kv, head_dim_v) f32
layout(std430, binding = 2) buffer KC { uint kc[]; };          // (n_head_kv, n_ctx, head_dim / 2) f16x2
layout(std430, binding = 3) buffer VC { uint vc[]; };          // (n_head_kv, n_ctx, head_dim_v / 2) f16x2
layout(push_constant) uniform Push { uint n, n_head_kv, head_dim, head_dim_v, n_ctx, pos0; } p;

void store(uint i, uint dim, bool is_k) {
    const uint pair = i % (dim / 2u), row = i / (dim / 2u);  // row = token * n_head_kv + head
    const uint head = row % p.n_head_kv, token = row / p.n_head_kv;
    const uint src = row * dim + 2u * pair, dst = (head * p.n_ctx + p.pos0 + token) * (dim / 2u) + pair;
    if (is_k) kc[dst] = packHalf2x16(vec2(k[src], k[src + 1u]));
    else vc[dst] = packHalf2x16(vec2(v[src], v[src + 1u]));
}

void main() {
    const uint nk = p.n * p.n_head_kv * p.head_dim / 2u, nv = p.n * p.n_head_kv * p.head_dim_v / 2u;
    for (uint i = gl_GlobalInvocationID.x; i < nk + nv; i += gl_NumWorkGroups.x * 256u) {
        if (i < nk) store(i, p.head_dim, true);
        else store(i - nk, p.head_dim_v, false);
    }
}
