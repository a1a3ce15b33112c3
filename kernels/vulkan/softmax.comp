#version 450
// Softmax of each row of x, in place, one workgroup per row (a fully masked row, all -inf,
// is left as is, as the CPU kernel does).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) buffer X { float x[]; };  // (rows, width) f32
layout(push_constant) uniform Push { uint width; } p;

#include "reduce.glsl"

void main() {
    const uint base = gl_WorkGroupID.x * p.width, t = gl_LocalInvocationID.x;
    float mx = -1.0 / 0.0;
    for (uint i = t; i < p.width; i += 64u) mx = max(mx, x[base + i]);
    mx = group_max(mx);
    if (isinf(mx) && mx < 0.0) return;  // uniform: every thread sees the same mx
    float sum = 0.0;
    for (uint i = t; i < p.width; i += 64u) sum += exp(x[base + i] - mx);
    const float inv = 1.0 / group_sum(sum);
    for (uint i = t; i < p.width; i += 64u) x[base + i] = exp(x[base + i] - mx) * inv;
}
