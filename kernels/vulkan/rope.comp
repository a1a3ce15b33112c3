#version 450
// Rotary embeddings in place on x (n, heads, head_dim): the first rope_dim dims of each head
// rotate by the (cos, sin) of their token and pair. The table comes from the host, computed
// by the CPU backend's own function: GPU sin/cos of large angles are not accurate enough to
// keep the two backends' positions identical. neox: pairs (p, p + rope_dim/2), else (2p, 2p+1).
layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer X { float x[]; };             // (n, heads, head_dim) f32
layout(std430, binding = 1) readonly buffer CS { float cs[]; };  // (n, rope_dim / 2, 2) cos, sin
layout(push_constant) uniform Push { uint n, heads, head_dim, half_dim, neox; } p;

void main() {
    const uint total = p.n * p.heads * p.half_dim;
    for (uint i = gl_GlobalInvocationID.x; i < total; i += gl_NumWorkGroups.x * 256u) {
        const uint pair = i % p.half_dim, head = i / p.half_dim, token = head / p.heads;
        const uint base = head * p.head_dim;
        const uint ia = base + (p.neox != 0u ? pair : 2u * pair), ib = ia + (p.neox != 0u ? p.half_dim : 1u);
        const float co = cs[(token * p.half_dim + pair) * 2u], si = cs[(token * p.half_dim + pair) * 2u + 1u];
        const float a = x[ia], b = x[ib];
        x[ia] = a * co - b * si;
        x[ib] = a * si + b * co;
    }
}
