#version 450
// Dequant-matvec for decode and short batches (verification): y (n, rows) = x (n, k) . W^T
// with W (rows, k) in one GGUF format. Each workgroup takes 16 rows with 4 threads per row
// (kMatvecRows in src/vulkan/ops.cpp); a thread dequantizes each of its 16-element chunks
// once and dots it with up to 8 token rows of x (workgroup y), so W is read once per 8
// tokens. (4 lanes per row measured ~3x faster than 16 on lavapipe, whose per-workgroup
// cost dominates; a real GPU would rather have a subgroup per row.)
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };  // (rows, row_bytes(k)) GGUF blocks
layout(std430, binding = 1) readonly buffer X { float x[]; };        // (n, x_stride) f32
layout(std430, binding = 2) writeonly buffer Y { float y[]; };       // (n, y_stride) f32
layout(std430, binding = 3) readonly buffer S { float sums[]; };     // (n, x_stride / 32) x's block sums (q4_1, q5_1; dequant.glsl)
layout(push_constant) uniform Push {
    uint k, rows, n;
    uint x_stride, y_stride;  // floats between token rows
    uint x_offset;            // floats before token row 0 of x
    uint y_row0;              // output column of W's row 0 (a part of a matrix too large for one binding)
} p;

#define GRID_BINDING 4  // the IQ1-IQ3 lattices (dequant.glsl), bound for every format
#include "dequant.glsl"

const uint kLanes = 4u, kRowsPerGroup = 64u / kLanes, kTokens = 8u;
shared float partial[64][kTokens];

void main() {
    const uint tid = gl_LocalInvocationID.x, lane = tid % kLanes;
    // Row groups run along x and z: x alone is limited to 65535 groups (262144-row vocabularies).
    const uint group = gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    const uint row = group * kRowsPerGroup + tid / kLanes;
    const uint t0 = gl_WorkGroupID.y * kTokens, nt = min(kTokens, p.n - t0);
    const bool valid = row < p.rows;

    float acc[kTokens];
    for (uint t = 0u; t < kTokens; ++t) acc[t] = 0.0;
    if (valid) {
        const uint wrow = row * row_bytes(p.k);
        float v[16];
        for (uint chunk = lane; chunk < p.k / 16u; chunk += kLanes) {
#ifdef WEIGHT_MIN
            dequant16_min(wrow, chunk, false, v);
            const float m = chunk % 2u == 0u ? block_min(wrow, chunk) : 0.0;  // once per 32-element block
#else
            dequant16(wrow, chunk, v);
#endif
            // A constant trip count (with a uniform guard) lets the compiler unroll and keep
            // acc[] in registers; a dynamic one indexes it in memory.
            [[unroll]] for (uint t = 0u; t < kTokens; ++t) {
                if (t < nt) {
                    const uint xo = p.x_offset + (t0 + t) * p.x_stride + 16u * chunk;
                    float s = 0.0;
                    [[unroll]] for (uint i = 0u; i < 16u; ++i) s += v[i] * x[xo + i];
#ifdef WEIGHT_MIN
                    s += m * sums[xo / 32u];
#endif
                    acc[t] += s;
                }
            }
        }
    }
    [[unroll]] for (uint t = 0u; t < kTokens; ++t) partial[tid][t] = acc[t];
    barrier();
    for (uint stride = kLanes / 2u; stride > 0u; stride >>= 1) {
        if (lane < stride)
            for (uint t = 0u; t < nt; ++t) partial[tid][t] += partial[tid + stride][t];
        barrier();
    }
    // Token t's sum ends in lane 0's slot t; the row's lanes write the tokens between them.
    if (valid)
        for (uint t = lane; t < nt; t += kLanes) y[(t0 + t) * p.y_stride + p.y_row0 + row] = partial[tid - lane][t];
}
