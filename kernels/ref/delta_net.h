// Scalar reference of the gated DeltaNet pieces (Qwen3.5's linear attention), in ggml's
// order of operations (ggml_compute_forward_gated_delta_net, ggml_ssm_conv): the executable
// spec the CPU kernels (kernels/cpu/delta_rule-inl.h) are tested against.
#pragma once

#include <cstdint>

namespace kiln::ref {

// One token, one value head. s_in, s_out: (S, S), row j = value dim j over the key dims
// (s_out may be s_in). s = s_in * decay; d[j] = beta (v[j] - s[j].k); s_out = s + outer(d, k);
// o[j] = scale * s_out[j].q.
void delta_rule(const float* s_in, float* s_out, const float* q, const float* k, const float* v, float decay, float beta, float scale, float* o, int64_t S);

// y (n, C) = silu(causal conv of x over time): y[t][c] = silu(sum_i w[c][i] * in[t + i][c]),
// in = the K - 1 rows of window (K - 1, C), then x (n, C). w: (C, K). Channels [c0, c1) only
// (the CPU backend splits them between threads).
void conv1d_silu(const float* window, const float* x, const float* w, float* y, int64_t n, int64_t C, int64_t K, int64_t c0, int64_t c1);

}  // namespace kiln::ref
