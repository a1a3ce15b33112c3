#version 450
// y = x / sqrt(mean(x^2) + eps) * w, per row of `width`: one workgroup per row. Serves the
// block norms (rows = tokens) and Qwen3/Gemma's per-head Q/K norms (rows = tokens x heads).
// x and y may be the same buffer: each thread writes only the elements it read.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };   // (rows, width) f32
layout(std430, binding = 1) readonly buffer W { float w[]; };   // (width) f32
layout(std430, binding = 2) writeonly buffer Y { float y[]; };  // (rows, width) f32
layout(push_constant) uniform Push {
    uint width;
    float eps;
} p;

#include "reduce.glsl"

void main() {
    const uint base = gl_WorkGroupID.x * p.width;
    float ss = 0.0;
    for (uint i = gl_LocalInvocationID.x; i < p.width; i += 64u) ss += x[base + i] * x[base + i];
    const float scale = 1.0 / sqrt(group_sum(ss) / float(p.width) + p.eps);
    for (uint i = gl_LocalInvocationID.x; i < p.width; i += 64u) y[base + i] = x[base + i] * scale * w[i];
}
