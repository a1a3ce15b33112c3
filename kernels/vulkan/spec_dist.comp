#version 450
// The sampling chain's distribution for each row of a stochastic verification batch, on
// the device (one workgroup per row), as kiln::sampling_distribution computes it on the
// host: repetition penalty -> top-k -> softmax -> top-p -> min-p -> softmax at the
// temperature. Writes (count, (token, probability) x count) per row, in the chain's order
// (logit descending, then token id), for spec_sample.comp. Top-k is required (<= kMaxTopK):
// the k best are found in k rounds of "best below the previous one", so nothing of size
// n_vocab is sorted or stored.
layout(local_size_x = 64) in;

layout(std430, binding = 0) buffer Logits { float logits[]; };           // (n, n_vocab) f32; the penalty is applied in place
layout(std430, binding = 1) readonly buffer Pen { uint pen[]; };         // (n, 1 + kMaxPenalized): count, distinct penalized tokens
layout(std430, binding = 2) writeonly buffer Dist { uint dist[]; };      // (n, 1 + 2 kMaxTopK): count, (token, float bits) pairs
layout(push_constant) uniform Push {
    uint n_vocab, top_k;
    float temperature, top_p, min_p, repeat_penalty;
} p;

const uint kMaxTopK = 64u, kMaxPenalized = 256u;  // src/vulkan/ops.h
shared float best_l[64];
shared uint best_i[64];
shared float cand_l[kMaxTopK];
shared uint cand_i[kMaxTopK];

// (l, i) comes before (bl, bi) in the chain's order; bi = ~0u: nothing yet.
bool before(float l, uint i, float bl, uint bi) { return bi == 0xffffffffu || l > bl || (l == bl && i < bi); }

void main() {
    const uint row = gl_WorkGroupID.x, t = gl_LocalInvocationID.x, base = row * p.n_vocab;
    const uint pen_base = row * (1u + kMaxPenalized);
    if (p.repeat_penalty != 1.0) {
        // llama.cpp's penalty: divide positive logits, multiply negative ones.
        for (uint j = t; j < pen[pen_base]; j += 64u) {
            const uint tok = pen[pen_base + 1u + j];
            const float l = logits[base + tok];
            logits[base + tok] = l > 0.0 ? l / p.repeat_penalty : l * p.repeat_penalty;
        }
        memoryBarrierBuffer();
        barrier();
    }

    // Top-k: round r finds the best token strictly after round r - 1's in the order.
    float last_l = 1.0 / 0.0;
    uint last_i = 0xffffffffu, found = 0u;
    for (uint r = 0u; r < p.top_k; ++r) {
        float bl = 0.0;
        uint bi = 0xffffffffu;
        for (uint j = t; j < p.n_vocab; j += 64u) {
            const float l = logits[base + j];
            const bool after_last = last_i == 0xffffffffu || l < last_l || (l == last_l && j > last_i);
            if (after_last && before(l, j, bl, bi)) bl = l, bi = j;
        }
        best_l[t] = bl;
        best_i[t] = bi;
        barrier();
        for (uint s = 32u; s > 0u; s >>= 1) {
            if (t < s && best_i[t + s] != 0xffffffffu && before(best_l[t + s], best_i[t + s], best_l[t], best_i[t])) {
                best_l[t] = best_l[t + s];
                best_i[t] = best_i[t + s];
            }
            barrier();
        }
        last_l = best_l[0];
        last_i = best_i[0];
        barrier();  // best_* are rewritten by the next round
        if (last_i == 0xffffffffu) break;  // fewer tokens than top_k
        if (t == 0u) cand_l[r] = last_l, cand_i[r] = last_i;
        found = r + 1u;
    }
    barrier();
    if (t != 0u) return;

    // Softmax over the survivors, then top-p and min-p on it, then the temperature.
    const float mx = cand_l[0];
    float prob[kMaxTopK];
    float sum = 0.0;
    for (uint i = 0u; i < found; ++i) sum += (prob[i] = exp(cand_l[i] - mx));
    for (uint i = 0u; i < found; ++i) prob[i] /= sum;
    uint keep = found;
    if (p.top_p < 1.0) {  // the smallest prefix whose mass reaches top_p
        float cum = 0.0;
        uint n = 0u;
        while (n < keep) {
            cum += prob[n++];
            if (cum >= p.top_p) break;
        }
        keep = max(1u, n);
    }
    if (p.min_p > 0.0) {  // drop tokens below min_p x the best probability
        uint n = 1u;
        while (n < keep && prob[n] >= p.min_p * prob[0]) ++n;
        keep = n;
    }
    sum = 0.0;
    for (uint i = 0u; i < keep; ++i) sum += (prob[i] = exp((cand_l[i] - mx) / p.temperature));
    const uint o = row * (1u + 2u * kMaxTopK);
    dist[o] = keep;
    for (uint i = 0u; i < keep; ++i) {
        dist[o + 1u + 2u * i] = cand_i[i];
        dist[o + 2u + 2u * i] = floatBitsToUint(prob[i] / sum);
    }
}
