#version 450
// Gated DeltaNet, step 3: the delta rule (kernels/ref/delta_net.cpp delta_rule) for one
// sequence's chunk, token after token. Rows of a head's state are independent given the
// token's q, k, v, decay and strength: one invocation per (value head, row) carries its row
// from the slot read through the tokens, writing it after each kept token into that token's
// slot (else into the scratch slot, where each row has its own place).
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Conv { float x[]; };     // (n, C): Hk query heads, Hk key heads, Hv value heads of S
layout(std430, binding = 1) readonly buffer Gates { float g[]; };    // (n, 2, Hv) decay, strength
layout(std430, binding = 2) buffer States { float st[]; };           // (slots + 1, layer_floats); a slot's state at conv_floats: (Hv, S, S)
layout(std430, binding = 3) readonly buffer Slots { int slots[]; };  // [0] slot read, [1] 1: start from zeros, [2 + t] slot after token t
layout(std430, binding = 4) writeonly buffer Out { float o[]; };     // (n, Hv * S)
layout(push_constant) uniform Push { uint n, C, S, Hk, Hv, grouped, layer_floats, conv_floats; float scale; } p;

void main() {
    const uint id = gl_GlobalInvocationID.x;
    if (id >= p.Hv * p.S) return;
    const uint h = id / p.S, j = id % p.S;
    const uint kh = p.grouped != 0u ? h / (p.Hv / p.Hk) : h % p.Hk;  // the key head serving value head h
    const uint row = p.conv_floats + (h * p.S + j) * p.S;
    uint src = uint(slots[0]) * p.layer_floats + row;
    bool zero = slots[1] != 0;
    for (uint t = 0u; t < p.n; ++t) {
        const uint q = t * p.C + kh * p.S, k = q + p.Hk * p.S;
        const float v = x[t * p.C + 2u * p.Hk * p.S + h * p.S + j];
        const float decay = g[t * 2u * p.Hv + h], beta = g[t * 2u * p.Hv + p.Hv + h];
        float sk = 0.0;
        if (!zero)
            for (uint i = 0u; i < p.S; ++i) sk += st[src + i] * decay * x[k + i];
        const float d = beta * (v - sk);
        const uint dst = uint(slots[2u + t]) * p.layer_floats + row;
        float y = 0.0;
        for (uint i = 0u; i < p.S; ++i) {
            const float r = (zero ? 0.0 : st[src + i] * decay) + x[k + i] * d;
            st[dst + i] = r;
            y += r * x[q + i];
        }
        o[t * p.Hv * p.S + h * p.S + j] = y * p.scale;
        src = dst;
        zero = false;
    }
}
