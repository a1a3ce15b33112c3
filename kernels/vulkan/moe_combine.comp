#version 450
// The MoE block's output: y (n, E) = sum over the K slots of w[t][s] * down[t*K + s], plus
// the shared expert (Qwen2-MoE) already in y, scaled by sigmoid of its gate logit when it
// has one. mode 0: no shared expert; 1: shared, ungated; 2: shared, gated.
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer Down { float d[]; };  // (n * K, E) each slot's expert output
layout(std430, binding = 1) readonly buffer W { float w[]; };     // (n, K) routing weights
layout(std430, binding = 2) buffer Y { float y[]; };              // (n, E) in: the shared expert's output (mode > 0); out: the block's
layout(std430, binding = 3) readonly buffer G { float gs[]; };    // (n) shared-expert gate logits (mode 2)
layout(push_constant) uniform Push { uint E, K, total, mode; } p;

void main() {
    for (uint i = gl_GlobalInvocationID.x; i < p.total; i += gl_NumWorkGroups.x * 256u) {
        const uint t = i / p.E, c = i % p.E;
        float acc = 0.0;
        for (uint s = 0u; s < p.K; ++s) acc += w[t * p.K + s] * d[(t * p.K + s) * p.E + c];
        if (p.mode != 0u) acc += (p.mode == 2u ? 1.0 / (1.0 + exp(-gs[t])) : 1.0) * y[i];
        y[i] = acc;
    }
}
