#version 450
// Gated DeltaNet, step 1 (src/cpu/delta_net.cpp conv_rows): the causal conv1d + silu of one
// sequence's chunk, from the conv window of its state slot, and the window after each kept
// token into that token's slot. One invocation per (token, channel).
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer Mix { float mix[]; };    // (n, C) q, k, v before the conv
layout(std430, binding = 1) readonly buffer W { float w[]; };        // (C, K) taps
layout(std430, binding = 2) buffer States { float st[]; };           // (slots + 1, layer_floats) this layer's; a slot's window first: (K - 1, C)
layout(std430, binding = 3) readonly buffer Slots { int slots[]; };  // [0] slot read, [1] 1: start from zeros, [2 + t] slot after token t
layout(std430, binding = 4) writeonly buffer Conv { float y[]; };    // (n, C)
layout(push_constant) uniform Push { uint n, C, K, layer_floats, scratch; } p;

// Row r of the sequence's input: the window's rows for r < 0.
float input_at(int r, uint c) {
    if (r >= 0) return mix[uint(r) * p.C + c];
    if (slots[1] != 0) return 0.0;
    return st[uint(slots[0]) * p.layer_floats + uint(int(p.K) - 1 + r) * p.C + c];
}

void main() {
    const uint total = p.n * p.C;
    for (uint i = gl_GlobalInvocationID.x; i < total; i += gl_NumWorkGroups.x * 256u) {
        const uint t = i / p.C, c = i % p.C;
        float sum = 0.0;
        for (uint k = 0u; k < p.K; ++k) sum += w[c * p.K + k] * input_at(int(t + k) - int(p.K - 1u), c);
        y[i] = sum / (1.0 + exp(-sum));
        const int slot = slots[2u + t];
        if (uint(slot) != p.scratch)  // a kept token: the K - 1 inputs up to it
            for (uint r = 0u; r + 1u < p.K; ++r) st[uint(slot) * p.layer_floats + r * p.C + c] = input_at(int(t + 1u + r) - int(p.K - 1u), c);
    }
}
