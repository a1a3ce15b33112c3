#version 450
// Gated DeltaNet, step 2 (src/cpu/delta_net.cpp): q and k L2-normed per head in place (as
// ggml: rms_norm with eps / S, then 1 / sqrt(S)); per value head the decay
// exp(softplus(alpha + dt) * a) and the write strength sigmoid(beta). Invocations: one per
// (token, q or k head), then one per (token, value head).
layout(local_size_x = 64) in;

layout(std430, binding = 0) buffer Conv { float x[]; };               // (n, C) after the conv
layout(std430, binding = 1) readonly buffer Alpha { float al[]; };    // (n, Hv) (unused with ba)
layout(std430, binding = 2) readonly buffer Beta { float be[]; };     // (n, Hv), or with ba (n, 2 Hv): per key head its betas, then alphas
layout(std430, binding = 3) readonly buffer Dt { float dt[]; };       // (Hv)
layout(std430, binding = 4) readonly buffer A { float a[]; };         // (Hv)
layout(std430, binding = 5) writeonly buffer Gates { float g[]; };    // (n, 2, Hv) decay, then strength
layout(push_constant) uniform Push { uint n, C, S, Hk, Hv, ba; float eps; } p;

void main() {
    const uint heads = 2u * p.Hk, norms = p.n * heads;
    for (uint i = gl_GlobalInvocationID.x; i < norms + p.n * p.Hv; i += gl_NumWorkGroups.x * 64u) {
        if (i < norms) {
            const uint base = (i / heads) * p.C + (i % heads) * p.S;
            float ss = 0.0;
            for (uint d = 0u; d < p.S; ++d) ss += x[base + d] * x[base + d];
            const float s = 1.0 / sqrt(ss / float(p.S) + p.eps / float(p.S)), unit = 1.0 / sqrt(float(p.S));
            for (uint d = 0u; d < p.S; ++d) x[base + d] = x[base + d] * s * unit;
        } else {
            const uint j = i - norms, t = j / p.Hv, h = j % p.Hv;
            float alpha, beta;
            if (p.ba != 0u) {
                const uint r = p.Hv / p.Hk, row = t * 2u * p.Hv + (h / r) * 2u * r;
                beta = be[row + h % r];
                alpha = be[row + r + h % r];
            } else {
                beta = be[t * p.Hv + h];
                alpha = al[t * p.Hv + h];
            }
            const float z = alpha + dt[h];
            const float softplus = z > 20.0 ? z : log(1.0 + exp(z));
            g[t * 2u * p.Hv + h] = exp(softplus * a[h]);
            g[t * 2u * p.Hv + p.Hv + h] = 1.0 / (1.0 + exp(-beta));
        }
    }
}
