#version 450
// Embedding lookup: out (n, k) = dequant(W[ids[i]]) * scale, one workgroup per token.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };  // (n_vocab, row_bytes(k)) GGUF blocks
layout(std430, binding = 1) readonly buffer Ids { int ids[]; };      // (n) token ids, checked on the host
layout(std430, binding = 2) writeonly buffer Out { float o[]; };     // (n, k) f32
layout(push_constant) uniform Push {
    uint k;
    float scale;
} p;

#include "dequant.glsl"

void main() {
    const uint token = gl_WorkGroupID.x;
    const uint wrow = uint(ids[token]) * row_bytes(p.k);
    float v[16];
    for (uint chunk = gl_LocalInvocationID.x; chunk < p.k / 16u; chunk += 64u) {
        dequant16(wrow, chunk, v);
        for (uint i = 0u; i < 16u; ++i) o[token * p.k + 16u * chunk + i] = v[i] * p.scale;
    }
}
