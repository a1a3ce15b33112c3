#version 450
// Expert dequant-matvec over the tokens routed to each expert. The (token, slot) pairs of
// a forward (n x K of them, sel from moe_route.comp) are grouped by expert inside the
// shader: workgroup (x, y) takes 16 rows of the y-th expert (in id order) that some pair
// chose, lists the pairs that chose it, and dequantizes each weight chunk once per 8 of
// them (the matvec.comp scheme): an expert's rows are read once per 8 of its tokens, never
// when no token chose it, and a decode step launches K expert columns, not n_expert.
//   y (pairs, y_stride) [pair][r] = x [row of pair] . W_e[r],  W_e = rows e*R .. e*R + R - 1
// of a 3-D expert tensor (n_expert slices of R rows of k, ggml order), of which this
// binding holds global rows part_row0 .. part_row0 + part_rows - 1. The x row of a pair is
// its token (gate, up: pair / K) or the pair itself (down: the gated activations).
// A pair's sum does not depend on which pairs share its batch, so verification is exact.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };  // (part_rows, row_bytes(k)) GGUF blocks
layout(std430, binding = 1) readonly buffer X { float x[]; };        // (n or pairs, x_stride) f32
layout(std430, binding = 2) writeonly buffer Y { float y[]; };       // (pairs, y_stride) f32
layout(std430, binding = 3) readonly buffer Sel { uint sel[]; };     // (pairs) expert of each (token, slot)
layout(push_constant) uniform Push {
    uint k, R;                   // columns; rows per expert
    uint n_pairs, K;             // n * K (token, slot) pairs; slots per token
    uint x_stride, y_stride;     // floats between rows
    uint x_by_pair;              // 1: x row = pair, 0: x row = pair / K
    uint part_row0, part_rows;   // the global rows this binding holds
    uint expert0, n_experts;     // the experts whose rows this binding holds
} p;

#define GRID_BINDING 4  // the IQ1-IQ3 lattices (dequant.glsl), bound for every format
#include "dequant.glsl"

const uint kLanes = 4u, kRowsPerGroup = 64u / kLanes, kTokens = 8u, kWindow = 1024u;
shared float partial[64][kTokens];
shared uint pairs[kWindow];  // the pairs of the current window routed to this expert
shared uint n_found;
shared uint used[128];  // bitmap of the experts chosen by some pair (n_expert <= 4096)
shared uint expert;     // this workgroup's: the y-th set bit of used

void main() {
    const uint tid = gl_LocalInvocationID.x, lane = tid % kLanes;
    for (uint i = tid; i < 128u; i += 64u) used[i] = 0u;
    barrier();
    for (uint i = tid; i < p.n_pairs; i += 64u) {
        const uint s = sel[i];
        if (s >= p.expert0 && s < p.expert0 + p.n_experts) atomicOr(used[s >> 5], 1u << (s & 31u));
    }
    barrier();
    if (tid == 0u) {
        uint seen = 0u, found_e = 0xffffffffu;
        for (uint w = 0u; w < 128u && found_e == 0xffffffffu; ++w) {
            const uint bits = used[w], c = uint(bitCount(bits));
            if (seen + c > gl_WorkGroupID.y) {
                uint b = bits;
                for (uint skip = gl_WorkGroupID.y - seen; skip > 0u; --skip) b &= b - 1u;  // drop the lower set bits
                found_e = 32u * w + uint(findLSB(b));
            }
            seen += c;
        }
        expert = found_e;
    }
    barrier();
    const uint e = expert;
    if (e == 0xffffffffu) return;  // fewer chosen experts than workgroup rows (uniform)
    const uint group = gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    const uint r = group * kRowsPerGroup + tid / kLanes, g = e * p.R + r;
    const bool valid = r < p.R && g >= p.part_row0 && g < p.part_row0 + p.part_rows;
    const uint wrow = valid ? (g - p.part_row0) * row_bytes(p.k) : 0u;

    // Windows of kWindow pairs bound the shared list (n * K reaches 4096 in prefill).
    for (uint w0 = 0u; w0 < p.n_pairs; w0 += kWindow) {
        if (tid == 0u) n_found = 0u;
        barrier();
        for (uint i = w0 + tid; i < min(w0 + kWindow, p.n_pairs); i += 64u)
            if (sel[i] == e) pairs[atomicAdd(n_found, 1u)] = i;
        barrier();
        const uint found = n_found;
        for (uint b0 = 0u; b0 < found; b0 += kTokens) {
            const uint nt = min(kTokens, found - b0);
            float acc[kTokens];
            [[unroll]] for (uint t = 0u; t < kTokens; ++t) acc[t] = 0.0;
            if (valid) {
                float v[16];
                for (uint chunk = lane; chunk < p.k / 16u; chunk += kLanes) {
                    dequant16(wrow, chunk, v);
                    [[unroll]] for (uint t = 0u; t < kTokens; ++t) {
                        if (t < nt) {
                            const uint pr = pairs[b0 + t], xr = p.x_by_pair != 0u ? pr : pr / p.K;
                            const uint xo = xr * p.x_stride + 16u * chunk;
                            float s = 0.0;
                            [[unroll]] for (uint i = 0u; i < 16u; ++i) s += v[i] * x[xo + i];
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
            if (valid)
                for (uint t = lane; t < nt; t += kLanes) y[pairs[b0 + t] * p.y_stride + r] = partial[tid - lane][t];
            barrier();  // partial[] and pairs[] are reused
        }
        barrier();
    }
}
