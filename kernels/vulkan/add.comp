#version 450
// y[i] += x[i % x_len]: the residual add (x_len = all of y) and bias adds (x_len = one row).
layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer Y { float y[]; };           // (total) f32
layout(std430, binding = 1) readonly buffer X { float x[]; };  // (x_len) f32
layout(push_constant) uniform Push { uint total, x_len; } p;

void main() {
    for (uint i = gl_GlobalInvocationID.x; i < p.total; i += gl_NumWorkGroups.x * 256u) y[i] += x[i % p.x_len];
}
