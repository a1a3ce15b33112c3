#version 450
// Gated feed-forward activation, in place: gate = act(gate) * up. mode 0: SiLU (SwiGLU);
// mode 1: GELU (tanh form) computed like ggml's CPU path (kernels/cpu/ops-inl.h gelu_mul):
// input and result rounded to fp16, 0 below -10, identity above 10, so the CPU and Vulkan
// backends agree on Gemma.
layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer Gate { float g[]; };          // (n, n_ff) f32
layout(std430, binding = 1) readonly buffer Up { float u[]; };   // (n, n_ff) f32
layout(push_constant) uniform Push { uint total, mode; } p;

float round_f16(float v) { return unpackHalf2x16(packHalf2x16(vec2(v, 0.0))).x; }

void main() {
    for (uint i = gl_GlobalInvocationID.x; i < p.total; i += gl_NumWorkGroups.x * 256u) {
        const float x = g[i];
        float a;
        if (p.mode == 0u) {
            a = x / (1.0 + exp(-x));
        } else if (x <= -10.0) {
            a = 0.0;
        } else if (x >= 10.0) {
            a = x;
        } else {
            const float v = round_f16(x);
            const float z = 0.7978845608028654 * v * (1.0 + 0.044715 * v * v);
            const float t = 1.0 - 2.0 / (1.0 + exp(2.0 * z));  // tanh(z), in the CPU kernel's form
            a = round_f16(0.5 * v * (1.0 + t));
        }
        g[i] = a * u[i];
    }
}
