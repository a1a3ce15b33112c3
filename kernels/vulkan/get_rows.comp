#version 450
// Embedding lookup: out (n, k) = dequant(W[ids[i]]) * scale, one workgroup per token.
// W may be one part (rows row0 .. row0 + rows - 1) of a table too large for one binding:
// tokens whose id is elsewhere are left to the dispatch of their part.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };  // (n_vocab, row_bytes(k)) GGUF blocks
layout(std430, binding = 1) readonly buffer Ids { int ids[]; };      // (n) token ids, checked on the host
layout(std430, binding = 2) writeonly buffer Out { float o[]; };     // (n, k) f32
layout(push_constant) uniform Push {
    uint k;
    float scale;
    uint row0, rows;
} p;

#define GRID_BINDING 3  // the IQ1-IQ3 lattices (dequant.glsl), bound for every format
#include "dequant.glsl"

void main() {
    const uint token = gl_WorkGroupID.x, id = uint(ids[token]);
    if (id < p.row0 || id >= p.row0 + p.rows) return;  // uniform across the workgroup
    const uint wrow = (id - p.row0) * row_bytes(p.k);
    float v[16];
    for (uint chunk = gl_LocalInvocationID.x; chunk < p.k / 16u; chunk += 64u) {
        dequant16(wrow, chunk, v);
        for (uint i = 0u; i < 16u; ++i) o[token * p.k + 16u * chunk + i] = v[i] * p.scale;
    }
}
