#version 450
// Index of the largest value of each row (the lowest index among equal maxima, as a
// sequential scan finds it): greedy sampling without reading the logits back.
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };    // (rows, width) f32
layout(std430, binding = 1) writeonly buffer Out { uint idx[]; };  // (rows)
layout(push_constant) uniform Push { uint width; } p;

shared float best_v[64];
shared uint best_i[64];

void main() {
    const uint base = gl_WorkGroupID.x * p.width, t = gl_LocalInvocationID.x;
    float bv = -1.0 / 0.0;
    uint bi = 0xffffffffu;
    for (uint i = t; i < p.width; i += 64u)
        if (x[base + i] > bv || bi == 0xffffffffu) bv = x[base + i], bi = i;
    best_v[t] = bv;
    best_i[t] = bi;
    barrier();
    for (uint s = 32u; s > 0u; s >>= 1) {
        if (t < s) {
            const float ov = best_v[t + s];
            const uint oi = best_i[t + s];
            if (oi != 0xffffffffu && (best_i[t] == 0xffffffffu || ov > best_v[t] || (ov == best_v[t] && oi < best_i[t]))) {
                best_v[t] = ov;
                best_i[t] = oi;
            }
        }
        barrier();
    }
    if (t == 0u) idx[gl_WorkGroupID.x] = best_i[0];
}
