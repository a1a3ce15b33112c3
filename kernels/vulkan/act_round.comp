#version 450
// Rounds activations the way the CPU backend quantizes them before a quantized matmul
// (kernels/cpu/act_quant-inl.h), so both backends dot the same values: y = d * q with q the
// 8-bit code the CPU would store. Without it the shaders dot f32 activations and greedy
// picks part from the CPU's wherever two logits are within the 8-bit rounding noise.
//  - mode 0, q8_x32 (q4_0, q4_1, q5_0, q5_1, q8_0 weights): 32-element blocks,
//    q = round_half_even(x * 127 / amax), d = fp16(amax / 127); s = fp16(amax / 127 * sum(q)),
//    the block sum q4_1 / q5_1 weights multiply by their min (rounded as ggml's q8_1 stores it);
//  - mode 1, q8_K (k-quant weights): 256-element blocks, iscale = -127 / (the element of
//    largest magnitude, signed), q = min(127, round_half_even(iscale * x)), d = 1 / iscale.
// One thread per block: the shader is a small fraction of a matmul's reads.
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };   // (n, k) f32
layout(std430, binding = 1) writeonly buffer Y { float y[]; };  // (n, k) f32, the rounded values
layout(std430, binding = 2) writeonly buffer S { float s[]; };  // (n, k / 32) f32 block sums (mode 0)
layout(push_constant) uniform Push {
    uint k, n, mode;
} p;

float fp16_round(float v) { return unpackHalf2x16(packHalf2x16(vec2(v, 0.0))).x; }

void main() {
    const uint block = p.mode == 0u ? 32u : 256u, blocks = p.n * (p.k / block);
    for (uint b = gl_GlobalInvocationID.x; b < blocks; b += gl_NumWorkGroups.x * 64u) {
        const uint o = b * block;
        float amax = 0.0, smax = 0.0;  // smax: the first element of largest magnitude, signed
        for (uint i = 0u; i < block; ++i) {
            const float a = abs(x[o + i]);
            if (a > amax) amax = a, smax = x[o + i];
        }
        if (p.mode == 0u) {
            const float d = amax / 127.0, id = amax != 0.0 ? 127.0 / amax : 0.0, d16 = fp16_round(d);
            float sum = 0.0;  // exact: |sum| <= 32 * 127
            for (uint i = 0u; i < 32u; ++i) {
                const float q = roundEven(x[o + i] * id);
                y[o + i] = d16 * q;
                sum += q;
            }
            s[b] = fp16_round(d * sum);
        } else if (amax == 0.0) {
            for (uint i = 0u; i < 256u; ++i) y[o + i] = 0.0;
        } else {
            // precise: d must be 1 / (the rounded iscale), not a refolded -smax / 127.
            precise const float iscale = -127.0 / smax, d = 1.0 / iscale;
            for (uint i = 0u; i < 256u; ++i) y[o + i] = d * min(127.0, roundEven(iscale * x[o + i]));
        }
    }
}
