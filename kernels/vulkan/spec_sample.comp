#version 450
// Stochastic speculative verification on the device (rejection sampling), after
// spec_dist.comp: for drafts m = 0, 1, ... keep draft x while u[2m] q(x) < p(x) (always when
// p(x) >= q(x)); at the first rejection draw the replacement from norm(max(0, p - q)) with
// u[2m + 1]; when every draft is kept draw one more token from the last row's p. The same
// rule, in the same order, as kiln::verify_sampled_rows on the host (speculative.cpp), so
// the output distribution is exactly the target's. Writes (accepted count, next token):
// 8 bytes come back per round instead of (1 + k) rows of logits.
layout(local_size_x = 1) in;

layout(std430, binding = 0) readonly buffer Dist { uint dist[]; };     // (n, 1 + 2 kMaxTopK) from spec_dist.comp
layout(std430, binding = 1) readonly buffer Drafts { int drafts[]; };  // (n - 1) drafted tokens
layout(std430, binding = 2) readonly buffer Q { uint q[]; };           // (n - 1, 1 + 2 kMaxDraftQ): count (0: drafted with certainty), (token, float bits) pairs
layout(std430, binding = 3) readonly buffer U { float u[]; };          // (n, 2) uniforms in [0, 1)
layout(std430, binding = 4) writeonly buffer Result { uint result[]; };  // (2) accepted count, next token
layout(push_constant) uniform Push { uint n_drafts; } p;

const uint kMaxTopK = 64u, kMaxDraftQ = 64u;  // src/vulkan/ops.h

uint d_base(uint m) { return m * (1u + 2u * kMaxTopK); }
uint q_base(uint m) { return m * (1u + 2u * kMaxDraftQ); }
float p_prob(uint m, uint i) { return uintBitsToFloat(dist[d_base(m) + 2u + 2u * i]); }
uint p_token(uint m, uint i) { return dist[d_base(m) + 1u + 2u * i]; }

// Draft m's probability of `tok` under q (one-hot on the draft when q is empty).
float q_of(uint m, uint tok) {
    const uint n = q[q_base(m)];
    if (n == 0u) return tok == uint(drafts[m]) ? 1.0 : 0.0;
    for (uint i = 0u; i < n; ++i)
        if (q[q_base(m) + 1u + 2u * i] == tok) return uintBitsToFloat(q[q_base(m) + 2u + 2u * i]);
    return 0.0;
}

// The token u picks from row m's p, cumulatively in order.
uint draw(uint m, float uu) {
    const uint n = dist[d_base(m)];
    float cum = 0.0;
    for (uint i = 0u; i < n; ++i)
        if (uu < (cum += p_prob(m, i))) return p_token(m, i);
    return p_token(m, n - 1u);
}

void main() {
    for (uint m = 0u; m < p.n_drafts; ++m) {
        const uint x = uint(drafts[m]), n = dist[d_base(m)];
        float pt = 0.0;
        for (uint i = 0u; i < n; ++i)
            if (p_token(m, i) == x) pt = p_prob(m, i);
        const float qt = q_of(m, x);
        const bool keep = pt > 0.0 && (qt <= 0.0 || pt >= qt || u[2u * m] * qt < pt);
        if (keep) continue;
        // Rejected: the residual r = max(0, p - q) over p's support.
        float sum = 0.0;
        for (uint i = 0u; i < n; ++i) sum += max(0.0, p_prob(m, i) - q_of(m, p_token(m, i)));
        uint next = p_token(m, n - 1u);
        if (!(sum > 0.0)) {
            next = draw(m, u[2u * m + 1u]);  // p <= q everywhere: only rounding gets here
        } else {
            const float target = u[2u * m + 1u] * sum;
            float cum = 0.0;
            bool picked = false;
            for (uint i = 0u; i < n && !picked; ++i) {
                const float r = max(0.0, p_prob(m, i) - q_of(m, p_token(m, i)));
                if (r > 0.0 && target < (cum += r)) next = p_token(m, i), picked = true;
            }
            for (uint i = n; !picked && i-- > 0u;)
                if (p_prob(m, i) - q_of(m, p_token(m, i)) > 0.0) next = p_token(m, i), picked = true;
        }
        result[0] = m;
        result[1] = next;
        return;
    }
    result[0] = p.n_drafts;
    result[1] = draw(p.n_drafts, u[2u * p.n_drafts + 1u]);
}
