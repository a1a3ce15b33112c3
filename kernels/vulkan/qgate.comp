#version 450
// Gated attention (Qwen3.5): each head of the Q projection's output is its query, then a
// gate of its attention output. mode 0: q = the query halves; mode 1: attn *= sigmoid(gate).
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer QG { float qg[]; };  // (n, H, 2 D)
layout(std430, binding = 1) buffer Y { float y[]; };             // (n, H, D) q (mode 0) or the attention output (mode 1)
layout(push_constant) uniform Push { uint total, D, mode; } p;   // total = n H D

void main() {
    for (uint i = gl_GlobalInvocationID.x; i < p.total; i += gl_NumWorkGroups.x * 256u) {
        const uint head = i / p.D, d = i % p.D;
        if (p.mode == 0u) y[i] = qg[head * 2u * p.D + d];
        else y[i] = y[i] * (1.0 / (1.0 + exp(-qg[head * 2u * p.D + p.D + d])));
    }
}
