#version 450
// Tiled dequant-matmul for prefill: y (n, rows) = x (n, k) . W^T, W (rows, k) in one GGUF
// format. A workgroup computes a 32-row x 32-token tile: per step of 32 columns it
// dequantizes the weight tile once into shared memory (each of the 64 threads one 16-value
// chunk) and stages the activation tile beside it, then each thread accumulates a 4x4
// block of outputs from shared memory. W is read once per 32 tokens (the decode matvec:
// once per 8). Needs k % 32 == 0 (src/vulkan/ops.cpp falls back to matvec otherwise).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };  // (rows, row_bytes(k)) GGUF blocks
layout(std430, binding = 1) readonly buffer X { float x[]; };        // (n, x_stride) f32
layout(std430, binding = 2) writeonly buffer Y { float y[]; };       // (n, y_stride) f32
layout(std430, binding = 3) readonly buffer S { float sums[]; };     // (n, x_stride / 32) x's block sums (q4_1, q5_1; dequant.glsl)
layout(push_constant) uniform Push {
    uint k, rows, n;
    uint x_stride, y_stride;
    uint x_offset, y_row0;  // as in matvec.comp
} p;

#define GRID_BINDING 4  // the IQ1-IQ3 lattices (dequant.glsl), bound for every format
#include "dequant.glsl"

const uint kTile = 32u, kStep = 32u;
// +1 column: threads of one row step read down a column without bank conflicts.
shared float w_tile[kTile][kStep + 1u];  // (rows of the tile, columns of the step)
shared float x_tile[kTile][kStep + 1u];  // (tokens of the tile, columns of the step)
#ifdef WEIGHT_MIN
shared float m_tile[kTile];  // (rows of the tile) the step's block min (a step is one 32-element block)
shared float s_tile[kTile];  // (tokens of the tile) the step's block sum of x
#endif

void main() {
    const uint tid = gl_LocalInvocationID.x;
    const uint row0 = (gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x) * kTile, tok0 = gl_WorkGroupID.y * kTile;
    // This thread's 4x4 outputs: rows ri + 8 a, tokens tj + 8 b.
    const uint ri = tid % 8u, tj = tid / 8u;
    float acc[4][4];
    for (uint a = 0u; a < 4u; ++a)
        for (uint b = 0u; b < 4u; ++b) acc[a][b] = 0.0;

    // The chunk this thread dequantizes each step: tile row tid / 2, half tid % 2.
    const uint my_row = tid / 2u, my_half = tid % 2u;
    const bool row_ok = row0 + my_row < p.rows;
    const uint wrow = (row0 + my_row) * row_bytes(p.k);
    float v[16];
    for (uint c0 = 0u; c0 < p.k; c0 += kStep) {
#ifdef WEIGHT_MIN
        if (row_ok) dequant16_min(wrow, c0 / 16u + my_half, false, v);
        if (my_half == 0u) m_tile[my_row] = row_ok ? block_min(wrow, c0 / 16u) : 0.0;
        if (tid < kTile) s_tile[tid] = tok0 + tid < p.n ? sums[(p.x_offset + (tok0 + tid) * p.x_stride + c0) / 32u] : 0.0;
#else
        if (row_ok) dequant16(wrow, c0 / 16u + my_half, v);
#endif
        if (!row_ok) for (uint i = 0u; i < 16u; ++i) v[i] = 0.0;
        for (uint i = 0u; i < 16u; ++i) w_tile[my_row][16u * my_half + i] = v[i];
        for (uint e = tid; e < kTile * kStep; e += 64u) {
            const uint t = e / kStep, c = e % kStep;
            x_tile[t][c] = tok0 + t < p.n ? x[p.x_offset + (tok0 + t) * p.x_stride + c0 + c] : 0.0;
        }
        barrier();
        for (uint c = 0u; c < kStep; ++c) {
            float wv[4], xv[4];
            for (uint a = 0u; a < 4u; ++a) wv[a] = w_tile[ri + 8u * a][c];
            for (uint b = 0u; b < 4u; ++b) xv[b] = x_tile[tj + 8u * b][c];
            for (uint a = 0u; a < 4u; ++a)
                for (uint b = 0u; b < 4u; ++b) acc[a][b] += wv[a] * xv[b];
        }
#ifdef WEIGHT_MIN
        for (uint a = 0u; a < 4u; ++a)
            for (uint b = 0u; b < 4u; ++b) acc[a][b] += m_tile[ri + 8u * a] * s_tile[tj + 8u * b];
#endif
        barrier();
    }
    for (uint a = 0u; a < 4u; ++a)
        for (uint b = 0u; b < 4u; ++b) {
            const uint row = row0 + ri + 8u * a, tok = tok0 + tj + 8u * b;
            if (row < p.rows && tok < p.n) y[tok * p.y_stride + p.y_row0 + row] = acc[a][b];
        }
}
