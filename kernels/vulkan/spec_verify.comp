#version 450
// Greedy speculative verification on the device: given the target's pick for each row of
// the verification batch (argmax.comp) and the drafted tokens, writes how many drafts in a
// row equal the target's picks and the target's token after them (the correction, or one
// more token when every draft is kept). The host reads these 8 bytes instead of
// (1 + k) x n_vocab logits.
layout(local_size_x = 1) in;

layout(std430, binding = 0) readonly buffer Picks { uint picks[]; };   // (n_drafts + 1) target argmax per row
layout(std430, binding = 1) readonly buffer Drafts { int drafts[]; };  // (n_drafts) drafted tokens
layout(std430, binding = 2) writeonly buffer Result { uint result[]; };  // (2) accepted count, next token
layout(push_constant) uniform Push { uint n_drafts; } p;

void main() {
    uint m = 0u;
    while (m < p.n_drafts && uint(drafts[m]) == picks[m]) ++m;
    result[0] = m;
    result[1] = picks[m];
}
